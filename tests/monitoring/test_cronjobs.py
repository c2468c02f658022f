"""The drift-check and materialization CronJobs the chart renders from the monitoring
settings: valid batch/v1 objects with the schedule, limits and credentials asked for."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mlstack.config import load_settings
from mlstack.deploy.manifests import chart_objects, write_manifests
from tests.support.paths import PROJECT

pytestmark = pytest.mark.unit

KUBE_VERSIONS = ("1.29.0", "1.31.0")
KFP_AUDIENCE = "pipelines.kubeflow.org"  # the audience KFP's multi-user API accepts


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    settings = load_settings(
        overrides=[
            "monitoring.drift_cronjob.schedule=15 5 * * *",
            "monitoring.drift_cronjob.starting_deadline_seconds=300",
            "monitoring.service_account=drift-sa",
            "pipeline.base_image=registry.example/mlstack:9.9",
        ]
    )
    out = tmp_path_factory.mktemp("manifests")
    write_manifests(settings, out)
    docs = yaml.safe_load_all((out / "cronjobs.yaml").read_text())
    return {d["metadata"]["name"]: d for d in docs if d}


def test_valid_for_kubernetes(written: dict[str, dict]) -> None:
    assert sorted(written) == ["mlstack-drift-check", "mlstack-materialize"]
    for version in KUBE_VERSIONS:
        for doc in written.values():
            kubernetes_validate.validate(doc, version, strict=True)


def test_schedule_and_safety_settings(written: dict[str, dict]) -> None:
    drift, materialize = written["mlstack-drift-check"], written["mlstack-materialize"]
    assert drift["spec"]["schedule"] == "15 5 * * *"
    assert drift["spec"]["startingDeadlineSeconds"] == 300
    assert materialize["spec"]["schedule"] == "30 2 * * *"
    for job in written.values():
        spec = job["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "drift-sa"
        assert pod["restartPolicy"] == "Never"
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        assert container["image"] == "registry.example/mlstack:9.9"
        assert set(container["resources"]) == {"requests", "limits"}


def test_drift_check_runs_in_cluster_mode_with_a_kfp_token(written: dict[str, dict]) -> None:
    pod = written["mlstack-drift-check"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["mlstack"] and container["args"] == ["drift"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLSTACK_MODE"] == "cluster"
    assert env["MLSTACK_KFP__AUTH"] == "service_account"
    assert env["MLSTACK_KFP__HOST"] == load_settings().kfp.host
    token_dir = env["MLSTACK_KFP__TOKEN_PATH"].rsplit("/", 1)[0]
    assert {"name": "kfp-token", "mountPath": token_dir, "readOnly": True} in container[
        "volumeMounts"
    ]
    (projected,) = [v for v in pod["volumes"] if v["name"] == "kfp-token"]
    source = projected["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == KFP_AUDIENCE


def test_the_chart_follows_the_settings() -> None:
    settings = load_settings(
        overrides=[
            "monitoring.materialize_cronjob.backoff_limit=4",
            "monitoring.drift_cronjob.active_deadline_seconds=900",
            "monitoring.drift_cronjob.resources.memory_limit=2Gi",
            "kfp.host=http://kfp.example:8888",
        ]
    )
    jobs = {d["metadata"]["name"]: d for d in chart_objects(settings) if d["kind"] == "CronJob"}
    materialize = jobs["mlstack-materialize"]["spec"]["jobTemplate"]["spec"]
    drift = jobs["mlstack-drift-check"]["spec"]["jobTemplate"]["spec"]
    assert materialize["backoffLimit"] == 4
    assert drift["activeDeadlineSeconds"] == 900
    (container,) = drift["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["memory"] == "2Gi"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLSTACK_KFP__HOST"] == "http://kfp.example:8888"


def test_rendered_manifest_in_repo_is_current(tmp_path: Path) -> None:
    repo = PROJECT / "manifests" / "cronjobs.yaml"
    write_manifests(load_settings(), tmp_path)
    assert repo.read_text() == (tmp_path / "cronjobs.yaml").read_text(), "run `make manifests`"
