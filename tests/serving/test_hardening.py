"""The served surface, against the real server: only the routes users call, bearer-token auth,
request limits, and a start that waits for the model instead of failing."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from mlstack.features.definitions import feature_names
from mlstack.serving.guards import OPEN_PATHS
from mlstack.serving.payloads import read_payloads
from tests.conftest import free_port, start_mlflow_server
from tests.serving.conftest import ServedProject, Server

pytestmark = pytest.mark.integration

PREDICT = "/v1/models/propensity:predict"
INFER = "/v2/models/propensity/infer"
TOKEN = "a-token-from-a-secret"


def _row(served: ServedProject) -> dict:
    names = feature_names(served.settings())
    row = served.features[names].dropna().iloc[0]  # JSON has no NaN
    return {name: float(row[name]) for name in names}


def test_the_model_repository_is_not_served_and_the_model_keeps_answering(
    server: Server, served: ServedProject
) -> None:
    for verb in ("unload", "load"):
        answer = server.client.post(f"/v2/repository/models/propensity/{verb}")
        assert answer.status_code == 404, (verb, answer.text)
    for path in ("/v1/models", "/v2/models/propensity/versions/1", "/docs"):
        assert server.client.get(path).status_code == 404, path
    assert server.client.post("/v1/models/propensity:explain", json={}).status_code == 404
    assert server.client.get("/v2/models/propensity/ready").status_code == 200
    answer = server.client.post(PREDICT, json={"instances": [_row(served)]})
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def guarded(served: ServedProject):
    running = Server(served, f"serving.auth_token={TOKEN}", "serving.body_timeout_seconds=1")
    try:
        yield running
    finally:
        running.stop()


def test_with_a_token_set_predict_needs_it_and_probes_do_not(
    guarded: Server, served: ServedProject
) -> None:
    body = {"instances": [_row(served)]}
    missing = guarded.client.post(PREDICT, json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "missing" in missing.json()["error"]
    wrong = guarded.client.post(PREDICT, json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.client.post(PREDICT, json=body, headers=auth).status_code == 200
    assert guarded.client.get("/v2/models/propensity").status_code == 401  # metadata
    assert guarded.client.get("/v2/models/propensity", headers=auth).status_code == 200
    assert guarded.client.post(INFER, json={"inputs": []}).status_code == 401
    for path in sorted(OPEN_PATHS):
        answer = guarded.client.get(path.replace("{model_name}", "propensity"))
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
    assert "mlstack_errors_total" in guarded.client.get("/metrics").text


def test_a_huge_body_gets_413_and_a_stalled_body_408_while_others_are_served(
    guarded: Server, served: ServedProject
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    huge = b'{"inputs": [' + b" " * (50 * 16 * 1024 + 10) + b"]}"  # serving.max_batch_size=50
    answer = guarded.client.post(
        INFER, content=huge, headers={**auth, "content-type": "application/json"}
    )
    assert answer.status_code == 413, answer.text

    def chunks():
        yield b'{"inputs": ['
        yield b" " * (50 * 16 * 1024 + 10)

    streamed = guarded.client.post(INFER, content=chunks(), headers=auth)  # chunked: no length
    assert streamed.status_code == 413, streamed.text

    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as slow:
        slow.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
        )
        started = time.monotonic()
        # while that body stalls, another client is served at once
        quick = guarded.client.post(PREDICT, json={"instances": [_row(served)]}, headers=auth)
        assert quick.status_code == 200 and time.monotonic() - started < 1
        reply = slow.recv(4096).decode(errors="replace")
        waited = time.monotonic() - started
    assert reply.startswith("HTTP/1.1 408"), reply
    assert 0.9 < waited < 5, waited


def test_with_mlflow_down_at_start_the_server_is_live_not_ready_until_it_loads(
    served: ServedProject,
) -> None:
    port = free_port()
    settings = served.settings()
    backend = settings.mlflow.tracking_uri
    assert backend.startswith("sqlite:"), backend
    predictor = Server(
        served, f"mlflow.tracking_uri=http://127.0.0.1:{port}", wait_for="/v2/health/live"
    )
    mlflow = None
    try:
        assert predictor.client.get("/v2/models/propensity/ready").status_code == 503
        status = predictor.client.get("/v1/models/propensity")
        assert status.status_code == 503
        deadline = time.monotonic() + 60
        while "model not loaded (attempt 2)" not in (log := predictor.log.read_text()):
            assert time.monotonic() < deadline, log[-2000:]
            time.sleep(0.5)
        assert predictor.process.poll() is None, "the server keeps running without its model"
        assert f"127.0.0.1:{port}" in log, log[-2000:]  # the reason names the endpoint
        assert predictor.client.get("/v2/health/live").status_code == 200
        mlflow = start_mlflow_server(backend, port, served.root / f"mlflow-{port}.log")
        deadline = time.monotonic() + 240
        while predictor.client.get("/v2/models/propensity/ready").status_code != 200:
            assert mlflow.poll() is None, (served.root / f"mlflow-{port}.log").read_text()
            assert time.monotonic() < deadline, predictor.log.read_text()[-2000:]
            time.sleep(0.5)
        answer = predictor.client.post(PREDICT, json={"instances": [_row(served)]})
        assert answer.status_code == 200, answer.text
        assert predictor.client.get("/v1/models/propensity").json()["last_reload_error"] is None
    finally:
        predictor.stop()
        if mlflow is not None and mlflow.poll() is None:
            os.killpg(mlflow.pid, signal.SIGTERM)
            mlflow.wait(30)


def test_the_route_list_is_what_the_openapi_document_shows(server: Server) -> None:
    paths = set(server.client.get("/openapi.json").json()["paths"])
    assert "/v2/repository/models/{model_name}/unload" not in paths
    assert {"/v2/models/{model_name}/infer", "/v2/health/ready", "/v2/models/{model_name}"} <= paths
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def test_sigterm_under_load_answers_every_request_and_logs_every_answered_row(
    served: ServedProject, tmp_path: Path
) -> None:
    """Clients behave like a Kubernetes Service: they stop sending to the pod once its
    readiness has said no for a moment (the endpoint removed). Every request sent gets its
    answer, none a reset, and the payload log holds exactly the rows answered (flushed at
    exit: the flush interval is longer than the test)."""
    payloads = tmp_path / "payloads"
    predictor = Server(
        served,
        f"serving.payload_dir={payloads}",
        "serving.payload_flush_seconds=600",
        "serving.drain_seconds=2",
    )
    body = {"instances": [_row(served)]}
    out_of_rotation = threading.Event()
    answered, failures = [], []

    def client() -> None:
        with httpx.Client(base_url=predictor.url, timeout=10) as session:
            while not out_of_rotation.is_set():
                try:
                    reply = session.post(PREDICT, json=body)
                except httpx.TransportError as err:
                    failures.append(repr(err))
                    continue
                if reply.status_code == 200:
                    answered.append(1)
                else:
                    failures.append(f"{reply.status_code} {reply.text[:200]}")

    def endpoints() -> None:  # the endpoint controller, a little behind the probe
        while True:
            try:
                ready = httpx.get(f"{predictor.url}/v2/models/propensity/ready", timeout=2)
            except httpx.TransportError:
                break
            if ready.status_code != 200:
                time.sleep(0.5)
                break
            time.sleep(0.1)
        out_of_rotation.set()

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(1.5)
        assert answered, failures[:5]
        predictor.process.send_signal(signal.SIGTERM)
        watcher = threading.Thread(target=endpoints)
        watcher.start()
        watcher.join(30)
        for thread in clients:
            thread.join(30)
        assert predictor.process.wait(30) == 0, predictor.log.read_text()[-2000:]
    finally:
        out_of_rotation.set()
        predictor.stop()
    assert failures == []
    log = predictor.log.read_text()
    assert "SIGTERM: not ready" in log, log[-2000:]
    assert len(read_payloads(payloads)) == len(answered)
