"""Paired bootstrap of model metrics over customers, for the promotion gate.

One test period gives one PR-AUC per model; whether a difference of 0.004 between two models
is a difference at all depends on which customers happened to be in it. The bootstrap
redraws the customers with replacement (every row of a drawn customer comes along, as many
times as the customer was drawn: a customer's snapshots are not independent of each other)
and scores every model on the same redraw, so the differences between models are paired.

A redraw is a count per customer; a row's weight is its customer's count. The metrics follow
scikit-learn's `average_precision_score` and `roc_auc_score` with `sample_weight` (equal
scores are one threshold) and the weighted mean for `brier`. Calling sklearn once per redraw
and model would take minutes on CDNOW's test period. Instead each model's rows are summed per
customer at each score threshold once (a sparse matrix), and the weighted counts of a whole
batch of redraws at every threshold are one sparse product. The figures on the data as it is
are exact; in the redraws a model with more than `MAX_THRESHOLDS` distinct scores has them
cut at that many quantiles, and its redraws are shifted by what the cut changed on the data
as it is, so the differences between models stay centred on the exact differences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import numpy as np
from scipy import sparse

from mlstack.models.parallel import run_jobs

BOOTSTRAPPED = ("pr_auc", "roc_auc", "brier")
"""The metrics a paired interval can be computed for."""

CHUNK_CELLS = 20_000_000
"""Draw counts and running sums held at once (redraws x groups or thresholds): 160 MB."""

MAX_THRESHOLDS = 2000
"""Score thresholds per model in a redraw (quantiles when a model has more distinct scores)."""


def score_levels(
    scores: np.ndarray, max_thresholds: int | None = None
) -> tuple[np.ndarray, int, bool]:
    """Each row's threshold level (0 for the highest scores), the number of levels and
    whether they are the distinct scores (else `max_thresholds` quantile cuts, equal scores
    kept together)."""
    if max_thresholds is None:  # a sort, not a search among millions of distinct scores
        distinct, rank = np.unique(scores, return_inverse=True)  # ascending
        return len(distinct) - 1 - rank, len(distinct), True
    distinct = np.unique(scores)
    if len(distinct) <= max_thresholds:
        return len(distinct) - 1 - np.searchsorted(distinct, scores), len(distinct), True
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, max_thresholds + 1)))
    rank = np.searchsorted(edges[1:-1], scores, side="right")
    return len(edges) - 2 - rank, len(edges) - 1, False


class Thresholds:
    """One model's rows summed per group (customer) at each score threshold, highest first:
    two sparse (thresholds x groups) matrices, of rows and of positive rows. A redraw's
    weighted counts at every threshold are then one sparse product with its draw counts.

    Scores with more than `max_thresholds` distinct values are cut at that many quantiles
    (equal scores stay together), which keeps each redraw's work small; `exact` says
    whether they were."""

    def __init__(
        self,
        y: np.ndarray,
        scores: np.ndarray,
        member: np.ndarray,
        groups: int,
        max_thresholds: int | None = None,
    ) -> None:
        level, levels, self.exact = score_levels(scores, max_thresholds)
        shape = (levels, groups)
        # stored by group (CSC): a product then reads the draw counts once, in order, and
        # adds into the thresholds' few rows; by threshold (CSR) it read them all over, 10
        # times slower at 2.4M customers, with the same sums in the same order
        self.rows = sparse.csc_matrix((np.ones(len(y)), (level, member)), shape=shape)
        hit = y != 0  # only positive rows: the products' work follows the stored entries
        self.positives = sparse.csc_matrix((y[hit], (level[hit], member[hit])), shape=shape)
        self.row_sums = np.bincount(member, minlength=groups).astype(np.float64)
        self.squared_error = np.bincount(member, (scores - y) ** 2, minlength=groups)


def _threshold_sums(counts: np.ndarray, model: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Weighted positives and rows at each threshold, highest first: two (thresholds x
    redraws) arrays. `counts`: (groups x redraws) draws."""
    return model.positives @ counts, model.rows @ counts


def _pr_auc(positives: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Average precision (as sklearn, with sample_weight) from the weighted positives and
    rows at each threshold, highest first, for each column."""
    tp = np.cumsum(positives, axis=0)
    seen = np.cumsum(rows, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(seen > 0, tp / seen, 1.0)
    recall_step = np.diff(tp, axis=0, prepend=0.0) / tp[-1]
    return np.sum(recall_step * precision, axis=0)


def _roc_auc(positives: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Area under the ROC curve (trapezoids, as sklearn) from the weighted positives and
    rows at each threshold, highest first, for each column."""
    tp = np.cumsum(positives, axis=0)
    fp = np.cumsum(rows, axis=0) - tp
    zero = np.zeros((1, tp.shape[1]))
    tpr = np.vstack([zero, tp]) / tp[-1]
    fpr = np.vstack([zero, fp]) / fp[-1]
    return np.sum(np.diff(fpr, axis=0) * (tpr[1:] + tpr[:-1]) / 2, axis=0)


CURVES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "pr_auc": _pr_auc,
    "roc_auc": _roc_auc,
}


def pr_auc(counts: np.ndarray, model: Thresholds) -> np.ndarray:
    """Average precision for each redraw (as sklearn, with sample_weight)."""
    return _pr_auc(*_threshold_sums(counts, model))


def roc_auc(counts: np.ndarray, model: Thresholds) -> np.ndarray:
    """Area under the ROC curve for each redraw (trapezoids, as sklearn)."""
    return _roc_auc(*_threshold_sums(counts, model))


def brier(counts: np.ndarray, model: Thresholds) -> np.ndarray:
    """Weighted mean squared error of the probabilities, for each redraw."""
    return (model.squared_error @ counts) / (model.row_sums @ counts)


METRICS: dict[str, Callable[[np.ndarray, Thresholds], np.ndarray]] = {
    "pr_auc": pr_auc,
    "roc_auc": roc_auc,
    "brier": brier,
}


def as_it_is(metric: str, y: np.ndarray, scores: np.ndarray, member: np.ndarray) -> float:
    """`metric` on the data as it is (every row once), at every distinct score: the same
    sums a redraw of all ones gives, without the sparse matrices."""
    if metric in CURVES:
        level, levels, _ = score_levels(scores)
        positives = np.bincount(level, y, minlength=levels)[:, None]
        rows = np.bincount(level, minlength=levels).astype(np.float64)[:, None]
        return float(CURVES[metric](positives, rows)[0])
    groups = int(member.max()) + 1
    ones = np.ones((groups, 1))
    squared_error = np.bincount(member, (scores - y) ** 2, minlength=groups)
    return float((squared_error @ ones)[0] / (np.bincount(member, minlength=groups) @ ones)[0])


def bootstrap(
    metric: str,
    y: np.ndarray,
    groups: np.ndarray,
    scores: Mapping[str, np.ndarray],
    replicates: int,
    seed: int,
    max_thresholds: int = MAX_THRESHOLDS,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Each model's metric on the data as it is, and on `replicates` redraws of the groups
    (customers), the same redraws for every model: (point values, replicate values)."""
    if metric not in METRICS:
        raise ValueError(
            f"no paired bootstrap for {metric!r}: the gate metric must be one of "
            f"{', '.join(BOOTSTRAPPED)}"
        )
    compute = METRICS[metric]
    y = np.asarray(y, dtype=np.float64)
    if y.min() == y.max():
        raise ValueError("the test period has one class only: no metric can be compared")
    _, member = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(member.max()) + 1
    arrays = {name: np.asarray(s, dtype=np.float64) for name, s in scores.items()}
    for name, s in arrays.items():
        if s.shape != y.shape:
            raise ValueError(f"{name}: {len(s)} scores for {len(y)} rows")
    ones = np.ones((n_groups, 1))
    # the exact figures first: their sort's copies come and go before any model is held
    point = {name: as_it_is(metric, y, s, member) for name, s in arrays.items()}
    shift, models = {}, {}
    for name, s in arrays.items():
        models[name] = Thresholds(y, s, member, n_groups, max_thresholds)
        # cut scores move a model's figure a little, the same in every redraw: shift the
        # redraws by it, so that differences are centred on the exact ones
        shift[name] = 0.0 if models[name].exact else point[name] - compute(ones, models[name])[0]
    positives_of = np.bincount(member, y, minlength=n_groups)
    rows_of = np.bincount(member, minlength=n_groups).astype(np.float64)
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // max(n_groups, max_thresholds))
    values: dict[str, list[np.ndarray]] = {name: [] for name in models}
    done = 0
    while done < replicates:
        size = min(chunk, replicates - done)
        draws = rng.integers(0, n_groups, size=(size, n_groups))
        draws *= size  # counted straight into (groups x redraws), the products' layout
        draws += np.arange(size)[:, None]
        counts = np.bincount(draws.ravel(), minlength=size * n_groups).reshape(n_groups, size)
        del draws
        counts = counts.astype(np.float64)
        # a redraw without positives (or negatives) has no curve: it cannot happen on a
        # real test period, but a tiny one could; such redraws are dropped for all models
        positives = positives_of @ counts
        drawn = (positives > 0) & (positives < rows_of @ counts)
        if not drawn.all():
            counts = np.ascontiguousarray(counts[:, drawn])
        # the models' sparse products release the GIL: they run side by side, a core each
        jobs = [partial(compute, counts, model) for model in models.values()]
        for name, found in zip(models, run_jobs(jobs), strict=True):
            values[name].append(found)
        done += size
    return point, {name: np.concatenate(parts) + shift[name] for name, parts in values.items()}
