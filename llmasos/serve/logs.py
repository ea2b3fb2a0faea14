"""Structured logs: one JSON object per line, with whatever ``extra=`` fields the call passed.

>>> import logging
>>> record = logging.LogRecord("llmasos.serve", logging.INFO, "", 0, "loaded", None, None)
>>> record.model = "digits"
>>> JsonFormatter().format(record)  # doctest: +ELLIPSIS
'{"time": "...", "level": "INFO", "logger": "llmasos.serve", "message": "loaded", "model": "digits"}'
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

# Attributes every LogRecord has; anything else on a record came from `extra=` (uvicorn's
# color_message repeats the message with terminal colours).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                          "color_message"}


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def use_json_logs(level: int | str = logging.INFO) -> None:
    """Send every log record (the server's and uvicorn's) to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
