"""The registry against real MLflow: SQLite and a folder in tmp_path; a server on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from mlstack.config import Settings, load_settings
from mlstack.registry import listing, models, tracking
from tests.conftest import free_port, start_mlflow_server
from tests.support.paths import PROJECT

SERVER_START_SECONDS = 90
SERVER_STOP_SECONDS = 10


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings resolve against the project; MLflow's global URIs and run stack are restored."""
    monkeypatch.chdir(PROJECT)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    tracking_uri, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)


@pytest.fixture
def settings(tmp_path: Path, empty_store: Path) -> Settings:
    """Settings of a project in tmp_path whose tracking store starts empty."""
    settings = load_settings(overrides=[f"root={tmp_path}"])
    database = Path(settings.mlflow.tracking_uri.removeprefix("sqlite:///"))
    assert database.is_relative_to(tmp_path)
    database.parent.mkdir(parents=True)
    shutil.copy(empty_store, database)
    return settings


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    """Raw feature rows as the model receives them: integer counts and float amounts."""
    rng = np.random.default_rng(7)
    n = 300
    return pd.DataFrame(
        {
            "frequency_90d": rng.poisson(2, n),
            "monetary_90d": rng.gamma(2.0, 20.0, n),
            "recency_days": rng.integers(0, 365, n),
        }
    )


@pytest.fixture(scope="module")
def labels(features: pd.DataFrame) -> pd.Series:
    logit = 0.8 * features["frequency_90d"] - 0.01 * features["recency_days"] - 0.5
    return (logit + np.random.default_rng(8).normal(0, 1, len(features)) > 0).astype(int)


def train(features: pd.DataFrame, labels: pd.Series, seed: int = 0) -> Pipeline:
    """A tiny propensity model: preprocessing inside the Pipeline, on the raw columns."""
    columns = list(features.columns)
    model = Pipeline(
        [
            ("prepare", ColumnTransformer([("impute", SimpleImputer(), columns)])),
            ("classify", HistGradientBoostingClassifier(max_iter=10, random_state=seed)),
        ]
    )
    with threadpool_limits(1):  # OpenMP threads make a fit this small 30x slower
        return model.fit(features, labels)


def train_and_log(
    settings: Settings,
    features: pd.DataFrame,
    labels: pd.Series,
    seed: int,
    registered_model: str | None = None,
) -> str:
    """One training run with lineage, test metrics and the logged model; returns the run id."""
    model = train(features, labels, seed)
    with tracking.training_run(settings.mlflow, f"train-{seed}", note=f"seed {seed} helps") as run:
        tracking.log_lineage(f"data-{seed}", "feat-1", "customer_propensity_v1", len(features))
        tracking.log_metrics("test", {"roc_auc": 0.7 + seed / 100, "pr_auc": 0.4 + seed / 100})
        tracking.log_model(model, tracking.MODEL_NAME, features.head(5), registered_model)
    return run.info.run_id


# -- tracking -------------------------------------------------------------------------------


@pytest.mark.component
def test_training_run_records_hypothesis_lineage_metrics_and_reports(
    settings: Settings, tmp_path: Path
) -> None:
    report = tmp_path / "evaluation.md"
    report.write_text("# evaluation\n")
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "roc.txt").write_text("roc")

    with tracking.training_run(
        settings.mlflow, "nightly", note="more history helps", tags={"k": 1}
    ) as r:
        tracking.log_lineage("d1", "f1", "customer_propensity_v1", 1234, extra={"horizon_days": 30})
        logged = tracking.log_metrics("test", {"roc_auc": 0.8, "brier": float("nan"), "x": "n/a"})
        tracking.log_metrics("test", {"slices": {"new": {"pr_auc": 0.3}}})
        tracking.log_reports({"evaluation": report, "plots": plots})
    with tracking.training_run(settings.mlflow, "ignored", run_id=r.info.run_id) as resumed:
        tracking.log_metrics("", {"registered": 1})  # a later pipeline step, same run
    assert resumed.info.run_id == r.info.run_id

    client = MlflowClient()
    run = client.get_run(r.info.run_id)
    assert Path(settings.mlflow.tracking_uri.removeprefix("sqlite:///")).is_file()
    assert client.get_experiment(run.info.experiment_id).artifact_location == (
        settings.mlflow.artifact_location
    )
    assert run.info.run_name == "nightly"
    assert run.data.tags["mlflow.note.content"] == "more history helps"
    assert run.data.tags["hypothesis"] == "more history helps"
    assert run.data.tags["k"] == "1"
    assert run.data.params["data_version"] == "d1"
    assert run.data.tags["training_rows"] == "1234"
    assert run.data.params["horizon_days"] == "30"
    assert logged == {"test_roc_auc": 0.8}
    assert run.data.metrics == {
        "test_roc_auc": 0.8,
        "test_slices_new_pr_auc": 0.3,
        "registered": 1.0,
    }
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "reports/evaluation")}
    assert artifacts == {"reports/evaluation/evaluation.md"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "reports/plots")] == [
        "reports/plots/roc.txt"
    ]


@pytest.mark.component
def test_logging_outside_a_run_is_refused(settings: Settings) -> None:
    tracking.configure(settings.mlflow)
    with pytest.raises(RuntimeError, match="training_run"):
        tracking.log_metrics("test", {"roc_auc": 0.5})


@pytest.mark.component
def test_trials_are_child_runs_of_the_training_run(settings: Settings) -> None:
    trials = [
        (0, {"learning_rate": 0.1, "max_iter": 100}, 0.41, "COMPLETE"),
        (1, {"learning_rate": 0.2, "max_iter": 200}, None, "PRUNED"),
        (2, {"learning_rate": 0.3, "max_iter": 300}, float("nan"), "FAIL"),
    ]
    with tracking.training_run(settings.mlflow, "tune", note=None) as parent:
        parent_id = parent.info.run_id
        for number, params, value, state in trials:
            tracking.log_trial(parent_id, number, params, value, state, "pr_auc")
        assert mlflow.active_run().info.run_id == parent_id  # trials leave the parent active

    client = MlflowClient()
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        order_by=["tags.trial_number ASC"],
    )
    assert [c.info.run_name for c in children] == ["trial-000", "trial-001", "trial-002"]
    assert [c.data.tags["trial_state"] for c in children] == ["COMPLETE", "PRUNED", "FAIL"]
    assert [c.info.status for c in children] == ["FINISHED", "KILLED", "FAILED"]
    assert children[0].data.metrics == {"pr_auc": 0.41}
    assert children[1].data.metrics == children[2].data.metrics == {}
    assert children[2].data.params == {"learning_rate": "0.3", "max_iter": "300"}
    assert "hypothesis" not in client.get_run(parent_id).data.tags


# -- models and aliases ---------------------------------------------------------------------


@pytest.mark.component
def test_champion_loads_by_alias_and_predicts_probabilities(
    settings: Settings, features: pd.DataFrame, labels: pd.Series
) -> None:
    name = settings.mlflow.registered_model
    run_id = train_and_log(settings, features, labels, seed=1, registered_model=name)
    client = tracking.configure(settings.mlflow)

    version = models.register(
        client, settings.mlflow, run_id, {"roc_auc": 0.71}, {"gate_decision": "pass"}
    )
    assert version.version in (1, "1")  # the version log_model registered, not a second one
    assert len(list(client.search_model_versions(f"name = '{name}'"))) == 1
    assert version.tags["data_version"] == "data-1"
    assert version.tags["test_roc_auc"] == "0.71"
    models.promote(client, settings.mlflow, 1, reason="first model")

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    inputs = loaded.metadata.get_input_schema()
    assert inputs.input_names() == list(features.columns)
    assert {str(t) for t in inputs.input_types()} == {"DataType.double"}  # ints widened
    assert loaded.metadata.get_output_schema().inputs[0].shape == (-1, 2)
    rows = features.head(20)
    with pytest.raises(mlflow.MlflowException, match="frequency_90d"):
        loaded.predict(rows)  # integer columns: the schema declares doubles
    probabilities = loaded.predict(tracking.integers_as_floats(rows))
    assert probabilities.shape == (20, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_allclose(probabilities, train(features, labels, 1).predict_proba(rows))


@pytest.mark.component
def test_aliases_move_with_reasons_and_rollback_restores_the_previous_champion(
    settings: Settings, features: pd.DataFrame, labels: pd.Series
) -> None:
    name = settings.mlflow.registered_model
    runs = [train_and_log(settings, features, labels, seed) for seed in (1, 2)]
    client = tracking.configure(settings.mlflow)
    v1, v2 = (
        models.register(client, settings.mlflow, run, tags={"gate_decision": "pass"})
        for run in runs
    )
    assert (str(v1.version), str(v2.version)) == ("1", "2")

    assert models.promote(client, settings.mlflow, 1, "first model").changed
    models.set_alias(client, name, models.CHALLENGER, 2, "beats baseline by 0.07", "ci")
    assert _aliases(client, name) == {"champion": "1", "challenger": "2"}

    change = models.promote(
        client, settings.mlflow, "2", "challenger beats champion", actor="alice"
    )
    assert (change.previous, change.version) == ("1", "2")
    assert _aliases(client, name) == {"champion": "2"}  # the challenger was promoted
    promoted = client.get_model_version(name, "2")
    assert promoted.tags["champion_reason"] == "challenger beats champion"
    assert promoted.tags["champion_actor"] == "alice"
    assert "champion_since" in promoted.tags
    assert "champion_until" in client.get_model_version(name, "1").tags

    again = models.promote(client, settings.mlflow, 2, "once more")
    assert not again.changed
    assert "already champion" in again.message

    back = models.rollback(client, settings.mlflow, "bad canary latency")
    assert (back.previous, back.version) == ("2", "1")
    assert models.champion(client, name).version in (1, "1")
    restored = client.get_model_version(name, "1")
    assert restored.tags["champion_reason"] == "bad canary latency"
    assert "champion_until" not in restored.tags
    last = models.alias_history(client, name)[-1]
    assert last["action"] == "rollback" and last["reason"] == "bad canary latency"
    assert last["previous"] == "2" and last["version"] == "1"

    with pytest.raises(models.RegistryError, match="no champion before version 1"):
        models.rollback(client, settings.mlflow, "again")
    with pytest.raises(models.RegistryError, match=r"no version 99 \(versions: 1, 2\)"):
        models.promote(client, settings.mlflow, 99, "typo")
    assert models.champion(client, name).version in (1, "1")  # errors changed nothing


@pytest.mark.component
def test_rollback_without_history_is_a_clear_error(
    settings: Settings, features: pd.DataFrame, labels: pd.Series
) -> None:
    client = tracking.configure(settings.mlflow)
    with pytest.raises(models.RegistryError, match="no registered model named"):
        models.rollback(client, settings.mlflow, "nothing to roll back")
    assert models.champion(client, settings.mlflow.registered_model) is None
    assert listing.list_versions(client, settings.mlflow.registered_model) == []

    models.register(client, settings.mlflow, train_and_log(settings, features, labels, seed=3))
    with pytest.raises(models.RegistryError, match="cannot roll back"):
        models.rollback(client, settings.mlflow, "nothing to roll back")


@pytest.mark.component
def test_list_versions_shows_aliases_lineage_and_metrics(
    settings: Settings, features: pd.DataFrame, labels: pd.Series
) -> None:
    name = settings.mlflow.registered_model
    runs = [train_and_log(settings, features, labels, seed) for seed in (1, 2)]
    client = tracking.configure(settings.mlflow)
    models.register(
        client, settings.mlflow, runs[0], {"roc_auc": 0.9, "pr_auc": 0.5}, {"gate_decision": "pass"}
    )
    models.register(client, settings.mlflow, f"runs:/{runs[1]}/model")  # metrics from the run
    models.promote(client, settings.mlflow, 1, "first")
    models.set_alias(client, name, models.CHALLENGER, 2, "candidate")

    rows = listing.list_versions(client, name)
    assert [row["version"] for row in rows] == [2, 1]
    assert rows[0]["aliases"] == ["challenger"] and rows[1]["aliases"] == ["champion"]
    assert (rows[1]["roc_auc"], rows[1]["pr_auc"]) == (0.9, 0.5)
    assert (rows[0]["roc_auc"], rows[0]["pr_auc"]) == pytest.approx((0.72, 0.42))
    assert rows[1]["gate_decision"] == "pass" and rows[0]["gate_decision"] is None
    assert [row["data_version"] for row in rows] == ["data-2", "data-1"]
    assert rows[0]["run_id"] == runs[1]
    assert models.champion_metrics(client, name) == {"roc_auc": 0.9, "pr_auc": 0.5}

    table = listing.format_versions(rows).splitlines()
    assert table[0].split() == [
        "VERSION",
        "ALIASES",
        "CREATED",
        "ROC_AUC",
        "PR_AUC",
        "DATA",
        "GATE",
        "RUN",
    ]
    assert table[1].split()[:2] == ["2", "challenger"]
    assert "0.9000" in table[2] and "champion" in table[2]


# -- a real tracking server -----------------------------------------------------------------


def _wait_healthy(url: str, server: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}:\n{log_file.read_text()}")
        try:
            if requests.get(f"{url}/health", timeout=5).ok:
                return
        except requests.RequestException:  # not listening yet, or still starting up
            pass
        time.sleep(0.2)
    pytest.fail(f"mlflow server not healthy after {SERVER_START_SECONDS}s:\n{log_file.read_text()}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server and its workers: they share the process group the server leads."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(SERVER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(SERVER_STOP_SECONDS)


@pytest.fixture
def mlflow_server(tmp_path: Path, empty_store: Path) -> Iterator[str]:
    """`mlflow server` on a free loopback port, proxying artifacts to a folder; its URL."""
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    shutil.copy(empty_store, store / "mlflow.db")
    log_file = store / "server.log"
    server = start_mlflow_server(
        f"sqlite:///{store / 'mlflow.db'}",
        port,
        log_file,
        "--serve-artifacts",
        "--artifacts-destination",
        str(store / "artifacts"),
        "--default-artifact-root",
        "mlflow-artifacts:/",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server, log_file)
        yield url
    finally:
        _stop(server)


@pytest.mark.integration
def test_register_and_alias_flow_through_a_tracking_server(
    mlflow_server: str, tmp_path: Path, features: pd.DataFrame, labels: pd.Series
) -> None:
    settings = load_settings(
        overrides=[
            f"root={tmp_path}",
            f"mlflow.tracking_uri={mlflow_server}",
            "mlflow.artifact_location=mlflow-artifacts:///mlstack",
        ]
    )
    name = settings.mlflow.registered_model
    runs = [train_and_log(settings, features, labels, seed, name) for seed in (1, 2)]
    client = tracking.configure(settings.mlflow)
    assert mlflow.get_tracking_uri() == mlflow_server

    for run in runs:
        models.register(client, settings.mlflow, run, tags={"gate_decision": "pass"})
    models.promote(client, settings.mlflow, 1, "first model")
    models.set_alias(client, name, models.CHALLENGER, 2, "candidate")
    models.promote(client, settings.mlflow, 2, "challenger wins")
    assert models.rollback(client, settings.mlflow, "canary errors").version == "1"
    assert [row["aliases"] for row in listing.list_versions(client, name)] == [[], ["champion"]]

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    rows = features.head(5)
    np.testing.assert_allclose(
        loaded.predict(tracking.integers_as_floats(rows)),
        train(features, labels, 1).predict_proba(rows),
    )
    served = tmp_path / "server" / "artifacts" / "mlstack"
    assert any(served.rglob("MLmodel"))  # artifacts went through the server's proxy


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}
