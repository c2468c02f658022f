"""A row budget: a stratified sample of exactly `budget` rows, kept in their original order.

Rows are stratified by a code (snapshot date x label in the split): each stratum gets its
proportional share of the budget, rounded by largest remainder, so the total is exact and no
stratum is more than one row from its share. The rows of a stratum are drawn uniformly
without replacement from a generator seeded by `seed`; the same codes and seed give the
same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RowCounts:
    """Rows under the row budget (`split.train_rows`): those of the train part and of train +
    validation (the final fit's), before and after sampling."""

    budget: int | None
    train_before: int
    train_after: int
    final_before: int
    final_after: int


def allocate(counts: np.ndarray, budget: int) -> np.ndarray:
    """Each stratum's rows of a `budget` split in proportion to `counts` (largest remainder:
    the floors of the exact shares, then one more row to the largest fractions, ties to the
    earlier stratum). A budget of at least the total keeps every row."""
    counts = np.asarray(counts, dtype=np.int64)
    if budget < 1:
        raise ValueError(f"a row budget must be at least 1, not {budget}")
    if (counts < 0).any():
        raise ValueError("stratum counts cannot be negative")
    total = int(counts.sum())
    if budget >= total:
        return counts.copy()
    # integer arithmetic: shares are exact, so ties are ties and not rounding noise
    scaled = counts * budget
    quotas = scaled // total
    fractions = scaled % total
    short = budget - int(quotas.sum())
    quotas[np.argsort(-fractions, kind="stable")[:short]] += 1
    return quotas


def choose(strata: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """Positions (ascending) of a stratified sample of `budget` rows, where `strata[i]` is
    row i's stratum, a small non-negative integer; every position when the budget covers
    all rows."""
    strata = np.asarray(strata)
    if strata.dtype.kind not in "iu" or (len(strata) and strata.min() < 0):
        raise ValueError("stratum codes must be non-negative integers")
    if budget >= len(strata):
        return np.arange(len(strata))
    counts = np.bincount(strata)
    quotas = allocate(counts, budget)
    # each stratum's rows together, in row order (a radix sort for 16-bit codes)
    by_stratum = np.argsort(strata, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rng = np.random.default_rng(seed)
    picked = [
        by_stratum[start + rng.choice(count, size=quota, replace=False)]
        for start, count, quota in zip(starts, counts, quotas, strict=True)
        if quota
    ]
    return np.sort(np.concatenate(picked))


def budget_line(rows: RowCounts) -> str:
    """What the budget did, in a sentence a user reads."""
    if rows.train_after < rows.train_before:
        head = (
            f"training on {rows.train_after:,} of {rows.train_before:,} training rows, "
            f"sampled by snapshot and label (split.train_rows={rows.budget:,})"
        )
    elif rows.budget is None:
        head = f"training on all {rows.train_before:,} training rows (no split.train_rows)"
    else:
        head = (
            f"training on all {rows.train_before:,} training rows "
            f"(split.train_rows={rows.budget:,})"
        )
    if rows.final_after < rows.final_before:
        head += (
            f"; the final fit on {rows.final_after:,} of {rows.final_before:,} train + "
            "validation rows, sampled the same way"
        )
    return head
