"""The HTTP server: Open Inference Protocol v2 over REST, as a Starlette (ASGI) application.

Endpoints: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]``
(metadata), ``.../ready``, ``POST .../infer``, ``POST /v2/repository/index``,
``POST /v2/repository/models/{name}/load`` and ``/unload``, ``GET /metrics`` for Prometheus, and
the WebSocket ``/v2/models/{name}[/versions/{v}]/stream`` for streaming speech (see :mod:`.speech`).
Every error is ``{"error": "..."}`` with a fitting status; with a token, every endpoint except the
two health checks wants ``Authorization: Bearer <token>``. Loading and unloading answer 403
unless the server was started with model control (which needs a token, see :mod:`.access`).

The event loop only moves bytes: decoding a request, tokenising its texts, running the model
and encoding the answer happen on anyio's worker threads (at most 40 at once), so health checks
answer while a large request is decoded. At most ``max_concurrent`` inference requests are served
at once; more get 503 with ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from anyio import to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from .. import __version__
from ..errors import ServeError
from .metrics import Metrics
from .protocol import HEADER_LENGTH, InferRequest, decode_request, encode_response
from .repository import Repository
from .speech import EXTENSION as SPEECH_STREAM
from .speech import POLICY, converse
from .version import PLATFORM, ModelVersion

log = logging.getLogger("llmasos.serve")

Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")

# Work this small is done on the event loop when it has to be done there anyway (a request that
# waits for a dynamic batch): a trip to a worker thread costs ~0.1-0.2 ms on an idle machine and
# milliseconds on a busy one, as much as decoding 16 KiB of JSON or encoding 1,024 values, so it
# would only add latency to the requests batching is for. Binary tensors are not parsed, only
# viewed in place and checked for NaN (~0.1 ms for a 600 KB image), so up to 1 MiB of them
# decodes here too; larger bodies, binary strings (BYTES, parsed one by one) and answers go to a thread.
INLINE_BODY_BYTES = 16 * 1024
INLINE_BINARY_BYTES = 1024 * 1024
INLINE_OUTPUT_ELEMENTS = 1024


@dataclass(frozen=True)
class Limits:
    """What the server accepts: bearer token (None: open), whether models may be loaded and
    unloaded over HTTP, body bytes, elements per tensor, inference requests served at once."""

    token: str | None = None
    model_control: bool = False
    max_body_bytes: int = 64 * 1024 * 1024
    max_tensor_elements: int = 16 * 1024 * 1024
    max_concurrent: int = 64


def _error(metrics: Metrics, status: int, message: str) -> JSONResponse:
    metrics.errors.labels(status=str(status)).inc()
    headers = {"www-authenticate": "Bearer"} if status == 401 else {"retry-after": "1"} if status == 503 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    too_large = ServeError(f"request body over the limit of {limit} bytes", 413)
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _inline_decode(raw: bytes, header_length: str | None) -> bool:
    """Whether decoding ``raw`` costs less than a trip to a worker thread (see INLINE_BODY_BYTES)."""
    json_bytes = min(int(header_length), len(raw)) if header_length and header_length.isdigit() else len(raw)
    return (json_bytes <= INLINE_BODY_BYTES and len(raw) - json_bytes <= INLINE_BINARY_BYTES
            and (json_bytes == len(raw) or b'"BYTES"' not in raw[:json_bytes]))


def _elements(arrays: Mapping[str, np.ndarray]) -> int:
    return sum(array.size for array in arrays.values())


class _Endpoints:
    def __init__(self, repository: Repository, metrics: Metrics, limits: Limits) -> None:
        self.repository, self.metrics, self.limits = repository, metrics, limits
        self.serving = 0  # inference requests admitted; only the event loop's thread changes it

    def guarded(self, handler: Handler, public: bool = False) -> Handler:
        """Check the token, turn a :class:`ServeError` into its JSON answer, log at DEBUG."""
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if not public:
                    self._authorize(request)
                response = await handler(request)
            except ServeError as exc:
                response = _error(self.metrics, exc.status, str(exc))
            log.debug("request", extra={"method": request.method, "path": request.url.path,
                                        "status": response.status_code,
                                        "ms": round(1000 * (time.perf_counter() - started), 3)})
            return response
        return endpoint

    def _authorize(self, request: Request | WebSocket) -> None:
        if self.limits.token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.limits.token}".encode()):
            raise ServeError("missing or wrong bearer token", 401)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "llmasos", "version": __version__,
                             "extensions": ["binary_tensor_data", "model_repository", SPEECH_STREAM]})

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        if not self.repository.ready:
            raise ServeError("not ready: a model in the repository has no version loaded", 503)
        return JSONResponse({"ready": True})

    def _model(self, request: Request) -> ModelVersion:
        return self.repository.get(request.path_params["name"], request.path_params.get("version"))

    async def model_metadata(self, request: Request) -> Response:
        model = self._model(request)
        return JSONResponse({
            "name": model.name, "versions": [str(v) for v in self.repository.versions(model.name)],
            "platform": PLATFORM, "inputs": [spec.metadata() for spec in model.advertised_inputs],
            "outputs": [spec.metadata() for spec in model.advertised_outputs], "providers": model.providers,
            "dynamic_batching": model.batcher is not None, SPEECH_STREAM: model.speech is not None})

    async def model_ready(self, request: Request) -> Response:
        model = self._model(request)
        return JSONResponse({"name": model.name, "version": str(model.version), "ready": True})

    async def _work(self, inline: bool, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` here when ``inline``, else on a worker thread. Not fewer threads than
        anyio's 40: ONNX Runtime runs release the GIL, and one thread per core took 8 concurrent
        ResNet-18 requests from 1.2-1.3x to 0.8x in-process ORT on a busy 2-core machine."""
        return func(*args) if inline else await to_thread.run_sync(func, *args)

    @contextlib.contextmanager
    def _admitted(self) -> Iterator[None]:
        if self.serving >= self.limits.max_concurrent:
            raise ServeError(f"the server is busy: it serves at most {self.limits.max_concurrent} inference "
                             f"requests at once (max_concurrent); retry later", 503)
        self.serving += 1
        try:
            yield
        finally:
            self.serving -= 1

    def _decode(self, model: ModelVersion, body: bytes, header_length: str | None) -> tuple[InferRequest, dict]:
        """The request and the model's checked feeds (texts tokenised)."""
        parsed = decode_request(body, header_length, max_elements=self.limits.max_tensor_elements)
        feeds = model.prepare(parsed.inputs)
        model.check_outputs(parsed.outputs)
        return parsed, feeds

    def _answer(self, model: ModelVersion, body: bytes, header_length: str | None) -> tuple[bytes, dict[str, str]]:
        """Decode, run and encode, all on the calling (worker) thread."""
        parsed, feeds = self._decode(model, body, header_length)
        outputs = model.finish(parsed.inputs, parsed.outputs, model.run(feeds))
        return encode_response(model.name, str(model.version), parsed, outputs)

    async def infer(self, request: Request) -> Response:
        model = self._model(request)  # held to the end: a swap mid-request does not affect it
        with self._admitted():
            self.metrics.in_flight.inc()
            started = time.perf_counter()
            try:
                raw = await _body(request, self.limits.max_body_bytes)
                header_length = request.headers.get(HEADER_LENGTH)
                if model.batcher is None:  # one trip to a worker thread does it all
                    body, headers = await self._work(False, self._answer, model, raw, header_length)
                else:
                    parsed, feeds = await self._work(_inline_decode(raw, header_length), self._decode, model, raw,
                                                     header_length)
                    outputs = model.finish(parsed.inputs, parsed.outputs, await model.batcher.submit(feeds))
                    body, headers = await self._work(_elements(outputs) <= INLINE_OUTPUT_ELEMENTS, encode_response,
                                                     model.name, str(model.version), parsed, outputs)
            finally:
                self.metrics.in_flight.dec()
        self.metrics.requests.labels(model=model.name, version=str(model.version)).inc()
        self.metrics.latency.labels(model=model.name).observe(time.perf_counter() - started)
        return Response(body, headers=headers)

    async def stream(self, websocket: WebSocket) -> None:
        """Streaming speech-to-text (:mod:`.speech`): a refusal is an ``{"error"}`` message and a close."""
        await websocket.accept()
        try:
            self._authorize(websocket)
            model = self.repository.get(websocket.path_params["name"], websocket.path_params.get("version"))
        except ServeError as exc:
            self.metrics.errors.labels(status=str(exc.status)).inc()
            await websocket.send_json({"error": str(exc)})
            await websocket.close(POLICY)
            return
        await converse(websocket, model)

    async def index(self, request: Request) -> Response:
        return JSONResponse(self.repository.index())

    def _check_model_control(self) -> None:
        if not self.limits.model_control:
            raise ServeError("model control is off: this server does not load or unload models on request "
                             "(start it with --model-control, Deployer(model_control=True), and a token); "
                             "it picks up new versions by polling its repository", 403)

    async def load(self, request: Request) -> Response:
        self._check_model_control()
        name = request.path_params["name"]
        await to_thread.run_sync(self.repository.load, name)  # loading takes a while: off the loop
        return JSONResponse({"name": name, "versions": [str(v) for v in self.repository.versions(name)]})

    async def unload(self, request: Request) -> Response:
        self._check_model_control()
        await to_thread.run_sync(self.repository.unload, request.path_params["name"])
        return JSONResponse({})

    async def metrics_text(self, request: Request) -> Response:
        body, content_type = self.metrics.exposition()
        return Response(body, media_type=content_type)


def build_app(repository: Repository, metrics: Metrics, limits: Limits = Limits(),
              poll_s: float = 1.0) -> Starlette:
    """The ASGI app serving ``repository``; it polls the repository every ``poll_s`` while running."""
    e = _Endpoints(repository, metrics, limits)
    model_paths = ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")
    routes = [
        Route("/v2", e.guarded(e.server_metadata)),
        Route("/v2/health/live", e.guarded(e.live, public=True)),
        Route("/v2/health/ready", e.guarded(e.ready, public=True)),
        *(Route(path, e.guarded(e.model_metadata)) for path in model_paths),
        *(Route(path + "/ready", e.guarded(e.model_ready)) for path in model_paths),
        *(Route(path + "/infer", e.guarded(e.infer), methods=["POST"]) for path in model_paths),
        *(WebSocketRoute(path + "/stream", e.stream) for path in model_paths),
        Route("/v2/repository/index", e.guarded(e.index), methods=["POST"]),
        Route("/v2/repository/models/{name}/load", e.guarded(e.load), methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", e.guarded(e.unload), methods=["POST"]),
        Route("/metrics", e.guarded(e.metrics_text)),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        # Starlette's own refusals (no such route, wrong method) as JSON.
        assert isinstance(exc, HTTPException)
        return _error(metrics, exc.status_code, str(exc.detail))

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("unexpected error", exc_info=exc, extra={"path": request.url.path})
        return _error(metrics, 500, f"internal error: {type(exc).__name__}: {exc}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        repository.start_polling(poll_s)
        try:
            yield
        finally:
            await to_thread.run_sync(repository.stop_polling)

    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error, Exception: internal_error})
