"""Batch scoring by customer shard: with 4 shards every shard scores its own customers,
features joined against its own partition, and the collected files are those of one shard,
row for row; bad dates and missing partitions get the one-shard errors or a clear one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlstack.features import store as feature_store
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_names
from mlstack.features.shards import in_order, shard_of, split_by_shard
from mlstack.registry import models as registry
from mlstack.registry import tracking
from mlstack.serving import model as served_model
from mlstack.serving.batch_shards import score_shard
from mlstack.steps.scoring import score_step
from tests.serving.conftest import ServedProject

pytestmark = pytest.mark.component

ALIAS = "batch-shards"  # pinned to version 1, whatever the champion does in other tests
SHARDS = 4


@pytest.fixture(scope="module")
def overrides(served: ServedProject) -> list[str]:
    """The served project's features also as the 4-shard offline source (one partition per
    shard, beside the one-shard file), and an alias on version 1."""
    settings = served.settings()
    client = tracking.configure(settings.mlflow)
    registry.set_alias(client, settings.mlflow.registered_model, ALIAS, "1", "test", "test")
    four = served.settings(f"features.shards={SHARDS}")
    for shard, rows in enumerate(split_by_shard(served.features, SHARDS)):
        feature_store.write_source(in_order(rows), four, shard=shard)
    return [f"serving.model_alias={ALIAS}"]


def snapshot(served: ServedProject, back: int) -> str:
    """The snapshot `back` snapshots before the latest, as YYYY-MM-DD."""
    dates = sorted(served.features[EVENT_TIMESTAMP].unique())
    return pd.Timestamp(dates[-1 - back]).date().isoformat()


@pytest.mark.slow
@pytest.mark.parametrize("back", [None, 20])
def test_four_shards_score_what_one_shard_scores(served, overrides, tmp_path, back) -> None:
    at = None if back is None else snapshot(served, back)
    one = score_step(served.settings(*overrides), at, tmp_path / "one")
    four = score_step(
        served.settings(*overrides, f"features.shards={SHARDS}"), at, tmp_path / "four"
    )
    assert (four.rows, four.model_version, four.snapshot_date) == (
        one.rows,
        one.model_version,
        one.snapshot_date,
    )
    assert four.parquet.relative_to(tmp_path / "four") == one.parquet.relative_to(tmp_path / "one")
    scores = pd.read_parquet(four.parquet)
    pd.testing.assert_frame_equal(scores, pd.read_parquet(one.parquet), check_exact=True)
    assert four.csv.read_bytes() == one.csv.read_bytes()
    # every shard had customers to score: the collect step put four parts together
    assert sorted(set(shard_of(scores[ENTITY], SHARDS))) == list(range(SHARDS))


def test_a_shard_scores_only_its_own_active_customers(served, overrides, tmp_path) -> None:
    settings = served.settings(*overrides, f"features.shards={SHARDS}")
    result = score_shard(settings, 1, None, tmp_path / "part.parquet")
    part = pd.read_parquet(tmp_path / "part.parquet")
    features = served.features
    last = features[features[EVENT_TIMESTAMP] == features[EVENT_TIMESTAMP].max()]
    mine = last[shard_of(last[ENTITY], SHARDS) == 1].sort_values(ENTITY)
    assert part[ENTITY].tolist() == mine[ENTITY].tolist() and result.rows == len(mine)
    when = last[EVENT_TIMESTAMP].iloc[0].isoformat()
    assert (result.model_version, result.snapshot_date) == ("1", when)
    loaded = served_model.load(served_model.resolve(settings), settings.mlflow.tracking_uri)
    expected = loaded.predict(mine[feature_names(settings)].to_numpy(np.float64))
    np.testing.assert_array_equal(part["probability"].to_numpy(), expected)


@pytest.mark.slow
def test_a_date_before_the_table_is_the_one_shard_error(served, overrides, tmp_path) -> None:
    with pytest.raises(ValueError) as one:
        score_step(served.settings(*overrides), "1990-01-01", tmp_path)
    with pytest.raises(ValueError) as four:
        score_step(served.settings(*overrides, f"features.shards={SHARDS}"), "1990-01-01", tmp_path)
    assert "no customer has features within 7 days up to 1990-01-01" in str(one.value)
    assert str(four.value) == str(one.value)  # the table's range, from the shards' ranges
    assert not list(tmp_path.iterdir())


def test_a_bad_date_fails_before_any_shard_runs(served, overrides, tmp_path) -> None:
    settings = served.settings(*overrides, f"features.shards={SHARDS}")
    with pytest.raises(ValueError, match="'soon' is not a date"):
        score_step(settings, "soon", tmp_path)


def test_a_missing_partition_is_named(served, overrides, tmp_path) -> None:
    settings = served.settings(*overrides, "features.shards=5")  # the source has 4 partitions
    with pytest.raises(ValueError, match=r"no partition 4 of the offline source .*shards=5"):
        score_shard(settings, 4, None, tmp_path / "part.parquet")
    with pytest.raises(ValueError, match=r"shard 5 is not one of 0..4"):
        score_shard(settings, 5, None, tmp_path / "part.parquet")


@pytest.mark.slow
def test_the_local_pipeline_scores_the_shards_in_its_one_step(served, overrides) -> None:
    from pipelines.batch_scoring import run_batch_scoring_locally

    settings = served.settings(*overrides, f"features.shards={SHARDS}")
    assert run_batch_scoring_locally(settings, "") == "1"
    last = served.features[EVENT_TIMESTAMP].max()
    folder = settings.serving.scores_folder(settings.artifacts_dir)
    scores = pd.read_parquet(folder / f"snapshot_date={last.date().isoformat()}/scores.parquet")
    expected = served.features.loc[served.features[EVENT_TIMESTAMP] == last, ENTITY]
    assert scores[ENTITY].tolist() == sorted(expected)


@pytest.mark.slow
def test_the_fanned_out_pipeline_scores_a_task_per_shard_then_collects(served, overrides) -> None:
    """The cluster's pipeline (ParallelFor, then the collecting task), run by the local
    runner with the rehearsal's patch for collected loops: the shards' tasks and the
    collecting one are wired as a cluster runs them."""
    from pipelines.batch_scoring import build_batch_scoring_pipeline
    from pipelines.run import init_local_runner
    from tests.rehearsal.kfp_loops import collected_loops

    settings = served.settings(*overrides, f"features.shards={SHARDS}")
    init_local_runner(settings)
    with collected_loops():
        task = build_batch_scoring_pipeline(settings, fan_out=True)(snapshot_date="")
    assert task.output == "1"
    last = served.features[EVENT_TIMESTAMP].max()
    folder = settings.serving.scores_folder(settings.artifacts_dir)
    scores = pd.read_parquet(folder / f"snapshot_date={last.date().isoformat()}/scores.parquet")
    collected = list(settings.artifacts_dir.glob("kfp/mlstack-batch-scoring-*/collect-scores"))
    assert collected  # written by the collecting task, not by a `score` task
    expected = served.features.loc[served.features[EVENT_TIMESTAMP] == last, ENTITY]
    assert scores[ENTITY].tolist() == sorted(expected)
