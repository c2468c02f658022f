"""Run the predictor in KServe's ModelServer (FastAPI on uvicorn) on the configured address.

KServe provides the V1 and V2 endpoints, readiness, model metadata and `/metrics`. Three
routes are registered ahead of KServe's:

- `POST /v1/models/{name}:predict`: the same `kserve.Model` call (preprocess, predict,
  postprocess) as KServe's handler, with the body parsed by orjson and without KServe's
  CloudEvents checks; a body that is not JSON gets a 400 that says where it breaks, and a
  body that is JSON only with NaN or Infinity reaches the validator, which names the field;
- `GET /v1/models/{name}`: readiness with detail (the version served, the last hot reload
  failure);
- `GET /v2/models/{name}/status`: the same detail on the V2 side.

Hot reload polls the registry alias every `serving.reload_interval_seconds` in a background
task; the new version is loaded in a worker thread, so requests keep being served meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from starlette.routing import Route
from threadpoolctl import threadpool_limits

from mlstack import storage
from mlstack.config import Settings
from mlstack.config.serving import ServingSettings
from mlstack.features.definitions import feature_names
from mlstack.serving import guards, metrics
from mlstack.serving.payloads import PayloadLogger
from mlstack.serving.predictor import PropensityModel

log = logging.getLogger(__name__)

JSON = "application/json"
QUIET_LOGGERS = ("uvicorn.access", "kserve.trace")
MODEL_THREADS = 1
LOAD_RETRY_FIRST_SECONDS = 1.0
LOAD_RETRY_MAX_SECONDS = 30.0
MAX_BYTES_PER_INSTANCE = 16 * 1024
"""A V1 body may hold this many bytes per allowed instance (a feature row is about 1 KiB)."""


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc), or None where that is not known:
    the cold start the log reports includes the interpreter and the imports."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None


def payload_logger(settings: Settings) -> PayloadLogger | None:
    """The configured payload sink, or None when payload logging is off."""
    if not settings.serving.payload_log:
        return None
    fs, folder = storage.filesystem(settings.payload_uri(), settings.object_store)
    return PayloadLogger(
        folder,
        feature_names(settings),
        flush_rows=settings.serving.payload_flush_rows,
        flush_seconds=settings.serving.payload_flush_seconds,
        fs=fs,
        max_buffer_rows=settings.serving.payload_buffer_rows,
    )


def _json_error(body: bytes, err: Exception) -> Any:
    """The body parsed leniently (NaN and Infinity allowed) or a 400 naming the break."""
    if not body.strip():
        raise InvalidInput("the request body is empty; send a JSON object with 'instances'")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as lenient:
        where = (
            getattr(lenient, "msg", None) and f" at line {lenient.lineno} column {lenient.colno}"
        )
        raise InvalidInput(f"the request body is not valid JSON{where or ''}: {err}") from None


def add_routes(app: FastAPI, model: PropensityModel) -> None:
    """Register the fast V1 predict route and the readiness detail routes (before KServe's)."""

    def _model(name: str) -> PropensityModel:
        if name != model.name:
            raise ModelNotFound(name)
        if not model.ready or model.current is None:
            raise ModelNotReady(name, model.last_reload_error)
        return model

    async def v1_predict(request: Request) -> Response:
        target = _model(request.path_params["model_name"])
        body = await request.body()  # at most the Guard's limit: it answers 413 past it
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            try:
                payload = _json_error(body, err)
            except InvalidInput:
                metrics.REQUESTS.labels(protocol="v1", outcome="invalid").inc()
                metrics.ERRORS.labels(kind="malformed_json").inc()
                raise
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        response, headers = await target(payload, headers={"x-request-id": request_id})
        return Response(orjson.dumps(response), media_type=JSON, headers=headers or None)

    async def v1_status(model_name: str) -> Response:
        status = _model(model_name).status()
        if model.draining:  # readiness: 503 while shutting down, predictions still answered
            raise ModelNotReady(model_name, "the server is shutting down")
        return Response(orjson.dumps(status), media_type=JSON)

    async def v2_status(model_name: str) -> Response:
        if model_name != model.name:
            raise ModelNotFound(model_name)
        return Response(orjson.dumps(model.status()), media_type=JSON)

    # A plain Starlette route: FastAPI's per-request dependency solving is not needed here.
    app.router.routes.insert(
        0, Route("/v1/models/{model_name}:predict", v1_predict, methods=["POST"])
    )
    app.add_api_route("/v1/models/{model_name}", v1_status, methods=["GET"])
    app.add_api_route("/v2/models/{model_name}/status", v2_status, methods=["GET"])


def _plain_answer(status: int) -> Any:
    async def handler(_: Request, exc: Exception) -> Response:
        return Response(orjson.dumps({"error": str(exc)}), status_code=status, media_type=JSON)

    return handler


def rest_server_class(serving: ServingSettings, closing: Callable[[], bool]) -> type:
    """KServe's REST server with only the routes users call (`guards.SERVED_PATHS`), the
    request limits and, with `serving.auth_token` set, bearer-token auth; without KServe's
    timing middleware, whose only output is a log line per request (silenced here; the
    Prometheus histograms measure the same) and which matches every route against each
    request to name it. `closing()`: whether the server is draining (responses then carry
    `Connection: close`)."""
    from kserve.protocol.rest.server import RESTServer

    token = serving.auth_token.get_secret_value() if serving.auth_token else None

    class GuardedRESTServer(RESTServer):
        def _register_endpoints(self, app: FastAPI) -> None:
            super()._register_endpoints(app)
            app.openapi = guards.served_openapi(app)

        def _add_exception_handlers(self, app: FastAPI) -> None:
            super()._add_exception_handlers(app)
            # A bad request, an unknown model and "not ready yet" are answers, not server
            # faults: KServe's handlers log each with a traceback at ERROR, which a startup
            # probe every 2 s would turn into a flood. The same bodies, no traceback.
            for kind, status in ((InvalidInput, 400), (ModelNotFound, 404), (ModelNotReady, 503)):
                app.add_exception_handler(kind, _plain_answer(status))

        def _add_middlewares(self, app: FastAPI) -> None:
            if self.access_log_format:  # KServe's optional access log stays available
                super()._add_middlewares(app)
            app.add_middleware(
                guards.Guard,
                max_bytes=serving.max_batch_size * MAX_BYTES_PER_INSTANCE,
                body_timeout=serving.body_timeout_seconds,
                token=token,
                closing=closing,
            )

    return GuardedRESTServer


class Drain:
    """What SIGTERM does: readiness turns 503 and every response carries `Connection: close`
    for `serving.drain_seconds`, while requests are still answered, so the endpoint is taken
    out of rotation and keep-alive clients reconnect elsewhere; then uvicorn stops accepting,
    finishes the requests in flight (`serving.shutdown_grace_seconds`), and `serve` flushes
    the payload log. A second signal, or SIGINT, stops at once."""

    def __init__(self, model: PropensityModel, stop: Any, seconds: float) -> None:
        self.model = model
        self._stop = stop  # uvicorn's own handle_exit
        self.seconds = seconds
        self._loop = asyncio.get_running_loop()

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.model.draining or sig != signal.SIGTERM or self.seconds <= 0:
            self._stop(sig, frame)
            return
        self.model.draining = True
        log.info("SIGTERM: not ready; answering for %gs more, then stopping", self.seconds)
        self._loop.call_soon_threadsafe(self._loop.call_later, self.seconds, self._stop, sig, frame)


async def load_until_ready(model: PropensityModel, serving: ServingSettings) -> None:
    """Load the model (in a thread; the server answers health checks meanwhile), retrying
    with exponential backoff until it loads: MLflow down, no version under the alias yet, a
    version that fails its checks. Readiness is 503 until then. Then poll for hot reloads."""
    delay, attempt = LOAD_RETRY_FIRST_SECONDS, 1
    while True:
        try:
            await asyncio.to_thread(model.load)
            break
        except Exception as err:
            model.last_reload_error = str(err)
            metrics.ERRORS.labels(kind="model_load").inc()
            log.warning("model not loaded (attempt %d): %s; next try in %gs", attempt, err, delay)
            await asyncio.sleep(delay)
            delay, attempt = min(delay * 2, LOAD_RETRY_MAX_SECONDS), attempt + 1
    model.last_reload_error = None
    # Everything loaded so far (MLflow, Feast, KServe, the model) lives as long as the server:
    # keep it out of the collector's full passes, which otherwise pause requests for tens of ms.
    gc.collect()
    gc.freeze()
    age = process_age()
    current = model.current
    assert current is not None
    log.info(
        "ready: %s version %s at /v1/models/%s:predict (%s after the process started)",
        current.ref.name,
        current.version,
        model.name,
        "?" if age is None else f"{age:.1f}s",
    )
    interval = serving.reload_interval_seconds
    if serving.storage_uri is None and interval > 0:
        await reload_loop(model, interval)


async def reload_loop(model: PropensityModel, interval: float) -> None:
    """Poll the alias every `interval` seconds; load in a thread, swap when loaded."""
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(model.reload_if_moved)


def serve(settings: Settings) -> None:
    """Load the model and serve it until interrupted; flush payloads on the way out."""
    from kserve import ModelServer
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import app

    config = settings.serving
    # The server retries a failed load itself (and logs each try): MLflow's own retries of
    # an unreachable tracking server (7, with backoff) would make one try last minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # MLflow draws a tqdm bar for each model download: noise in a server's log, and a
    # monitor thread that outlives it
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    payloads = payload_logger(settings)
    model = PropensityModel(settings, payloads=payloads)
    # A request holds a few rows: OpenMP threads in the model's predict cost more than they
    # save and compete with the event loop, so the model runs on one thread.
    limits = threadpool_limits(limits=MODEL_THREADS)
    server = ModelServer(
        http_port=config.port,
        enable_grpc=False,
        enable_docs_url=False,
        enable_latency_logging=False,
    )
    # A log line per request (uvicorn's access log, KServe's timing trace) costs more than
    # scoring; Prometheus counts the requests instead.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    server.register_model(model)  # not ready until `load_until_ready` has loaded it
    model.enable_latency_logging = False
    add_routes(app, model)
    rest = rest_server_class(settings.serving, closing=lambda: model.draining)(
        FASTAPI_APP_IMPORT_STRING,
        server.dataplane,
        server.model_repository_extension,
        config.port,
        grace_period=config.shutdown_grace_seconds,
        event_loop="uvloop",
    )
    rest.config.host = config.host  # KServe binds 0.0.0.0; locally we stay on the address set

    async def main() -> None:
        server.setup_event_loop()
        # uvicorn calls its server's handle_exit from the signal handlers it installs
        uvicorn_server = rest._server
        drain = Drain(model, uvicorn_server.handle_exit, config.drain_seconds)
        uvicorn_server.handle_exit = drain.handle_exit
        terminate.append(drain.handle_exit)
        loader = asyncio.create_task(load_until_ready(model, settings.serving))
        try:
            await rest.start()
        finally:
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader

    # SIGTERM outside uvicorn's own handlers: before it has installed them, the drain starts
    # all the same; after it has shut down, uvicorn raises the signal again, and the default
    # action would then end the process before the payload log is flushed below.
    terminate: list[Callable[[int, Any], None]] = []
    signal.signal(signal.SIGTERM, lambda sig, frame: terminate and terminate[0](sig, frame))
    if payloads is not None:
        payloads.start()
    log.info("listening on http://%s:%d; loading the model", config.host, config.port)
    try:
        import uvloop

        uvloop.run(main())
    finally:
        limits.restore_original_limits()
        if payloads is not None:
            payloads.close()
            log.info(
                "payload log: %d rows in %d files, %d dropped",
                payloads.rows_written,
                payloads.files_written,
                payloads.rows_dropped,
            )
