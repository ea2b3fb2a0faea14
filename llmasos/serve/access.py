"""Who may use the server: the bearer token, where it comes from, and what an open server risks.

The token comes from ``token=`` (``--token``), else a file (``token_file=``, ``--token-file``:
its first line), else the ``LLMASOS_TOKEN`` environment variable; a file or the environment
keep it out of the process list, where ``--token`` is visible to every user of the machine.
Loading and unloading models over HTTP (model control) needs a token, always; serving on an
address other than loopback without one logs a warning.

>>> resolve_token(None, None, environ={"LLMASOS_TOKEN": "s3cret"})
's3cret'
>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0")
(True, True, True, False)
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import ServeError

TOKEN_ENV = "LLMASOS_TOKEN"

log = logging.getLogger("llmasos.serve")


def resolve_token(token: str | None, token_file: str | os.PathLike | None,
                  environ: Mapping[str, str] = os.environ) -> str | None:
    """The bearer token: ``token``, else the first line of ``token_file``, else ``$LLMASOS_TOKEN``;
    None when none is set. An empty token, or both ``token`` and ``token_file``, is an error."""
    if token is not None and token_file is not None:
        raise ServeError("give the token once: token= (--token) or token_file= (--token-file), not both")
    if token_file is not None:
        try:
            lines = Path(token_file).read_text().splitlines()
        except OSError as exc:
            raise ServeError(f"cannot read the token file {os.fspath(token_file)!r}: {exc.strerror}") from None
        token, source = (lines[0].strip() if lines else ""), f"the token file {os.fspath(token_file)!r}"
    elif token is not None:
        source = "token="
    else:
        token, source = environ.get(TOKEN_ENV), TOKEN_ENV
        if token is None:
            return None
    if not token:
        raise ServeError(f"{source} gives an empty token; a token must be a non-empty string")
    return token


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (a name other than localhost counts
    as reachable: it may resolve to any interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(host: str, token: str | None, model_control: bool) -> None:
    """Refuse model control without a token; warn when serving beyond loopback without one."""
    if model_control and token is None:
        raise ServeError(f"model control (loading and unloading models over HTTP) needs a token: give "
                         f"token_file= (--token-file), ${TOKEN_ENV} or token= (--token)")
    if token is None and not is_loopback(host):
        log.warning(f"serving on {host} without a token: anyone who reaches this address can run the "
                    f"models; set ${TOKEN_ENV} or use --token-file to require one")
