"""At 1x, features and the training set built with 4 shards are those built with 1 shard,
row for row, once the shards' tables are put in the documented order (customer id, then
snapshot date: `mlstack.features.shards.ORDER`, the one-shard table's own order)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlstack.config import Settings
from mlstack.features import store
from mlstack.features.definitions import ENTITY
from mlstack.features.shards import SHARD_COLUMN, in_order, partition, shard_of
from mlstack.steps import data
from tests.support.steps import feature_table

pytestmark = [pytest.mark.component, pytest.mark.slow]


def build(settings: Settings, out: Path) -> tuple[Path, Path]:
    """Ingest, validate, features and the training set; the feature table's and the
    training set's paths."""
    clean, table = feature_table(settings, out)
    dataset = out / "dataset.parquet"
    data.training_set_step(settings, clean, table, dataset, out / "report.html")
    return table, dataset


def test_four_shards_build_what_one_shard_builds(project, tmp_path: Path) -> None:
    one = project("cache=false")
    table, dataset = build(one, tmp_path / "one")
    features, training = pd.read_parquet(table), pd.read_parquet(dataset)

    four = project("cache=false", "features.shards=4")
    table4, dataset4 = build(four, tmp_path / "four")
    assert table4.is_dir()
    parts = [pd.read_parquet(partition(table4, k)) for k in range(4)]
    for k, part in enumerate(parts):  # each shard holds its own customers only, in order
        assert len(part) and (shard_of(part[ENTITY], 4) == k).all()
        pd.testing.assert_frame_equal(part, in_order(part))
    pd.testing.assert_frame_equal(in_order(pd.concat(parts, ignore_index=True)), features)
    # the training set comes out collected in the one-shard order, exactly
    pd.testing.assert_frame_equal(pd.read_parquet(dataset4), training)

    # the Feast source is the partitioned dataset, read as one table
    source = store.source_path(four)
    assert source.is_dir() and sorted(p.name for p in source.iterdir()) == [
        f"{SHARD_COLUMN}={k}" for k in range(4)
    ]
    whole = pd.read_parquet(source).drop(columns=SHARD_COLUMN)
    assert len(whole) == len(features)
