"""Hot reload against the real server: the champion moves and the server follows without
dropping a request; a version that fails to load leaves the old one serving and is reported.

These move the shared project's champion, so they run after test_server.py (same server).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from mlflow import MlflowClient

from mlstack.registry import models as registry
from tests.serving.conftest import ServedProject, Server, register

pytestmark = pytest.mark.integration

PREDICT = "/v1/models/propensity:predict"
SWITCH_SECONDS = 30


def status(server: Server) -> dict:
    return server.client.get("/v1/models/propensity").json()


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + SWITCH_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_champion_moves_and_no_request_is_dropped(server: Server, served: ServedProject):
    project = served
    body = {"instances": [{"customer_id": project.features["customer_id"].iloc[0]}]}
    seen: dict[str, int] = {}
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                response = client.post(PREDICT, json=body)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                version = response.json()["model_version"]
                seen[version] = seen.get(version, 0) + 1

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        time.sleep(0.5)
        version = register(project, seed=1)
        assert version == "2"
        wait_for(lambda: status(server)["model_version"] == "2", "version 2 to serve")
        wait_for(lambda: seen.get("2", 0) >= 5, "requests answered by version 2")
    finally:
        stop.set()
        worker.join()
    assert not failures, failures[:5]
    assert seen.get("1", 0) > 0 and seen["2"] > 0
    assert status(server)["last_reload_error"] is None


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(
    server: Server, served: ServedProject
):
    project = served
    before = status(server)["model_version"]
    version = register(project, seed=2, alias=None)
    settings = project.settings()
    client = MlflowClient(settings.mlflow.tracking_uri)
    name = settings.mlflow.registered_model
    source = client.get_model_version(name, version).source
    location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    weights = next(Path(urlparse(location).path).glob("model.*"))
    weights.write_bytes(b"this is not a model")  # the version is registered, but broken
    registry.set_alias(client, name, "champion", version, "test: broken", "test")

    wait_for(lambda: status(server)["last_reload_error"] is not None, "the reload failure")
    detail = status(server)
    assert detail["model_version"] == before
    assert detail["ready"] is True
    assert f"version {version}" in detail["last_reload_error"]
    response = server.client.post(PREDICT, json={"instances": [{"customer_id": "ghost"}]})
    assert response.status_code == 200 and response.json()["model_version"] == before
    metrics = server.client.get("/metrics").text
    assert 'mlstack_model_reloads_total{outcome="failed"}' in metrics
    assert 'mlstack_errors_total{kind="reload"}' in metrics
    log = server.log.read_text()
    assert "hot reload failed" in log
