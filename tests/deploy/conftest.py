"""Deploy tests' shared doubles: the Kubernetes API holding the chart's InferenceService,
and a metrics endpoint (the predictor's /metrics and Prometheus' query API) a test fills."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values

from mlstack.deploy.chart import objects, render
from tests.support.kube_double import KubeApi, serve_kube

NS = "kubeflow"


@pytest.fixture(scope="module")
def chart_isvc() -> dict[str, Any]:
    (isvc,) = [d for d in objects(render()) if d["kind"] == "InferenceService"]
    isvc["metadata"]["namespace"] = NS
    return isvc


@pytest.fixture
def kube(chart_isvc: dict[str, Any]) -> Iterator[KubeApi]:
    with serve_kube() as api:
        api.add(chart_isvc)
        yield api


def metrics_text(ok: int, errors: int, invalid: int, slow: int) -> str:
    # Importing Feast (the serving tests do) sets PROMETHEUS_MULTIPROCESS_DIR, and then
    # counters of one name share a value across registries; each exposition here starts at 0.
    saved, values.ValueClass = values.ValueClass, values.MutexValue
    try:
        return _exposition(ok, errors, invalid, slow)
    finally:
        values.ValueClass = saved


def _exposition(ok: int, errors: int, invalid: int, slow: int) -> str:
    reg = CollectorRegistry()
    requests = Counter("mlstack_requests", "", ["protocol", "outcome"], registry=reg)
    latency = Histogram(
        "mlstack_request_seconds",
        "",
        ["protocol"],
        registry=reg,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    )
    requests.labels("v1", "ok").inc(ok)
    requests.labels("v2", "error").inc(errors)
    requests.labels("v1", "invalid").inc(invalid)
    for i in range(ok + errors):
        latency.labels("v1" if i % 2 else "v2").observe(0.8 if i < slow else 0.02)
    return generate_latest(reg).decode()


@pytest.fixture
def metrics_server() -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"text": "", "queries": [], "prom": {}}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/metrics":
                data, ctype, code = state["text"].encode(), "text/plain; version=0.0.4", 200
            elif url.path == "/api/v1/query":
                query = parse_qs(url.query)["query"][0]
                state["queries"].append(query)
                key = next((k for k in state["prom"] if k in query), None)
                if key is None:
                    body = {"status": "error", "errorType": "bad_data", "error": "parse error"}
                    code = 400
                else:
                    value = state["prom"][key]
                    body = {
                        "status": "success",
                        "data": {
                            "resultType": "vector",
                            "result": [{"metric": {}, "value": [1700000000, str(value)]}],
                        },
                    }
                    code = 200
                data, ctype = json.dumps(body).encode(), "application/json"
            else:
                data, ctype, code = b"not found", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()
