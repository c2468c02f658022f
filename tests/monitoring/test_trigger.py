"""The retraining trigger against an HTTP double of the KFP v2beta1 API on loopback: the run
request it sends, idempotency per window, the service-account token, and failures that
start nothing."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from mlstack.config import Settings, load_settings
from mlstack.monitoring import MonitoringError
from mlstack.monitoring.trigger import (
    RUN_PREFIX,
    TriggerTarget,
    retrain_request,
    submit,
    trigger_retrain,
)
from pipelines.run import compile_training
from tests.support.kfp_double import KfpApi
from tests.support.paths import CONFIG

REASONS = ["13/22 features drifted (59% >= 50%): recency_days, ...", "predictions drifted"]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_training(load_settings(CONFIG), tmp_path_factory.mktemp("dist"))


def _settings(tmp_path: Path, host: str, package: Path, **kfp: object) -> Settings:
    return load_settings(
        CONFIG,
        {
            "root": str(tmp_path),
            "mode": "cluster",
            "kfp": {
                "host": host,
                "package_path": str(package),
                "token_path": str(tmp_path / "no-token"),
                "experiment": "mlstack-monitoring-test",
                **kfp,
            },
        },
    )


@pytest.mark.unit
def test_request_is_pure_and_named_after_the_window() -> None:
    request = retrain_request("19980301-19980308", REASONS)
    assert request.run_name == f"{RUN_PREFIX}-19980301-19980308"
    assert request == retrain_request("19980301-19980308", REASONS)
    assert request.params["note"].startswith("retrain requested by the drift check: 13/22")
    with pytest.raises(ValueError, match="window id"):
        retrain_request("", REASONS)


@pytest.mark.integration
def test_run_request_body_and_idempotency(kfp_api: KfpApi, package: Path, tmp_path: Path) -> None:
    token = tmp_path / "sa-token"
    token.write_text("in-cluster-token\n")
    settings = _settings(
        tmp_path, kfp_api.url, package, auth="service_account", token_path=str(token)
    )
    first = trigger_retrain(settings, "19980301-19980308", REASONS)
    assert first["started"] is True
    (body,) = kfp_api.bodies("POST", "runs")
    assert body["display_name"] == f"{RUN_PREFIX}-19980301-19980308"
    (experiment,) = kfp_api.objects["experiments"].values()
    assert experiment["display_name"] == "mlstack-monitoring-test"
    assert body["experiment_id"] == experiment["experiment_id"]
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == settings.pipeline.name
    note = body["runtime_config"]["parameters"]["note"]
    assert note.startswith("retrain requested by the drift check") and "13/22" in note
    # the in-cluster service-account token authenticates every call
    assert {r["headers"].get("authorization") for r in kfp_api.requests} == {
        "Bearer in-cluster-token"
    }

    again = trigger_retrain(settings, "19980301-19980308", REASONS)
    assert again == {**first, "started": False}
    assert len(kfp_api.bodies("POST", "runs")) == 1  # a retried check starts nothing new
    other = trigger_retrain(settings, "19980308-19980315", REASONS)
    assert other["started"] is True and other["run_id"] != first["run_id"]
    assert len(kfp_api.objects["runs"]) == 2


@pytest.mark.component
def test_unreachable_kfp_is_a_clear_error(package: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    settings = _settings(tmp_path, f"http://127.0.0.1:{port}", package)
    with pytest.raises(MonitoringError, match=r"is unreachable \(\w+\); no run was started"):
        trigger_retrain(settings, "19980301-19980308", REASONS)


@pytest.mark.integration
def test_kfp_refusal_and_missing_package_start_nothing(
    kfp_api: KfpApi, package: Path, tmp_path: Path
) -> None:
    kfp_api.fail[("POST", "/apis/v2beta1/runs")] = (403, "namespace access denied")
    settings = _settings(tmp_path, kfp_api.url, package)
    with pytest.raises(MonitoringError, match="HTTP 403: namespace access denied"):
        trigger_retrain(settings, "19980301-19980308", REASONS)
    assert kfp_api.objects["runs"] == {}
    missing = _settings(tmp_path, kfp_api.url, tmp_path / "nope.yaml")
    count = len(kfp_api.requests)
    with pytest.raises(MonitoringError, match="no compiled training pipeline"):
        trigger_retrain(missing, "19980301-19980308", REASONS)
    assert len(kfp_api.requests) == count


@pytest.mark.unit
def test_local_mode_runs_once_per_window(tmp_path: Path) -> None:
    settings = load_settings(CONFIG, {"root": str(tmp_path)})
    target = TriggerTarget.from_settings(settings)
    request = retrain_request("19980301-19980308", REASONS)
    marker = target.marker_dir / f"{request.run_name}.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"run_name": request.run_name, "state": "done"}))
    # the window's run is recorded as done: the pipeline is not started again
    assert submit(target, request, settings) == {
        "run_name": request.run_name,
        "state": "done",
        "started": False,
    }


class _Summary:
    def to_json(self) -> str:
        return '{"test_pr_auc": 0.4}'


@pytest.mark.unit
def test_local_retrain_runs_the_given_runner_once_per_window(tmp_path: Path) -> None:
    settings = load_settings(CONFIG, {"root": str(tmp_path), "mode": "local"})
    with pytest.raises(MonitoringError, match="needs the local pipeline runner"):
        trigger_retrain(settings, "19980301-19980308", REASONS)
    notes: list[str] = []

    def run_locally(given: Settings, note: str) -> _Summary:
        assert given is settings
        notes.append(note)
        return _Summary()

    first = trigger_retrain(settings, "19980301-19980308", REASONS, run_locally)
    assert first["started"] is True and first["state"] == "done"
    assert first["summary"] == '{"test_pr_auc": 0.4}'
    again = trigger_retrain(settings, "19980301-19980308", REASONS, run_locally)
    assert again == {**first, "started": False}
    assert len(notes) == 1 and notes[0].startswith("retrain requested by the drift check")
