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
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from starlette.exceptions import HTTPException
from starlette.routing import Route
from threadpoolctl import threadpool_limits

from mlstack import storage
from mlstack.config import Settings
from mlstack.features.definitions import feature_names
from mlstack.serving import metrics
from mlstack.serving.payloads import PayloadLogger
from mlstack.serving.predictor import PropensityModel

log = logging.getLogger(__name__)

JSON = "application/json"
QUIET_LOGGERS = ("uvicorn.access", "kserve.trace")
MODEL_THREADS = 1
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
    fs, folder = storage.filesystem(settings.payload_uri(), settings)
    return PayloadLogger(
        folder,
        feature_names(settings),
        flush_rows=settings.serving.payload_flush_rows,
        flush_seconds=settings.serving.payload_flush_seconds,
        fs=fs,
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


def _too_large(size: int, limit: int) -> HTTPException:
    metrics.REQUESTS.labels(protocol="v1", outcome="invalid").inc()
    metrics.ERRORS.labels(kind="too_large").inc()
    return HTTPException(
        413,
        f"the request body is too large: {size} bytes, at most {limit} "
        "(serving.max_batch_size instances)",
    )


def add_routes(app: FastAPI, model: PropensityModel) -> None:
    """Register the fast V1 predict route and the readiness detail routes (before KServe's)."""

    def _model(name: str) -> PropensityModel:
        if name != model.name:
            raise ModelNotFound(name)
        if not model.ready or model.current is None:
            raise ModelNotReady(name, model.last_reload_error)
        return model

    limit = model.settings.serving.max_batch_size * MAX_BYTES_PER_INSTANCE

    async def v1_predict(request: Request) -> Response:
        target = _model(request.path_params["model_name"])
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        body = await request.body()
        if len(body) > limit:
            raise _too_large(len(body), limit)
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


def rest_server_class() -> type:
    """KServe's REST server without its timing middleware, whose only output is a log line per
    request (silenced here; the Prometheus histograms measure the same) and which matches every
    route against each request to name it."""
    from kserve.protocol.rest.server import RESTServer

    class QuietRESTServer(RESTServer):
        def _add_middlewares(self, app: FastAPI) -> None:
            if self.access_log_format:  # KServe's optional access log stays available
                super()._add_middlewares(app)

    return QuietRESTServer


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
    payloads = payload_logger(settings)
    model = PropensityModel(settings, payloads=payloads)
    # A request holds a few rows: OpenMP threads in the model's predict cost more than they
    # save and compete with the event loop, so the model runs on one thread.
    limits = threadpool_limits(limits=MODEL_THREADS)
    model.load()
    opening = time.perf_counter()
    model.warm_up()
    log.info("feature store opened and probed in %.2fs", time.perf_counter() - opening)
    # Everything loaded so far (MLflow, Feast, KServe, the model) lives as long as the server:
    # keep it out of the collector's full passes, which otherwise pause requests for tens of ms.
    gc.collect()
    gc.freeze()
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
    server.register_model(model)
    model.enable_latency_logging = False
    model.start()
    add_routes(app, model)
    rest = rest_server_class()(
        FASTAPI_APP_IMPORT_STRING,
        server.dataplane,
        server.model_repository_extension,
        config.port,
        grace_period=5,
        event_loop="uvloop",
    )
    rest.config.host = config.host  # KServe binds 0.0.0.0; locally we stay on the address set

    async def main() -> None:
        server.setup_event_loop()
        tasks = []
        if config.storage_uri is None and config.reload_interval_seconds > 0:
            tasks.append(asyncio.create_task(reload_loop(model, config.reload_interval_seconds)))
        try:
            await rest.start()
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    if payloads is not None:
        payloads.start()
    age = process_age()
    log.info(
        "serving %s version %s on http://%s:%d/v1/models/%s:predict (%s after the process started)",
        model.current.ref.name if model.current else "-",
        model.current.version if model.current else "-",
        config.host,
        config.port,
        model.name,
        "?" if age is None else f"{age:.1f}s",
    )
    try:
        import uvloop

        uvloop.run(main())
    finally:
        limits.restore_original_limits()
        if payloads is not None:
            payloads.close()
            log.info(
                "payload log: %d rows in %d files", payloads.rows_written, payloads.files_written
            )
