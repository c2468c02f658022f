"""submit_run, find_run and create_recurring_run with the real kfp.Client against the KFP double."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlstack.config import Settings, load_settings
from mlstack.deploy.kfp_runs import (
    KfpError,
    client_from_settings,
    create_recurring_run,
    find_run,
    submit_run,
)
from tests.support.kfp_double import KfpApi
from tests.support.paths import CONFIG

pytestmark = pytest.mark.integration


PIPELINE = {
    "pipelineInfo": {"name": "mlstack-training"},
    "root": {"inputDefinitions": {"parameters": {"note": {"parameterType": "STRING"}}}},
    "schemaVersion": "2.1.0",
    "sdkVersion": "kfp-2.16.1",
    "components": {},
    "deploymentSpec": {},
}


@pytest.fixture
def package(tmp_path: Path) -> Path:
    path = tmp_path / "training.yaml"
    path.write_text(yaml.safe_dump(PIPELINE))
    return path


def _settings(url: str, tmp_path: Path, **kfp: object) -> Settings:
    missing = tmp_path / "no-token"
    return load_settings(
        CONFIG, {"kfp": {"host": url, "token_path": str(missing), **kfp}, "root": str(tmp_path)}
    )


def test_submit_creates_experiment_and_run_with_token(
    kfp_api: KfpApi, package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KFP_TOKEN", "s3cret")
    client = client_from_settings(_settings(kfp_api.url, tmp_path).kfp)
    run_id = submit_run(
        client,
        package,
        experiment="mlstack",
        run_name="train-1",
        params={"note": "first"},
        namespace="kubeflow",
        upload=True,
    )
    (experiment,) = kfp_api.objects["experiments"].values()
    assert experiment["display_name"] == "mlstack"
    assert experiment["namespace"] == "kubeflow"
    (run,) = kfp_api.bodies("POST", "runs")
    assert run["display_name"] == "train-1"
    assert run["experiment_id"] == experiment["experiment_id"]
    (pipeline,) = kfp_api.objects["pipelines"].values()
    assert pipeline["display_name"] == "mlstack-training"  # uploaded: listed under Pipelines
    ref = run["pipeline_version_reference"]
    assert ref["pipeline_id"] == pipeline["pipeline_id"]
    version = kfp_api.objects["versions"][ref["pipeline_version_id"]]
    assert version["pipeline_spec"] == PIPELINE
    assert run["runtime_config"]["parameters"] == {"note": "first"}
    assert kfp_api.objects["runs"][run_id]["display_name"] == "train-1"
    auth = {r["headers"].get("authorization") for r in kfp_api.requests}
    assert auth == {"Bearer s3cret"}


def test_submit_is_idempotent_by_run_name(kfp_api: KfpApi, package: Path, tmp_path: Path) -> None:
    client = client_from_settings(_settings(kfp_api.url, tmp_path, auth="sdk").kfp)
    first = submit_run(
        client, package, experiment="mlstack", run_name="retrain-2026-11-23", upload=True
    )
    again = submit_run(
        client, package, experiment="mlstack", run_name="retrain-2026-11-23", upload=True
    )
    other = submit_run(
        client, package, experiment="mlstack", run_name="retrain-2026-11-30", upload=True
    )
    assert first == again != other
    assert len(kfp_api.bodies("POST", "runs")) == 2
    assert len(kfp_api.objects["pipelines"]) == 1
    versions_before = len(kfp_api.objects["versions"])
    changed = {**PIPELINE, "sdkVersion": "kfp-2.16.2"}
    package.write_text(yaml.safe_dump(changed))
    submit_run(client, package, experiment="mlstack", run_name="retrain-2026-12-07", upload=True)
    submit_run(client, package, experiment="mlstack", run_name="retrain-2026-12-14", upload=True)
    assert len(kfp_api.objects["versions"]) == versions_before + 1  # changed once, reused once
    last = kfp_api.bodies("POST", "runs")[-1]["pipeline_version_reference"]
    assert kfp_api.objects["versions"][last["pipeline_version_id"]]["pipeline_spec"] == changed
    assert len(kfp_api.bodies("POST", "experiments")) == 1
    assert find_run(client, "mlstack", "retrain-2026-11-23") == first
    assert find_run(client, "mlstack", "never-ran") is None
    assert find_run(client, "no-such-experiment", "retrain-2026-11-23") is None
    assert all("authorization" not in r["headers"] for r in kfp_api.requests)


def test_service_account_token_file(kfp_api: KfpApi, package: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    settings = _settings(kfp_api.url, tmp_path, auth="service_account", token_path=str(token))
    submit_run(client_from_settings(settings.kfp), package, experiment="e", run_name="r")
    assert {r["headers"].get("authorization") for r in kfp_api.requests} == {"Bearer sa-token"}


def test_token_mode_without_token_is_a_clear_error(
    kfp_api: KfpApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    with pytest.raises(ValueError, match="env var KFP_TOKEN is empty"):
        client_from_settings(_settings(kfp_api.url, tmp_path, auth="token").kfp)


def test_recurring_run_body_and_idempotency(kfp_api: KfpApi, package: Path, tmp_path: Path) -> None:
    client = client_from_settings(_settings(kfp_api.url, tmp_path, auth="sdk").kfp)
    rid = create_recurring_run(
        client,
        package,
        experiment="mlstack",
        name="weekly",
        cron="0 0 3 * * 1",
        params={"note": "scheduled"},
        max_concurrency=1,
    )
    again = create_recurring_run(
        client, package, experiment="mlstack", name="weekly", cron="0 0 3 * * 1"
    )
    assert rid == again
    (body,) = kfp_api.bodies("POST", "recurringruns")
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert body["mode"] == "ENABLE"
    assert body["no_catchup"] is True
    assert body["max_concurrency"] == "1" or body["max_concurrency"] == 1
    assert body["runtime_config"]["parameters"] == {"note": "scheduled"}
    assert body["pipeline_version_reference"]["pipeline_version_id"] in kfp_api.objects["versions"]
    with pytest.raises(KfpError, match="6 fields"):
        create_recurring_run(client, package, experiment="mlstack", name="x", cron="0 3 * * 1")


def test_api_errors_name_the_call(kfp_api: KfpApi, package: Path, tmp_path: Path) -> None:
    client = client_from_settings(_settings(kfp_api.url, tmp_path, auth="sdk").kfp)
    kfp_api.fail[("POST", "/apis/v2beta1/runs")] = (500, "database is locked")
    with pytest.raises(KfpError, match=r"creating run 'r1' failed: HTTP 500: database is locked"):
        submit_run(client, package, experiment="mlstack", run_name="r1")
    kfp_api.fail[("GET", "/apis/v2beta1/experiments")] = (403, "namespace kubeflow is forbidden")
    with pytest.raises(KfpError, match="HTTP 403: namespace kubeflow is forbidden"):
        submit_run(client, package, experiment="mlstack", run_name="r1")
    assert kfp_api.objects["runs"] == {}
    not_a_pipeline = tmp_path / "notes.yaml"
    not_a_pipeline.write_text("just: notes\n")
    with pytest.raises(KfpError, match="is not a compiled KFP pipeline"):
        submit_run(client, not_a_pipeline, experiment="mlstack", run_name="r1")
    kfp_api.fail = {("POST", "/apis/v2beta1/pipelines/upload_version"): (413, "too large")}
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(yaml.safe_dump({**PIPELINE, "sdkVersion": "kfp-9"}))
    with pytest.raises(KfpError, match="uploading pipeline 'mlstack-training' failed: HTTP 413"):
        submit_run(client, bigger, experiment="mlstack", run_name="r1", upload=True)
    with pytest.raises(KfpError, match="run `mlstack compile` first"):
        submit_run(client, tmp_path / "missing.yaml", experiment="mlstack", run_name="r1")
