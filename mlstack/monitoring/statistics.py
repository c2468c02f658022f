"""Sufficient statistics of a drift window: what each shard computes from its own rows, and
their exact merge.

Every number a drift check reports is a function of these, never of the raw rows:

- a numerical column: its value -> count table (the sorted distinct finite values and how
  many rows hold each), i.e. the exact ECDF, from which the normed Wasserstein distance,
  the reference std and the dead/constant tests follow; missing and infinite values are
  counted apart, as the missing share;
- a categorical column: its category -> count table (categories as text);
- realised performance: the matured rows' (score, label) pairs, small next to the window;
- the Evidently report: a bounded sample of the window's rows, the rows with the smallest
  sample keys (a fixed hash of the row's values), so it is the same sample whatever the
  shard count.

Counts are integers, so merging shards (summing counts per value, concatenating the
labelled pairs, keeping the smallest sample keys) gives the one-shard statistics exactly,
and so bit-identical drift numbers: the merged tables are the same arrays whatever the
shard count and order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

Kind = Literal["numerical", "categorical"]
# the fixed key of the report sample's row hash (pandas' hash_pandas_object takes 16 chars)
SAMPLE_HASH_KEY = "mlstack-drift-01"


@dataclass
class ColumnStats:
    """One column over a set of rows: its distinct testable values (sorted; float64 for a
    numerical column, text for a categorical one), how many rows hold each, and how many
    rows there were in all (missing values included)."""

    kind: Kind
    values: np.ndarray
    counts: np.ndarray
    rows: int

    @property
    def n(self) -> int:
        """Rows with a testable value (missing and infinite values dropped)."""
        return int(self.counts.sum())

    @property
    def missing_share(self) -> float:
        return 1 - self.n / max(self.rows, 1)

    @property
    def constant(self) -> bool:
        return len(self.values) == 1

    def std(self) -> float:
        """The population std (ddof 0) of the values, weighted by their counts."""
        weights = self.counts.astype(float)
        mean = float(np.dot(self.values, weights)) / self.n
        return float(np.sqrt(np.dot((self.values - mean) ** 2, weights) / self.n))

    def cdf_at(self, points: np.ndarray) -> np.ndarray:
        """The empirical CDF at `points` (sorted): the share of values <= each."""
        cumulative = np.concatenate([[0], np.cumsum(self.counts)])
        return cumulative[np.searchsorted(self.values, points, side="right")] / self.n


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of a sorted array, and the start of each one's run."""
    if len(values) == 0:
        return values, np.zeros(0, dtype=np.int64)
    change = np.empty(len(values), dtype=bool)
    change[0] = True
    np.not_equal(values[1:], values[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    return values[starts], starts


def column_stats(series: pd.Series, kind: Kind) -> ColumnStats:
    """The value -> count table of a column (see the module doc)."""
    if kind == "categorical":
        text = series.dropna().astype(str)
        counted = text.value_counts(sort=False)
        keys = counted.index.to_numpy(dtype=object)
        order = np.argsort(keys, kind="stable")
        return ColumnStats(kind, keys[order], counted.to_numpy(np.int64)[order], len(series))
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    values = np.sort(values[np.isfinite(values)]) + 0.0  # + 0.0: -0.0 and 0.0 are one value
    distinct, starts = _distinct(values)
    counts = np.diff(np.append(starts, len(values)))
    return ColumnStats(kind, distinct, counts.astype(np.int64), len(series))


def merge_columns(parts: list[ColumnStats]) -> ColumnStats:
    """One column's statistics over the union of the parts' rows: counts summed per value."""
    if len(parts) == 1:  # one table is its own merge
        return parts[0]
    kinds = {p.kind for p in parts}
    if len(kinds) != 1:
        raise ValueError(f"cannot merge a column's statistics of different kinds: {kinds}")
    values = np.concatenate([p.values for p in parts])
    counts = np.concatenate([p.counts for p in parts])
    order = np.argsort(values, kind="stable")
    distinct, starts = _distinct(values[order])
    merged = np.add.reduceat(counts[order], starts) if len(starts) else np.zeros(0, dtype=np.int64)
    return ColumnStats(parts[0].kind, distinct, merged, sum(p.rows for p in parts))


def union_points(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sorted distinct values of two sorted distinct arrays."""
    both = np.concatenate([a, b])
    both.sort(kind="stable")  # two sorted runs: the stable sort merges them in linear time
    return _distinct(both)[0]


def row_keys(frame: pd.DataFrame) -> np.ndarray:
    """Each row's sample key: a fixed hash of its values, so the same row gets the same key
    in every process and shard."""
    return pd.util.hash_pandas_object(frame, index=False, hash_key=SAMPLE_HASH_KEY).to_numpy()


def smallest_keys(
    frame: pd.DataFrame, keys: np.ndarray, limit: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The `limit` rows with the smallest keys, in key order, with a fresh index, and their
    keys."""
    order = np.argsort(keys, kind="stable")[:limit]
    return frame.iloc[order].reset_index(drop=True), keys[order]


@dataclass
class WindowStats:
    """A window's (or one shard's part of it) statistics: every tested column's table, the
    matured rows' scores and labels, and the report's sample."""

    columns: dict[str, ColumnStats]
    rows: int
    window: str  # what the rows are (the snapshot date, or the payload window)
    shard: int = 0
    shards: int = 1
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sample: pd.DataFrame = field(default_factory=pd.DataFrame)
    sample_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    sample_limit: int = 0

    @property
    def signature(self) -> dict[str, Kind]:
        """The tested columns and their kinds: what every shard must agree on."""
        return {name: stats.kind for name, stats in self.columns.items()}


def window_stats(
    frame: pd.DataFrame,
    kinds: dict[str, Kind],
    window: str,
    sample_limit: int,
    shard: int = 0,
    shards: int = 1,
) -> WindowStats:
    """The statistics of `frame`'s columns in `kinds` (those it has), with its sample of at
    most `sample_limit` rows."""
    present = {c: k for c, k in kinds.items() if c in frame.columns}
    columns = {c: column_stats(frame[c], k) for c, k in present.items()}
    tested = frame[list(present)]
    sample, keys = tested.head(0), np.zeros(0, dtype=np.uint64)
    if sample_limit > 0:
        sample, keys = smallest_keys(tested, row_keys(tested), sample_limit)
    return WindowStats(
        columns,
        len(frame),
        window,
        shard,
        shards,
        sample=sample,
        sample_keys=keys,
        sample_limit=sample_limit,
    )


def merge_windows(parts: list[WindowStats], shards: int) -> WindowStats:
    """The whole window's statistics from every shard's (in any order).

    Raises `ValueError` naming the problem when a shard is missing or repeated, or when the
    shards' statistics are not of the same window, feature set or shard count."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    got = sorted(p.shard for p in parts)
    if got != list(range(shards)):
        missing = sorted(set(range(shards)) - set(got))
        repeated = sorted({k for k in got if got.count(k) > 1})
        extra = sorted(k for k in set(got) if not 0 <= k < shards)
        problems = [
            f"{label} {', '.join(map(str, ks))}"
            for label, ks in (("missing", missing), ("repeated", repeated), ("unknown", extra))
            if ks
        ]
        raise ValueError(
            f"drift statistics of {shards} shards expected (0..{shards - 1}), got shards "
            f"{got or 'none'}: {'; '.join(problems)}"
        )
    parts = sorted(parts, key=lambda p: p.shard)
    first = parts[0]
    for part in parts[1:]:
        if part.shards != shards:
            raise ValueError(
                f"shard {part.shard}'s drift statistics are of {part.shards} shards, not {shards}"
            )
        if part.window != first.window:
            raise ValueError(
                f"shard {part.shard}'s drift statistics are of window {part.window!r}, "
                f"shard {first.shard}'s of {first.window!r}"
            )
        if part.signature != first.signature:
            theirs, ours = part.signature, first.signature
            extra = [c for c in theirs if c not in ours]
            lacking = [c for c in ours if c not in theirs]
            other = [c for c in ours if c in theirs and theirs[c] != ours[c]]
            raise ValueError(
                f"shard {part.shard}'s drift statistics are of a different feature set than "
                f"shard {first.shard}'s: extra columns {extra}, missing columns {lacking}, "
                f"columns of another kind {other}"
            )
    if first.shards != shards:
        raise ValueError(
            f"shard {first.shard}'s drift statistics are of {first.shards} shards, not {shards}"
        )
    columns = {c: merge_columns([p.columns[c] for p in parts]) for c in first.columns}
    scores = np.concatenate([p.scores for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    # each shard's own keys: its sample holds its rows with the smallest, so the smallest of
    # all are among the shards' samples
    pooled = pd.concat(
        [p.sample for p in parts if len(p.sample)] or [first.sample], ignore_index=True
    )
    keys = np.concatenate([p.sample_keys for p in parts])
    sample, keys = smallest_keys(pooled, keys, first.sample_limit)
    return WindowStats(
        columns,
        sum(p.rows for p in parts),
        first.window,
        0,
        shards,
        scores,
        labels,
        sample,
        keys,
        first.sample_limit,
    )


def canonical_pairs(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (score, label) pairs sorted by score, then label: an order that does not depend
    on which shard a row came from, so the metrics' float sums do not either."""
    order = np.lexsort((labels, scores))
    return scores[order], labels[order]
