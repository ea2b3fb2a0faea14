"""The Deployer: serve a .h5, an .onnx file or a model repository over HTTP with ONNX Runtime.

Usage::

    d = Deployer("model.onnx", port=0).start()
    d.url
    'http://127.0.0.1:54321'
    d.predict(x)
    d.stop()

``Deployer(path).deploy()`` blocks until Ctrl-C or SIGTERM, then stops taking connections and
finishes the requests it accepted. A ``.h5`` is exported to ONNX (and verified) first, in a child
process: the serving process imports neither torch nor TensorFlow.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ServeError
from ..export.providers import ProviderSpec
from .access import check_access, resolve_token
from .app import Limits, build_app
from .logs import use_json_logs
from .metrics import Metrics
from .repository import Repository, VersionPolicy
from .version import ModelVersion

log = logging.getLogger("llmasos.serve")

_EXPORT = "import sys; from llmasos import export; export.to_onnx(sys.argv[1], sys.argv[2])"


def _export_h5(h5: Path, folder: Path) -> Path:
    """Export ``h5`` to ``folder/<stem>.onnx`` in a child process, so this one stays ONNX-only."""
    onnx_path = folder / f"{h5.stem}.onnx"
    # The child imports the same llmasos as this process, installed or not.
    paths = [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]
    done = subprocess.run([sys.executable, "-c", _EXPORT, str(h5), str(onnx_path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))})
    if done.returncode != 0:
        raise ServeError(f"exporting {h5} to ONNX failed: {done.stderr.strip()[-2000:]}", 500)
    return onnx_path


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}", 500) from None
    return sock


class Deployer:
    """Serve ``path`` (``.h5``, ``.onnx`` or a ``repo/<model>/<version>/model.onnx`` folder).

    ``providers``: execution providers in fallback order (see :mod:`llmasos.export.providers`);
    ``max_batch`` > 1 turns on dynamic batching, waiting at most ``batch_timeout_ms``;
    ``version_policy``: ``"latest"``, ``"latest:N"``, ``"all"`` or pinned versions (``"1,3"``);
    ``poll_s``: how often the repository is checked for new versions (0: only on request);
    ``token`` or ``token_file`` (else ``$LLMASOS_TOKEN``): require ``Authorization: Bearer
    <token>`` (health checks excepted); without one on an address other than loopback, a warning;
    ``model_control=True``: ``POST /v2/repository/models/<name>/load`` and ``/unload`` work (they
    answer 403 otherwise); it needs a token;
    ``max_body_bytes``/``max_tensor_elements``: larger requests get 413 (a text input's limit
    counts its tokens, rows x padded length, and answers 400);
    ``max_concurrent``: inference requests served at once, more get 503 with ``Retry-After``;
    ``allow_nan=False`` refuses float inputs holding NaN or infinity;
    ``strict=True`` raises instead of falling back when a provider is missing or fails.

    ```python
    with Deployer("model.h5", port=0) as server:    # start() on entry, stop() on exit; port 0: a free one
        server.url                                  # 'http://127.0.0.1:<port>'
        server.predict(x)                           # in-process, on the session the server uses
    Deployer("repo/", max_batch=32).deploy()        # blocks until Ctrl-C, then drains
    ```
    """

    def __init__(self, path: str | os.PathLike, *, providers: Iterable[ProviderSpec] = ("cpu",),
                 host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
                 max_batch: int = 0, batch_timeout_ms: float = 5.0, token: str | None = None,
                 token_file: str | os.PathLike | None = None, model_control: bool = False,
                 max_body_bytes: int = 64 * 1024 * 1024, max_tensor_elements: int = 16 * 1024 * 1024,
                 max_concurrent: int = 64,
                 version_policy: str | int | Sequence[int] = "latest", poll_s: float = 1.0,
                 allow_nan: bool = False, strict: bool = False,
                 shutdown_timeout_s: float = 30.0) -> None:
        path = Path(path)
        if not path.exists():
            raise ServeError(f"nothing to serve: {path} does not exist")
        token = resolve_token(token, token_file)
        check_access(host, token, model_control)
        self.host, self.port = host, port
        self._shutdown_timeout_s = shutdown_timeout_s
        self._exported = None
        if path.suffix.lower() in (".h5", ".hdf5"):
            self._exported = tempfile.TemporaryDirectory(prefix="llmasos-serve-")
            path = _export_h5(path, Path(self._exported.name))
        self.metrics = Metrics()
        providers = providers if isinstance(providers, str) else tuple(providers)  # used per load

        def open_version(model: str, version: int, file: Path) -> ModelVersion:
            return ModelVersion.open(model, version, file, providers=providers, strict=strict,
                                     max_batch=max_batch, batch_timeout_s=batch_timeout_ms / 1000,
                                     allow_nan=allow_nan, max_elements=max_tensor_elements,
                                     observe=self.metrics.batch_size.labels(model=model).observe)

        self.repository = Repository(path, open_version, self.metrics, name=name,
                                     policy=VersionPolicy.parse(version_policy))
        self.repository.refresh(settle=False)
        if not self.repository.names:
            reasons = "; ".join(f"{row['name']}: {row.get('reason')}" for row in self.repository.index())
            raise ServeError(f"nothing to serve from {path}: {reasons or 'no model.onnx found'}")
        limits = Limits(token=token, model_control=model_control, max_body_bytes=max_body_bytes,
                        max_tensor_elements=max_tensor_elements, max_concurrent=max_concurrent)
        self.app = build_app(self.repository, self.metrics, limits, poll_s)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the server listens (with the real port once started with ``port=0``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def predict(self, x: np.ndarray | Mapping[str, Any] | list[str], model: str | None = None,
                version: str | int | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """Run in-process on the session the server uses; ``model`` may be left out if only one.
        A model whose file carries its tokenizer takes strings: ``predict(["a good film"])``."""
        if model is None:
            if len(self.repository.names) != 1:
                raise ServeError(f"serving {self.repository.names}: say which model")
            model = self.repository.names[0]
        return self.repository.get(model, None if version is None else str(version)).predict(x)

    def _uvicorn(self) -> Any:
        import uvicorn

        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=self._shutdown_timeout_s)
        return uvicorn.Server(config)

    def _listen(self) -> socket.socket:
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        return sock

    def start(self) -> Deployer:
        """Serve from a background thread; returns once the server answers."""
        if self._thread is not None:
            raise ServeError(f"already serving at {self.url}")
        sock = self._listen()
        self._server = self._uvicorn()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="llmasos-serve", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                self._thread = None
                raise ServeError("the server failed to start; see the log", 500)
            time.sleep(0.01)
        log.info("serving", extra={"url": self.url, "models": self.repository.names})
        return self

    def stop(self) -> None:
        """Stop taking connections, finish the requests already accepted, then return."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join()
        self._thread = None
        log.info("stopped", extra={"url": self.url})

    def deploy(self) -> None:
        """Serve until Ctrl-C or SIGTERM, then drain and return; logs JSON lines to stderr."""
        use_json_logs()
        stopping = threading.Event()
        handlers = {sig: signal.signal(sig, lambda *_: stopping.set())
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            while self._thread.is_alive() and not stopping.wait(0.5):
                pass
        finally:
            self.stop()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def __enter__(self) -> Deployer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
