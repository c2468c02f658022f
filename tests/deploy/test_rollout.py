"""rollout, promote, rollback and automatic rollback against a Kubernetes API double on
loopback (the real `kubernetes` client) and a real MLflow registry (SQLite)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from mlstack.config import Settings, load_settings
from mlstack.deploy.canary import canary_health, quantile_from_buckets
from mlstack.deploy.errors import RolloutError
from mlstack.deploy.kube import KubeError, api_client
from mlstack.deploy.names import STORAGE_ENV
from mlstack.deploy.rollout import auto_rollback, promote, rollback, rollout
from mlstack.registry import models as registry
from tests.deploy.conftest import metrics_text
from tests.support.kube_double import KubeApi
from tests.support.paths import CONFIG

NS, NAME, MODEL = "kubeflow", "mlstack-propensity", "mlstack-propensity"


@pytest.fixture
def settings(
    tmp_path: Path, kube: KubeApi, empty_store: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    token = tmp_path / "token"
    token.write_text("kube-token\n")
    return load_settings(
        CONFIG,
        {
            "root": str(tmp_path),
            "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"},
            "deploy": {"kube_host": kube.url, "kube_token_path": str(token)},
        },
    )


@pytest.fixture
def mlflow(settings: Settings) -> MlflowClient:
    client = MlflowClient(
        tracking_uri=settings.mlflow.tracking_uri, registry_uri=settings.mlflow.tracking_uri
    )
    client.create_registered_model(MODEL)
    for n in (1, 2, 3):
        client.create_model_version(MODEL, source=f"s3://models/propensity/{n}")
    return client


def _env(obj: dict[str, Any]) -> dict[str, str]:
    (container,) = obj["spec"]["predictor"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def _traffic(kube: KubeApi) -> list[tuple[str, int]]:
    status = kube.objects[(NS, NAME)]["status"]["components"]["predictor"]
    return sorted((t["revisionName"][-5:], t["percent"]) for t in status["traffic"])


@pytest.mark.integration
def test_canary_promote_and_rollback_move_traffic_and_aliases(
    kube: KubeApi, settings: Settings, mlflow: MlflowClient
) -> None:
    api = api_client(settings.deploy)
    first = promote(api, mlflow, settings, "1", "first release")
    assert _env(kube.objects[(NS, NAME)])[STORAGE_ENV] == f"models:/{MODEL}/1"
    assert _traffic(kube) == [("00002", 100)]
    assert "version 1 gets 100%" in first.report()

    canary = rollout(api, mlflow, settings, "2", 10)
    body = kube.patches()[-1]
    assert body["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert body["metadata"]["resourceVersion"]  # optimistic concurrency
    assert body["metadata"]["annotations"] == {
        "mlstack.io/model-version": "2",
        "mlstack.io/previous-model-version": "1",
    }
    (container,) = body["spec"]["predictor"]["containers"]
    assert {"name": STORAGE_ENV, "value": f"models:/{MODEL}/2"} in container["env"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True  # rest kept
    assert _traffic(kube) == [("00002", 90), ("00003", 10)]
    assert registry.aliases(mlflow, MODEL) == {"champion": "1", "challenger": "2"}
    assert "00003: 10% (latest)" in canary.report()

    rollout(api, mlflow, settings, "2", 50)  # same version: only the split moves
    assert "containers" not in kube.patches()[-1]["spec"]["predictor"]
    assert _traffic(kube) == [("00002", 50), ("00003", 50)]

    promote(api, mlflow, settings, "2", "canary healthy")
    assert kube.patches()[-1]["spec"]["predictor"]["canaryTrafficPercent"] is None
    assert "canaryTrafficPercent" not in kube.objects[(NS, NAME)]["spec"]["predictor"]
    assert _traffic(kube) == [("00003", 100)]
    assert registry.aliases(mlflow, MODEL) == {"champion": "2"}

    back = rollback(api, mlflow, settings, "conversion dropped")
    assert kube.patches()[-1]["spec"]["predictor"] == {"canaryTrafficPercent": 0}
    assert _traffic(kube) == [("00002", 100)]
    assert registry.aliases(mlflow, MODEL) == {"champion": "1"}
    assert "traffic back to revision mlstack-propensity-predictor-00002" in back.message
    assert {r["headers"].get("authorization") for r in kube.requests} == {"Bearer kube-token"}
    assert {r["headers"].get("content-type") for r in kube.requests if r["method"] == "PATCH"} == {
        "application/merge-patch+json"
    }


@pytest.mark.integration
def test_rollback_of_a_canary_returns_to_the_stable_revision(
    kube: KubeApi, settings: Settings, mlflow: MlflowClient
) -> None:
    api = api_client(settings.deploy)
    promote(api, mlflow, settings, "1", "first")
    rollout(api, mlflow, settings, "3", 20)
    outcome = rollback(api, mlflow, settings, "errors")
    assert _traffic(kube) == [("00002", 100)]
    assert registry.aliases(mlflow, MODEL) == {"champion": "1"}  # challenger cleared
    assert any("challenger: version 3 -> -" in m for m in outcome.alias_messages)


@pytest.mark.integration
def test_rollback_without_a_previous_revision_is_refused(
    kube: KubeApi, settings: Settings, mlflow: MlflowClient
) -> None:
    with pytest.raises(RolloutError, match="no previous rolled-out revision"):
        rollback(api_client(settings.deploy), mlflow, settings, "why not")
    assert kube.patches() == []


@pytest.mark.integration
def test_a_conflict_is_retried_on_a_fresh_read(
    kube: KubeApi, settings: Settings, mlflow: MlflowClient
) -> None:
    api = api_client(settings.deploy)
    promote(api, mlflow, settings, "1", "first")
    raced = []

    def someone_else_writes(state: KubeApi, key: tuple[str, str]) -> None:
        if not raced:
            raced.append(key)
            obj = state.objects[key]
            obj["metadata"].setdefault("labels", {})["touched"] = "yes"
            state._bump(obj)

    kube.on_patch = someone_else_writes
    rollout(api, mlflow, settings, "2", 10)
    assert len(kube.patches()) == 3  # promote, the conflicting patch, the retry
    assert kube.objects[(NS, NAME)]["metadata"]["labels"]["touched"] == "yes"  # kept
    assert _traffic(kube) == [("00002", 90), ("00003", 10)]


@pytest.mark.integration
def test_a_persistent_conflict_changes_nothing(
    kube: KubeApi, settings: Settings, mlflow: MlflowClient
) -> None:
    api = api_client(settings.deploy)
    promote(api, mlflow, settings, "1", "first")
    kube.on_patch = lambda state, key: state._bump(state.objects[key])
    before = json.dumps(kube.objects[(NS, NAME)]["spec"], sort_keys=True)
    with pytest.raises(KubeError, match="HTTP 409: it kept changing while we patched"):
        rollout(api, mlflow, settings, "2", 10)
    assert json.dumps(kube.objects[(NS, NAME)]["spec"], sort_keys=True) == before
    assert registry.aliases(mlflow, MODEL) == {"champion": "1"}


@pytest.mark.integration
def test_missing_object_and_api_errors_are_clear_and_leave_aliases(
    kube: KubeApi, settings: Settings, mlflow: MlflowClient
) -> None:
    api = api_client(settings.deploy)
    kube.failures.append(("PATCH", 500, "etcdserver: request timed out"))
    with pytest.raises(
        KubeError,
        match="patching InferenceService kubeflow/mlstack-propensity: "
        "HTTP 500: etcdserver: request timed out",
    ):
        rollout(api, mlflow, settings, "2", 10)
    kube.failures.append(("GET", 403, 'user "x" cannot get inferenceservices'))
    with pytest.raises(KubeError, match='HTTP 403: user "x" cannot get'):
        promote(api, mlflow, settings, "2", "no")
    assert registry.aliases(mlflow, MODEL) == {}
    del kube.objects[(NS, NAME)]
    with pytest.raises(KubeError, match="not found: install the chart"):
        rollout(api, mlflow, settings, "2", 10)
    with pytest.raises(RolloutError, match="between 0 and 100"):
        rollout(api, mlflow, settings, "2", 120)
    with pytest.raises(RolloutError, match="7"):
        rollout(api, mlflow, settings, "7", 10)
    assert registry.aliases(mlflow, MODEL) == {}


# -- automatic rollback ----------------------------------------------------------------------
def _with(settings: Settings, **deploy: Any) -> Settings:
    return settings.model_copy(update={"deploy": settings.deploy.model_copy(update=deploy)})


@pytest.mark.integration
def test_auto_rollback_on_error_rate_from_the_metrics_endpoint(
    kube: KubeApi, settings: Settings, mlflow: MlflowClient, metrics_server: dict[str, Any]
) -> None:
    api = api_client(settings.deploy)
    promote(api, mlflow, settings, "1", "first")
    rollout(api, mlflow, settings, "2", 10)
    cfg = _with(settings, metrics_url=metrics_server["url"] + "/metrics")
    metrics_server["text"] = metrics_text(ok=190, errors=10, invalid=50, slow=0)
    health, outcome = auto_rollback(api, mlflow, cfg)
    assert health.requests == 250 and health.errors == 10  # `invalid` is not an error
    assert health.breaches == ("error rate 4.00% > limit 2.00%",)
    assert outcome is not None
    assert "automatic rollback: error rate 4.00% > limit 2.00%" in outcome.message
    assert _traffic(kube) == [("00002", 100)]
    assert registry.aliases(mlflow, MODEL) == {"champion": "1"}


@pytest.mark.integration
def test_auto_rollback_on_p99_and_no_action_when_healthy_or_too_little_traffic(
    kube: KubeApi, settings: Settings, mlflow: MlflowClient, metrics_server: dict[str, Any]
) -> None:
    api = api_client(settings.deploy)
    promote(api, mlflow, settings, "1", "first")
    cfg = _with(settings, metrics_url=metrics_server["url"] + "/metrics")
    metrics_server["text"] = metrics_text(ok=100, errors=100, invalid=0, slow=0)
    health, outcome = auto_rollback(api, mlflow, cfg)  # no canary: a promoted model stays
    assert outcome is None and health.note.startswith("no canary in progress")
    assert len(kube.patches()) == 1
    rollout(api, mlflow, settings, "2", 10)
    cfg = _with(settings, metrics_url=metrics_server["url"] + "/metrics")
    metrics_server["text"] = metrics_text(ok=400, errors=0, invalid=0, slow=0)
    health, outcome = auto_rollback(api, mlflow, cfg)
    assert outcome is None and health.breaches == () and health.p99_seconds < 0.025
    metrics_server["text"] = metrics_text(ok=50, errors=20, invalid=0, slow=0)
    health, outcome = auto_rollback(api, mlflow, cfg)
    assert outcome is None and not health.judged  # 70 < min_requests
    assert _traffic(kube) == [("00002", 90), ("00003", 10)]
    metrics_server["text"] = metrics_text(ok=400, errors=0, invalid=0, slow=20)
    health, outcome = auto_rollback(api, mlflow, cfg)
    assert health.breaches == ("p99 latency 900 ms > limit 500 ms",)  # 0.5 + 0.5 * 16/20
    assert outcome is not None and _traffic(kube) == [("00002", 100)]


@pytest.mark.integration
def test_auto_rollback_from_the_prometheus_query_api(
    kube: KubeApi, settings: Settings, mlflow: MlflowClient, metrics_server: dict[str, Any]
) -> None:
    cfg = _with(settings, prometheus_url=metrics_server["url"])
    metrics_server["prom"] = {
        "histogram_quantile": 0.12,
        'outcome=~"error"': 30,
        "sum(increase": 1000,
    }
    health = canary_health(cfg.deploy)
    assert (health.requests, health.errors, health.p99_seconds) == (1000, 30, 0.12)
    assert health.breaches == ("error rate 3.00% > limit 2.00%",)
    selector = 'namespace="kubeflow", revision_tag="latest"'
    assert f"sum(increase(mlstack_requests_total{{{selector}}}[5m]))" in metrics_server["queries"]
    metrics_server["prom"] = {}
    with pytest.raises(RolloutError, match="HTTP 400: parse error"):
        canary_health(cfg.deploy)
    with pytest.raises(RolloutError, match=r"set deploy\.prometheus_url or deploy\.metrics_url"):
        canary_health(settings.deploy)
    cfg = _with(settings, metrics_url=metrics_server["url"] + "/nope")
    with pytest.raises(RolloutError, match="HTTP 404"):
        canary_health(cfg.deploy)


@pytest.mark.unit
def test_quantile_matches_prometheus_histogram_quantile() -> None:
    # 100 observations: 50 in (0, 0.1], 40 in (0.1, 0.5], 10 in (0.5, 1]
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile_from_buckets(0.5, buckets) == pytest.approx(0.1)
    assert quantile_from_buckets(0.99, buckets) == pytest.approx(0.5 + 0.5 * 9 / 10)
    assert quantile_from_buckets(0.99, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert quantile_from_buckets(0.99, [(0.1, 1.0), (float("inf"), 100.0)]) == 0.1
