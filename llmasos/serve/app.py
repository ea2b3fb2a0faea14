"""The HTTP server: Open Inference Protocol v2 over REST, as a Starlette (ASGI) application.

Endpoints: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]``
(metadata), ``.../ready``, ``POST .../infer``, ``POST /v2/repository/index``,
``POST /v2/repository/models/{name}/load`` and ``/unload``, and ``GET /metrics`` for Prometheus.
Every error is ``{"error": "..."}`` with a fitting status; with a token, every endpoint except the
two health checks wants ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from anyio import to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from ..errors import ServeError
from .metrics import Metrics
from .protocol import HEADER_LENGTH, decode_request, encode_response
from .repository import Repository
from .version import PLATFORM, ModelVersion

log = logging.getLogger("llmasos.serve")

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Limits:
    """What the server accepts: bearer token (None: open), body bytes, elements per tensor."""

    token: str | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    max_tensor_elements: int = 16 * 1024 * 1024


def _error(metrics: Metrics, status: int, message: str) -> JSONResponse:
    metrics.errors.labels(status=str(status)).inc()
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
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


class _Endpoints:
    def __init__(self, repository: Repository, metrics: Metrics, limits: Limits) -> None:
        self.repository, self.metrics, self.limits = repository, metrics, limits

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

    def _authorize(self, request: Request) -> None:
        if self.limits.token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.limits.token}".encode()):
            raise ServeError("missing or wrong bearer token", 401)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "llmasos", "version": __version__,
                             "extensions": ["binary_tensor_data", "model_repository"]})

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
            "outputs": [spec.metadata() for spec in model.outputs], "providers": model.providers,
            "dynamic_batching": model.batcher is not None})

    async def model_ready(self, request: Request) -> Response:
        model = self._model(request)
        return JSONResponse({"name": model.name, "version": str(model.version), "ready": True})

    async def infer(self, request: Request) -> Response:
        model = self._model(request)  # held to the end: a swap mid-request does not affect it
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            parsed = decode_request(await _body(request, self.limits.max_body_bytes),
                                    request.headers.get(HEADER_LENGTH),
                                    max_elements=self.limits.max_tensor_elements)
            feeds = model.prepare(parsed.inputs)
            model.check_outputs(parsed.outputs)
            outputs = (await model.batcher.submit(feeds) if model.batcher is not None
                       else await to_thread.run_sync(model.run, feeds))
            body, headers = encode_response(model.name, str(model.version), parsed, outputs)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.requests.labels(model=model.name, version=str(model.version)).inc()
        self.metrics.latency.labels(model=model.name).observe(time.perf_counter() - started)
        return Response(body, headers=headers)

    async def index(self, request: Request) -> Response:
        return JSONResponse(self.repository.index())

    async def load(self, request: Request) -> Response:
        name = request.path_params["name"]
        await to_thread.run_sync(self.repository.load, name)  # loading takes a while: off the loop
        return JSONResponse({"name": name, "versions": [str(v) for v in self.repository.versions(name)]})

    async def unload(self, request: Request) -> Response:
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
