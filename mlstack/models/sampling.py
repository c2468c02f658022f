"""A row budget: a stratified sample of exactly `budget` rows, kept in their original order.

Rows are stratified by a code (snapshot date x label in the split): each stratum gets its
proportional share of the budget, rounded by largest remainder, so the total is exact and no
stratum is more than one row from its share. A stratum's rows taken are those of smallest
rank, where a row's rank is a keyed hash of its (customer id, snapshot date)
(`mlstack.features.shards.row_hash`, keyed by `split.seed`): a uniform draw without
replacement that depends on the rows and the seed only, not on the order the rows come in,
so a training set read as one file or as its shards' partitions gives the same sample.
The draw is streamed (`SmallestByStratum`): rows come a batch at a time and only the
candidates (about twice the budget) are held, never a rank per row.
Equal ranks (two rows of a stratum with one 64-bit hash: about n**2 / 2**65 for a stratum of
n rows) go to the earlier row.
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


def choose(strata: np.ndarray, budget: int, ranks: np.ndarray) -> np.ndarray:
    """Positions (ascending) of a stratified sample of `budget` rows, where `strata[i]` is
    row i's stratum, a small non-negative integer, and `ranks[i]` its rank (the rows of
    smallest rank are taken); every position when the budget covers all rows."""
    strata = np.asarray(strata)
    if strata.dtype.kind not in "iu" or (len(strata) and strata.min() < 0):
        raise ValueError("stratum codes must be non-negative integers")
    if len(ranks) != len(strata):
        raise ValueError(f"{len(ranks)} ranks for {len(strata)} rows")
    if budget >= len(strata):
        return np.arange(len(strata))
    picker = SmallestByStratum(allocate(np.bincount(strata), budget))
    picker.add(strata, np.asarray(ranks), np.arange(len(strata)))
    return picker.positions()


class SmallestByStratum:
    """The rows of smallest rank in each stratum, `quotas[s]` of stratum s, fed a batch of
    (stratum, rank, position) at a time; it holds about twice the quotas' rows at most, and
    a row ranked above a full stratum's last kept row is dropped at once."""

    def __init__(self, quotas: np.ndarray) -> None:
        self.quotas = np.asarray(quotas, dtype=np.int64)
        self.limit = 2 * int(self.quotas.sum()) + 1
        # a row is kept only below its stratum's bar: the largest kept rank once full
        self.bars = np.full(len(self.quotas), np.iinfo(np.uint64).max, dtype=np.uint64)
        self.held: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.rows = 0

    def add(self, strata: np.ndarray, ranks: np.ndarray, positions: np.ndarray) -> None:
        below = ranks <= self.bars[strata]
        if not below.all():
            strata, ranks, positions = strata[below], ranks[below], positions[below]
        self.held.append((strata, ranks.astype(np.uint64, copy=False), positions))
        self.rows += len(strata)
        if self.rows > self.limit:
            self._compact()

    def _compact(self) -> None:
        strata, ranks, positions = (np.concatenate(c) for c in zip(*self.held, strict=True))
        order = np.lexsort((positions, ranks, strata))  # by stratum, rank, then position
        strata, ranks, positions = strata[order], ranks[order], positions[order]
        first = np.searchsorted(strata, np.arange(len(self.quotas)))
        keep = np.arange(len(strata)) - first[strata] < self.quotas[strata]
        strata, ranks, positions = strata[keep], ranks[keep], positions[keep]
        self.held, self.rows = [(strata, ranks, positions)], len(strata)
        counts = np.bincount(strata, minlength=len(self.quotas))
        full = (counts == self.quotas) & (self.quotas > 0)
        last = np.searchsorted(strata, np.arange(len(self.quotas)), side="right") - 1
        self.bars[full] = ranks[last[full]]

    def positions(self) -> np.ndarray:
        """The kept rows' positions, ascending."""
        if not self.held:
            return np.empty(0, dtype=np.int64)
        self._compact()
        return np.sort(self.held[0][2])


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
