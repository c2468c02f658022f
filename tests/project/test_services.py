"""Services checked before a run: each unreachable one is named with its endpoint."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

import pytest

from mlstack.config import load_settings
from mlstack.services import ServiceUnavailable, check_services
from tests.conftest import free_port
from tests.support.http_double import serve_on_loopback
from tests.support.paths import CONFIG, PROJECT


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


class _Api:
    url = ""


def settings(*overrides: str):
    return load_settings(CONFIG, [f"root={PROJECT}", *overrides])


@pytest.mark.unit
def test_local_mode_has_no_service_to_check() -> None:
    assert check_services(settings()) == []


@pytest.mark.unit
def test_every_unreachable_service_is_named_with_its_endpoint() -> None:
    s3, mlflow, redis = free_port(), free_port(), free_port()
    cluster = settings(
        f"object_store.endpoint_url=http://127.0.0.1:{s3}",
        "state_uri=s3://mlpipeline/mlstack",
        f"mlflow.tracking_uri=http://127.0.0.1:{mlflow}",
        f"feast.redis=127.0.0.1:{redis}",
    )
    with pytest.raises(ServiceUnavailable) as caught:
        check_services(cluster)
    message = str(caught.value)
    assert f"the MLflow tracking server at http://127.0.0.1:{mlflow}" in message
    assert f"the object store at http://127.0.0.1:{s3} (s3://mlpipeline/mlstack)" in message
    assert f"Redis (the Feast online store) at 127.0.0.1:{redis}" in message


@pytest.mark.integration
def test_a_service_that_answers_passes() -> None:
    with serve_on_loopback(_Api(), _Health) as api:
        checked = check_services(settings(f"mlflow.tracking_uri={api.url}"), ("mlflow",))
    assert checked == [f"the MLflow tracking server at {api.url}"]
