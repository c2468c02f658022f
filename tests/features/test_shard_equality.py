"""At 1x, features and the training set built with 4 shards are those built with 1 shard,
row for row, once the shards' tables are put in the documented order (customer id, then
snapshot date: `mlstack.features.shards.ORDER`, the one-shard table's own order). The
4-shard training set stays partitioned, and every step reading it through `load_split`
gets the one-shard split, frame for frame, with or without a row budget that samples."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlstack.config import Settings
from mlstack.features import partitioned, store
from mlstack.features.definitions import ENTITY
from mlstack.features.shards import SHARD_COLUMN, in_order, partition, shard_of
from mlstack.models.parts import as_frame
from mlstack.models.train import final_fit_frame
from mlstack.steps import data
from mlstack.steps.model import load_split
from mlstack.steps.results import TrainingSet
from tests.support.steps import feature_table

pytestmark = [pytest.mark.component, pytest.mark.slow]


def build(settings: Settings, out: Path) -> tuple[Path, Path, TrainingSet]:
    """Ingest, validate, features and the training set; the feature table's and the
    training set's paths, and the training set's result."""
    clean, table = feature_table(settings, out)
    dataset = out / "dataset.parquet"
    result = data.training_set_step(settings, clean, table, dataset, out / "report.html")
    return table, dataset, result


def assert_same_split(one: Settings, dataset: Path, four: Settings, dataset4: Path) -> None:
    first, other = load_split(one, dataset), load_split(four, dataset4)
    for name in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(as_frame(other.parts()[name]), as_frame(first.parts()[name]))
    pd.testing.assert_frame_equal(final_fit_frame(other), final_fit_frame(first))
    assert other.rows == first.rows and other.boundaries == first.boundaries


def test_four_shards_build_what_one_shard_builds(project, tmp_path: Path) -> None:
    one = project("cache=false")
    table, dataset, result = build(one, tmp_path / "one")
    features, training = pd.read_parquet(table), pd.read_parquet(dataset)

    four = project("cache=false", "features.shards=4")
    table4, dataset4, result4 = build(four, tmp_path / "four")
    assert table4.is_dir()
    parts = [pd.read_parquet(partition(table4, k)) for k in range(4)]
    for k, part in enumerate(parts):  # each shard holds its own customers only, in order
        assert len(part) and (shard_of(part[ENTITY], 4) == k).all()
        pd.testing.assert_frame_equal(part, in_order(part))
    pd.testing.assert_frame_equal(in_order(pd.concat(parts, ignore_index=True)), features)

    # the training set stays partitioned by shard, each part its shard's rows in order;
    # its parts put in order are the one-shard training set, row for row
    assert dataset.is_file() and dataset4.is_dir()
    rows = [pd.read_parquet(partition(dataset4, k)) for k in range(4)]
    for k, part in enumerate(rows):
        assert len(part) and (shard_of(part[ENTITY], 4) == k).all()
        pd.testing.assert_frame_equal(part, in_order(part))
    pd.testing.assert_frame_equal(in_order(pd.concat(rows, ignore_index=True)), training)
    # its figures are the one-shard figures, streamed; the report's sample is the same rows
    assert result4.metrics == result.metrics and result4.training_rows == len(training)
    for cap in (None, 1_000):
        pd.testing.assert_frame_equal(
            partitioned.report_sample(dataset4, cap), partitioned.report_sample(dataset, cap)
        )
    assert len(partitioned.report_sample(dataset, 1_000)) == 1_000

    # every step's split: the same frames from the folder as from the file, sampled or not
    assert_same_split(one, dataset, four, dataset4)
    budget = load_split(one, dataset, parts=("train",)).rows.train_before // 3
    one_b = project("cache=false", f"split.train_rows={budget}")
    four_b = project("cache=false", "features.shards=4", f"split.train_rows={budget}")
    sampled = load_split(one_b, dataset)
    assert sampled.rows.train_after == budget < sampled.rows.train_before
    assert_same_split(one_b, dataset, four_b, dataset4)

    # the Feast source is the partitioned dataset, read as one table
    source = store.source_path(four)
    assert source.is_dir() and sorted(p.name for p in source.iterdir()) == [
        f"{SHARD_COLUMN}={k}" for k in range(4)
    ]
    whole = pd.read_parquet(source).drop(columns=SHARD_COLUMN)
    assert len(whole) == len(features)
