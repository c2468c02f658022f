"""Drift statistics per shard: merged, they are the whole window's exactly, so the drift
table (every statistic and every flag), the prediction drift, the realised performance and
the report's sample do not depend on the shard count; a missing shard or a shard of another
feature set is an error naming it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlstack.config import load_settings
from mlstack.features.shards import shard_of
from mlstack.monitoring.check import assess_statistics, realised_performance, statistics_of
from mlstack.monitoring.statistics import (
    WindowStats,
    canonical_pairs,
    column_stats,
    merge_columns,
    merge_windows,
    window_stats,
)
from mlstack.monitoring.window import feature_kinds
from tests.monitoring.helpers import feature_frame

pytestmark = pytest.mark.unit

SETTINGS = load_settings(overrides=["monitoring.categorical_columns=[channel]"])
SHARDS = 4


def _window(rows: int, seed: int, shift: float) -> pd.DataFrame:
    """A window of customers' rows: every feature, a channel, the scores and a customer id;
    some values missing, infinite or -0.0, and a few customers with several rows."""
    rng = np.random.default_rng(seed)
    frame = feature_frame(SETTINGS, rows, seed=seed, shift=shift)
    frame["channel"] = rng.choice(["web", "store", "phone", None], rows, p=[0.5, 0.3, 0.15, 0.05])
    first_float = next(c for c in frame.columns if frame[c].dtype == float)
    frame.loc[frame.index[:7], first_float] = np.inf
    frame.loc[frame.index[7:20], first_float] = -0.0
    frame["customer_id"] = [f"{i:05d}" for i in rng.integers(0, rows * 3 // 4, rows)]
    return frame


def _by_shard(frame: pd.DataFrame, kinds: dict, limit: int) -> list[WindowStats]:
    """Each shard's statistics of its customers' rows, as the shards compute them."""
    shard = shard_of(frame["customer_id"], SHARDS)
    return [window_stats(frame[shard == k], kinds, "w", limit, k, SHARDS) for k in range(SHARDS)]


def _kinds(frame: pd.DataFrame) -> dict:
    return {**feature_kinds(SETTINGS, list(frame.columns)), "probability": "numerical"}


@pytest.fixture(scope="module")
def reference() -> WindowStats:
    ref = _window(6000, seed=1, shift=0.0)
    return statistics_of(ref, SETTINGS, "reference")


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_four_shards_give_the_one_shard_drift_table_exactly(
    reference: WindowStats, shift: float
) -> None:
    frame = _window(20_000, seed=2, shift=shift)
    kinds = _kinds(frame)
    one = merge_windows([window_stats(frame, kinds, "w", 500)], 1)
    parts = _by_shard(frame, kinds, 500)
    assert all(p.rows for p in parts) and sum(p.rows for p in parts) == len(frame)
    four = merge_windows(parts[::-1], SHARDS)  # the order shards finish in does not matter

    assert four.rows == one.rows and set(four.columns) == set(one.columns)
    for name, stats in one.columns.items():
        merged = four.columns[name]
        np.testing.assert_array_equal(merged.values, stats.values, err_msg=name)
        np.testing.assert_array_equal(merged.counts, stats.counts, err_msg=name)
        assert merged.rows == stats.rows
    a = assess_statistics(reference, one, SETTINGS, days_since_training=60)
    b = assess_statistics(reference, four, SETTINGS, days_since_training=60)
    # every statistic, flag, reason and missing share, bit for bit (NaN where not tested)
    assert [c.to_dict() for c in b.features] == [c.to_dict() for c in a.features]
    assert b.prediction.to_dict() == a.prediction.to_dict()
    assert b.decision == a.decision
    if shift:
        assert b.drifted_share > 0.5 and b.decision.action == "retrain"
    else:
        assert b.drifted_share == 0.0
    # the report's sample: the same rows in the same order
    pd.testing.assert_frame_equal(four.sample, one.sample)
    assert len(one.sample) == 500


def test_value_tables_drop_missing_and_merge_zeros() -> None:
    series = pd.Series([1.5, np.nan, -0.0, 0.0, np.inf, 1.5, -np.inf, 2.0])
    stats = column_stats(series, "numerical")
    np.testing.assert_array_equal(stats.values, [0.0, 1.5, 2.0])
    np.testing.assert_array_equal(stats.counts, [2, 2, 1])
    assert stats.rows == 8 and stats.missing_share == pytest.approx(3 / 8)
    halves = [
        column_stats(series.iloc[:3], "numerical"),
        column_stats(series.iloc[3:], "numerical"),
    ]
    merged = merge_columns(halves)
    np.testing.assert_array_equal(merged.values, stats.values)
    np.testing.assert_array_equal(merged.counts, stats.counts)
    assert str(merged.values[0]) == "0.0"  # -0.0 and 0.0 are one value, shown as 0.0
    categories = column_stats(pd.Series(["b", None, "a", "b"]), "categorical")
    assert list(categories.values) == ["a", "b"] and list(categories.counts) == [1, 2]


def test_realised_performance_does_not_depend_on_the_shard_order() -> None:
    rng = np.random.default_rng(5)
    scores = np.round(rng.random(5000), 2)  # many ties, as a boosting model's scores have
    labels = (rng.random(5000) < scores).astype(np.int64)
    shard = shard_of([str(i) for i in range(5000)], SHARDS)
    pieces = [(scores[shard == k], labels[shard == k]) for k in (2, 0, 3, 1)]
    pooled = canonical_pairs(
        np.concatenate([s for s, _ in pieces]), np.concatenate([y for _, y in pieces])
    )
    whole = canonical_pairs(scores, labels)
    ours = realised_performance(*pooled, SETTINGS.evaluation)
    assert ours == realised_performance(*whole, SETTINGS.evaluation)
    assert 0.5 < ours["roc_auc"] < 1


def test_a_missing_or_foreign_shard_is_named() -> None:
    frame = _window(4000, seed=3, shift=0.0)
    kinds = _kinds(frame)
    parts = _by_shard(frame, kinds, 10)
    with pytest.raises(ValueError, match=r"got shards \[0, 1, 3\]: missing 2"):
        merge_windows([parts[0], parts[1], parts[3]], SHARDS)
    with pytest.raises(ValueError, match="repeated 1"):
        merge_windows([parts[0], parts[1], parts[1], parts[2]], SHARDS)
    other = {c: k for c, k in kinds.items() if c != "recency_days"}
    foreign = window_stats(frame.head(100), other, "w", 10, 2, SHARDS)
    with pytest.raises(ValueError, match=r"shard 2's .* different feature set .*recency_days"):
        merge_windows([parts[0], parts[1], foreign, parts[3]], SHARDS)
    later = window_stats(frame.head(100), kinds, "another window", 10, 3, SHARDS)
    with pytest.raises(ValueError, match="shard 3's drift statistics are of window"):
        merge_windows([*parts[:3], later], SHARDS)
    with pytest.raises(ValueError, match="of 4 shards, not 2"):
        merge_windows(parts[:2], 2)
