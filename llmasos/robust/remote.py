"""A served model as the query-only attacks see it: a function from inputs to scores that asks a
server speaking the Open Inference Protocol ("v2": KServe, Triton, ``llmasos serve``) over plain
HTTP, one request per query batch, tensors in the binary extension as ``tritonclient`` sends them.

```python
from llmasos import robust
scores = robust.remote("http://127.0.0.1:8000", "digits")        # reads the model's metadata once
report = robust.evaluate(scores, (x, y), attacks=[robust.Square(queries=300)], eps=[0.05, 0.1])
```
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

import numpy as np

from ..errors import AttackError

HEADER_LENGTH = "Inference-Header-Content-Length"
# the float outputs a classifier's scores come in
_FLOATS = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}


class RemoteModel:
    """Callable ``scores = remote(x)`` on the model ``name`` served at ``url``; ``token`` (default
    ``$LLMASOS_TOKEN``) is sent as ``Authorization: Bearer`` when set. Its first input takes ``x``
    as float32 and its first output is read back as scores; ``input_shape`` is the served
    input's shape past the batch (-1 where variable)."""

    def __init__(self, url: str, name: str, *, token: str | None = None, timeout_s: float = 60.0) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise AttackError(f"the server's url must look like http://host:port, got {url!r}")
        self.base = url.rstrip("/")
        self.name, self.timeout_s = name, timeout_s
        self.token = token if token is not None else os.environ.get("LLMASOS_TOKEN")
        self.requests = 0
        metadata = json.loads(self._send(f"/v2/models/{urllib.parse.quote(name)}")[0])
        inputs, outputs = metadata.get("inputs") or [], metadata.get("outputs") or []
        if not inputs or not outputs:
            raise AttackError(f"{self.base}: model {name!r} declares no inputs or outputs in its metadata")
        if inputs[0].get("datatype") != "FP32":
            raise AttackError(f"{self.base}: model {name!r} takes {inputs[0].get('datatype')} input "
                              f"{inputs[0].get('name')!r}; the attack sends float32 (FP32) inputs")
        self.input_name, self.output_name = inputs[0]["name"], outputs[0]["name"]
        self.input_shape = tuple(int(d) for d in inputs[0].get("shape", [])[1:])

    def _send(self, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
        request = urllib.request.Request(self.base + path, data=body, headers=dict(headers or {}),
                                         method="GET" if body is None else "POST")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read(), {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:300]
            raise AttackError(f"{self.base}{path} answered {error.code}: {detail}") from None
        except urllib.error.URLError as error:
            raise AttackError(f"cannot reach {self.base} ({error.reason}); is the server running "
                              f"(llmasos serve model.onnx --port ...)?") from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype="<f4")
        raw = x.tobytes()
        header = json.dumps({
            "inputs": [{"name": self.input_name, "shape": list(x.shape), "datatype": "FP32",
                        "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": self.output_name, "parameters": {"binary_data": True}}]}).encode()
        body, headers = self._send(f"/v2/models/{urllib.parse.quote(self.name)}/infer", header + raw,
                                   {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))})
        self.requests += 1
        length = int(headers.get(HEADER_LENGTH.lower(), len(body)))
        answer = json.loads(body[:length])
        output = next(o for o in answer["outputs"] if o["name"] == self.output_name)
        dtype = _FLOATS.get(output["datatype"])
        if dtype is None:
            raise AttackError(f"{self.base}: output {self.output_name!r} is {output['datatype']}, not scores "
                              f"(FP32, FP16 or FP64)")
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:   # the server answered in JSON after all
            values = np.asarray(output["data"], dtype=dtype)
        else:
            values = np.frombuffer(body[length:length + int(size)], dtype=np.dtype(dtype).newbyteorder("<"))
        return values.reshape(output["shape"]).astype(np.float32)


def remote(url: str, name: str, *, token: str | None = None, timeout_s: float = 60.0) -> Callable[[np.ndarray], np.ndarray]:
    """:class:`RemoteModel`: the model ``name`` served at ``url`` as a function from inputs to
    scores, for :func:`llmasos.robust.square` and :func:`llmasos.robust.evaluate`."""
    return RemoteModel(url, name, token=token, timeout_s=timeout_s)
