"""The training pipeline and its components through the KFP local runner, on a small sample."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pandas as pd
import pytest
from kfp import local

from mlstack.config import Settings
from mlstack.data.ingest import ingest as ingest_directly
from mlstack.features import store
from mlstack.features.definitions import feature_names, label_name
from pipelines.run import run_training_locally

pytestmark = pytest.mark.component


def test_training_pipeline_end_to_end_then_cached(project, capfd) -> None:
    settings: Settings = project()
    summary = run_training_locally(settings, note="hypothesis: recency matters")

    expected = ingest_directly(settings, out_path=settings.root / "direct.parquet")
    assert summary.data.data_version == expected.data_version
    assert summary.data.rows_read == expected.rows
    assert summary.data.rows_written == expected.rows - sum(summary.data.dropped.values())
    # the run went on: no rule stopped it
    assert summary.data.metrics["rules_failed"] == 0
    assert summary.data.metrics["rules_passed"] >= 4
    training = pd.read_parquet(summary.reports["training set"])
    label = label_name(settings.features)
    assert list(training.columns) == [
        "customer_id",
        "snapshot_date",
        label,
        *feature_names(settings),
    ]
    assert summary.dataset.training_rows == len(training)
    assert 0.0 < training[label].mean() < 0.5
    assert training["customer_id"].str.len().eq(5).all()  # leading zeros kept
    for name in ("validation", "profile", "features"):
        assert Path(summary.reports[name]).stat().st_size > 1000
    assert (settings.reports_dir / summary.data.data_version / "validation.html").is_file()

    online = store.online_features(store.open_store(settings), ["00001", "00002"], settings)
    assert len(online) == 2
    assert online["recency_days"].notna().all()
    assert "label rate" in summary.markdown()

    # the model half: a registered version, its aliases, the run with its note
    models = summary.models
    assert models is not None and summary.mlflow is not None
    assert models.registered.version == "1"
    assert "challenger" in models.registered.aliases or "champion" in models.registered.aliases
    assert ("champion" in models.registered.aliases) == models.decision.promote
    assert any(name.startswith("baseline: recency") for name in models.table)
    (tuning,) = [line for line in summary.markdown().splitlines() if line.startswith("Tuning")]
    assert re.fullmatch(
        r"Tuning: best validation pr_auc 0\.\d{4} in \d+ trials.*: \w+=\S+.*", tuning
    )
    run = mlflow_run(settings, summary.mlflow.run_id)
    assert run.data.tags["hypothesis"] == "hypothesis: recency matters"
    assert run.data.params["data_version"] == expected.data_version
    assert "test_pr_auc" in run.data.metrics

    # a second run with the same data and a change no training step reads (the model
    # server's port) reuses every training step's outputs: the step cache keys on the
    # settings each step reads. (KFP's local runner has no cache of its own: this is it.)
    capfd.readouterr()
    serving = settings.serving.model_copy(update={"port": settings.serving.port + 1})
    again = run_training_locally(settings.model_copy(update={"serving": serving}))
    logs = capfd.readouterr().out
    for cached_step in (
        "_feature_table",
        "_training_set",
        "_fit_baselines",
        "_tune_locally",
        "_train",
    ):
        assert f"step {cached_step}: reused cached outputs" in logs
    assert again.data.data_version == summary.data.data_version
    assert again.models is not None
    fitted_here = {k: v for k, v in models.table.items() if "champion" not in k}
    assert {k: again.models.table[k] for k in fitted_here} == fitted_here
    assert again.models.registered.version == "2"


def mlflow_run(settings: Settings, run_id: str):
    from mlflow import MlflowClient

    return MlflowClient(settings.mlflow.tracking_uri).get_run(run_id)


def test_bad_file_stops_before_the_feature_store(project, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt.gz"
    with gzip.open(bad, "wt") as out:
        out.write("customer_id date number_of_cds dollar_value\n")
        for i in range(200):
            out.write(f"{i:05d} 19970{1 + i % 9}15 1 10.00\n")
        out.write("00999 20990101 1 10.00\n")  # a purchase in the future
    settings = project(f"source.uri={bad}")

    with pytest.raises(RuntimeError):
        run_training_locally(settings)

    repo_data = settings.feast.repo_path / "data"
    assert not (repo_data / "customer_features.parquet").exists()
    assert not (repo_data / "online_store.db").exists()
    assert not list(settings.artifacts_dir.glob("kfp/**/dataset"))
    assert not (settings.artifacts_dir / "features").exists()


def test_ingest_component_alone(project) -> None:
    from components.ingest import ingest

    settings = project()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(settings.root))
    task = ingest(settings_json=settings.to_json())
    version = task.outputs["Output"]
    assert len(version) == 16
    data = task.outputs["transactions"]
    assert data.metadata["data_version"] == version
    frame = pd.read_parquet(data.path)
    assert frame["customer_id"].min() == "00001"
