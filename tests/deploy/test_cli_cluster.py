"""The cluster commands end to end through the CLI: submit and schedule against the KFP
double, rollout / promote --cluster / rollback --cluster / rollback --auto against the
Kubernetes double and a real MLflow registry."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from mlstack.cli import app
from mlstack.registry import models as registry
from tests.deploy.conftest import metrics_text
from tests.deploy.test_kfp_runs import PIPELINE
from tests.support.kfp_double import KfpApi
from tests.support.kube_double import KubeApi
from tests.support.paths import CONFIG

pytestmark = pytest.mark.integration


MODEL = "mlstack-propensity"


@pytest.fixture(autouse=True)
def _restore_mlflow_uris() -> Iterator[None]:
    """The CLI points MLflow's global URIs at the test store; put them back afterwards."""
    tracking_uri, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--config", str(CONFIG), *args])
    return result.exit_code, result.output


def test_submit_and_schedule(kfp_api: KfpApi, tmp_path: Path) -> None:
    package = tmp_path / "training.yaml"
    package.write_text(yaml.safe_dump(PIPELINE))
    common = [
        "--set",
        f"root={tmp_path}",
        "--set",
        f"kfp.host={kfp_api.url}",
        "--set",
        "kfp.auth=sdk",
    ]
    code, out = _run(
        *common,
        "submit",
        "--package",
        str(package),
        "--run-name",
        "r1",
        "--note",
        "try wider windows",
    )
    assert code == 0, out
    (run,) = kfp_api.objects["runs"].values()
    assert f"run r1: {run['run_id']} in experiment mlstack-propensity" in out
    assert run["runtime_config"]["parameters"] == {"note": "try wider windows"}
    (pipeline,) = kfp_api.objects["pipelines"].values()  # uploaded, then run from its version
    assert run["pipeline_version_reference"]["pipeline_id"] == pipeline["pipeline_id"]
    code, out = _run(*common, "schedule", "--package", str(package))
    assert code == 0, out
    (job,) = kfp_api.objects["recurringruns"].values()
    assert job["display_name"] == "mlstack-weekly-retrain"
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    code, out = _run(*common, "schedule", "--package", str(package), "--cron", "0 3 * * 1")
    assert code == 1 and "must have 6 fields" in out
    kfp_api.fail[("POST", "/apis/v2beta1/runs")] = (500, "database is locked")
    code, out = _run(*common, "submit", "--package", str(package), "--run-name", "r2")
    assert code == 1 and "HTTP 500: database is locked" in out


def test_rollout_promote_rollback_and_auto(
    kube: KubeApi,
    tmp_path: Path,
    empty_store: Path,
    metrics_server: dict,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    client.create_registered_model(MODEL)
    for n in (1, 2):
        client.create_model_version(MODEL, source=f"s3://models/{n}")
    common = [
        "--set",
        f"root={tmp_path}",
        "--set",
        f"mlflow.tracking_uri={tracking}",
        "--set",
        f"deploy.kube_host={kube.url}",
        "--set",
        f"deploy.kube_token_path={tmp_path}/none",
        "--set",
        f"deploy.metrics_url={metrics_server['url']}/metrics",
    ]
    code, out = _run(*common, "promote", "1", "--reason", "first", "--cluster")
    assert code == 0, out
    assert "mlstack-propensity-predictor-00002: 100% (latest)" in out
    code, out = _run(*common, "rollout", "2", "--canary", "25")
    assert code == 0, out
    assert "predictor-00003: 25% (latest)" in out and "predictor-00002: 75%" in out
    assert registry.aliases(client, MODEL) == {"champion": "1", "challenger": "2"}

    metrics_server["text"] = metrics_text(ok=500, errors=0, invalid=3, slow=0)
    code, out = _run(*common, "rollback", "--auto")
    assert code == 0, out
    assert "within limits" in out and "traffic" not in out
    metrics_server["text"] = metrics_text(ok=300, errors=30, invalid=0, slow=0)
    code, out = _run(*common, "rollback", "--auto")
    assert code == 0, out
    assert "error rate 9.09% > limit 2.00%" in out
    assert "predictor-00002: 100%" in out
    assert registry.aliases(client, MODEL) == {"champion": "1"}

    code, out = _run(*common, "rollout", "9", "--canary", "10")
    assert code == 1 and "error:" in out and "9" in out
    code, out = _run(*common, "rollback", "--cluster")
    assert code != 0 and "--reason" in out
    del kube.objects[("kubeflow", "mlstack-propensity")]
    code, out = _run(*common, "promote", "2", "--reason", "x", "--cluster")
    assert code == 1 and "not found: install the chart" in out
