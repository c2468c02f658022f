"""The drift-check and materialization CronJobs: settings in, valid batch/v1 objects out."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mlstack.config import load_settings
from mlstack.deploy.cronjobs import (
    KFP_AUDIENCE,
    drift_check_cronjob,
    materialize_cronjob,
    write_cronjobs,
)

KUBE_VERSIONS = ("1.29.0", "1.31.0")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    settings = load_settings(
        overrides=[
            "monitoring.drift_cronjob.schedule=15 5 * * *",
            "monitoring.drift_cronjob.starting_deadline_seconds=300",
            "monitoring.service_account=drift-sa",
            "pipeline.base_image=registry.example/mlstack:9.9",
        ]
    )
    path = write_cronjobs(settings, tmp_path_factory.mktemp("manifests"))
    return list(yaml.safe_load_all(path.read_text()))


def test_valid_for_kubernetes(written: list[dict]) -> None:
    assert [d["metadata"]["name"] for d in written] == [
        "mlstack-drift-check",
        "mlstack-materialize",
    ]
    for version in KUBE_VERSIONS:
        for doc in written:
            kubernetes_validate.validate(doc, version, strict=True)


def test_schedule_and_safety_settings(written: list[dict]) -> None:
    drift, materialize = written
    assert drift["spec"]["schedule"] == "15 5 * * *"
    assert drift["spec"]["startingDeadlineSeconds"] == 300
    assert materialize["spec"]["schedule"] == "30 2 * * *"
    for job in written:
        spec = job["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "drift-sa"
        assert pod["restartPolicy"] == "Never"
        (container,) = pod["containers"]
        assert container["image"] == "registry.example/mlstack:9.9"
        assert set(container["resources"]) == {"requests", "limits"}


def test_drift_check_runs_in_cluster_mode_with_a_kfp_token(written: list[dict]) -> None:
    pod = written[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["mlstack"] and container["args"] == ["drift"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLSTACK_MODE"] == "cluster"
    assert env["MLSTACK_KFP__AUTH"] == "service_account"
    token_dir = env["MLSTACK_KFP__TOKEN_PATH"].rsplit("/", 1)[0]
    assert {"name": "kfp-token", "mountPath": token_dir, "readOnly": True} in container[
        "volumeMounts"
    ]
    (projected,) = [v for v in pod["volumes"] if v["name"] == "kfp-token"]
    source = projected["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == KFP_AUDIENCE


def test_builders_follow_the_settings() -> None:
    settings = load_settings(overrides=["monitoring.materialize_cronjob.backoff_limit=4"])
    assert materialize_cronjob(settings)["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 4
    assert drift_check_cronjob(settings)["metadata"]["namespace"] == settings.monitoring.namespace


def test_rendered_manifest_in_repo_is_current(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2] / "manifests" / "cronjobs.yaml"
    fresh = write_cronjobs(load_settings(), tmp_path)
    assert repo.read_text() == fresh.read_text(), "run `make manifests`"
