"""Batch scoring: every active customer at a snapshot date, with the server's features and
model code; the `mlstack score` command; the batch-scoring pipeline compiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from mlstack.cli import app
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_names
from mlstack.registry import models as registry
from mlstack.registry import tracking
from mlstack.serving import model as served_model
from mlstack.serving.batch import score_customers
from pipelines.batch_scoring import compile_batch_scoring
from tests.serving.conftest import ServedProject

pytestmark = pytest.mark.component

ALIAS = "batch"  # pinned to version 1, whatever the champion does in other tests


@pytest.fixture(scope="module")
def overrides(served: ServedProject) -> list[str]:
    settings = served.settings()
    client = tracking.configure(settings.mlflow)
    registry.set_alias(client, settings.mlflow.registered_model, ALIAS, "1", "test", "test")
    return [f"serving.model_alias={ALIAS}"]


def test_every_active_customer_is_scored_with_the_served_model(served, overrides, tmp_path):
    settings = served.settings(*overrides)
    result = score_customers(settings, out_dir=tmp_path)
    features = served.features
    last = features[EVENT_TIMESTAMP].max()
    active = features[features[EVENT_TIMESTAMP] == last].sort_values(ENTITY)
    scores = pd.read_parquet(result.parquet)
    assert list(scores.columns) == ["customer_id", "probability", "model_version", "snapshot_date"]
    assert scores["customer_id"].tolist() == active[ENTITY].tolist()
    assert (scores["model_version"] == "1").all()
    assert (scores["snapshot_date"] == pd.Timestamp(last.date())).all()
    loaded = served_model.load(served_model.resolve(settings), settings.mlflow.tracking_uri)
    expected = loaded.predict(active[feature_names(settings)].to_numpy(np.float64))
    assert scores["probability"].to_numpy() == pytest.approx(expected, abs=1e-12)
    csv = pd.read_csv(result.csv, dtype={"customer_id": str})
    assert csv["customer_id"].tolist() == scores["customer_id"].tolist()
    assert set(csv["snapshot_date"]) == {last.date().isoformat()}
    assert result.parquet.parent.name == f"snapshot_date={last.date().isoformat()}"


def test_an_earlier_date_scores_the_customers_active_then(served, overrides, tmp_path):
    features = served.features
    dates = sorted(features[EVENT_TIMESTAMP].unique())
    at = pd.Timestamp(dates[1])  # CDNOW customers all joined in the first quarter of 1997
    result = score_customers(served.settings(*overrides), at.date().isoformat(), tmp_path)
    expected = features[features[EVENT_TIMESTAMP] == at][ENTITY]
    assert result.rows == len(expected) < (features[EVENT_TIMESTAMP] == dates[-1]).sum()


def test_the_score_command_writes_the_files_and_rejects_a_date_without_data(
    served, overrides, tmp_path
):
    args = ["--config", str(served.config)]
    for item in [*served.overrides, *overrides]:
        args += ["--set", item]
    runner = CliRunner()
    done = runner.invoke(app, [*args, "score", "--out-dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert "scored" in done.output and list(tmp_path.glob("snapshot_date=*/scores.csv"))
    early = runner.invoke(app, [*args, "score", "--at", "1990-01-01", "--out-dir", str(tmp_path)])
    assert early.exit_code == 1
    assert "no customer has features" in early.output
    bad = runner.invoke(app, [*args, "score", "--at", "soon", "--out-dir", str(tmp_path)])
    assert bad.exit_code == 1 and "not a date" in bad.output


def test_the_batch_scoring_pipeline_compiles_for_the_configured_image(served, tmp_path):
    settings = served.settings("pipeline.base_image=registry.example/mlstack:9")
    spec = yaml.safe_load(compile_batch_scoring(settings, tmp_path).read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-configure", "exec-score"}
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/mlstack:9"}
    executor = executors["exec-score"]
    assert "score_step" in " ".join(executor["container"]["command"])
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "snapshot_date",
        "model_alias",
        "config_version",
    }


@pytest.mark.slow
def test_the_batch_scoring_pipeline_runs_on_the_kfp_local_runner(served, overrides):
    from pipelines.batch_scoring import run_batch_scoring_locally

    settings = served.settings(*overrides)
    assert run_batch_scoring_locally(settings, "") == "1"
    last = served.features[EVENT_TIMESTAMP].max().date().isoformat()
    folder = settings.serving.scores_folder(settings.artifacts_dir) / f"snapshot_date={last}"
    scores = pd.read_parquet(folder / "scores.parquet")
    assert (
        len(scores)
        == (served.features[EVENT_TIMESTAMP] == served.features[EVENT_TIMESTAMP].max()).sum()
    )
    assert (folder / "scores.csv").exists()
