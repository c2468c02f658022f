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

import numpy as np
from scipy import sparse

BOOTSTRAPPED = ("pr_auc", "roc_auc", "brier")
"""The metrics a paired interval can be computed for."""

CHUNK_CELLS = 20_000_000
"""Draw counts and running sums held at once (redraws x groups or thresholds): 160 MB."""

MAX_THRESHOLDS = 2000
"""Score thresholds per model in a redraw (quantiles when a model has more distinct scores)."""


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
        distinct = np.unique(scores)  # ascending
        self.exact = max_thresholds is None or len(distinct) <= max_thresholds
        if self.exact:
            rank = np.searchsorted(distinct, scores)
            levels = len(distinct)
        else:
            edges = np.unique(np.quantile(scores, np.linspace(0, 1, max_thresholds + 1)))
            rank = np.searchsorted(edges[1:-1], scores, side="right")
            levels = len(edges) - 1
        level = levels - 1 - rank  # level 0 holds the highest scores
        shape = (levels, groups)
        self.rows = sparse.csr_matrix((np.ones(len(y)), (level, member)), shape=shape)
        self.positives = sparse.csr_matrix((y, (level, member)), shape=shape)
        self.row_sums = np.bincount(member, minlength=groups).astype(np.float64)
        self.squared_error = np.bincount(member, (scores - y) ** 2, minlength=groups)


def _threshold_sums(counts: np.ndarray, model: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Weighted true and false positives at each threshold, highest first: two
    (thresholds x redraws) arrays of running sums. `counts`: (groups x redraws) draws."""
    tp = np.cumsum(model.positives @ counts, axis=0)
    seen = np.cumsum(model.rows @ counts, axis=0)
    return tp, seen - tp


def pr_auc(counts: np.ndarray, model: Thresholds) -> np.ndarray:
    """Average precision for each redraw (as sklearn, with sample_weight)."""
    tp, fp = _threshold_sums(counts, model)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    recall_step = np.diff(tp, axis=0, prepend=0.0) / tp[-1]
    return np.sum(recall_step * precision, axis=0)


def roc_auc(counts: np.ndarray, model: Thresholds) -> np.ndarray:
    """Area under the ROC curve for each redraw (trapezoids, as sklearn)."""
    tp, fp = _threshold_sums(counts, model)
    zero = np.zeros((1, tp.shape[1]))
    tpr = np.vstack([zero, tp]) / tp[-1]
    fpr = np.vstack([zero, fp]) / fp[-1]
    return np.sum(np.diff(fpr, axis=0) * (tpr[1:] + tpr[:-1]) / 2, axis=0)


def brier(counts: np.ndarray, model: Thresholds) -> np.ndarray:
    """Weighted mean squared error of the probabilities, for each redraw."""
    return (model.squared_error @ counts) / (model.row_sums @ counts)


METRICS: dict[str, Callable[[np.ndarray, Thresholds], np.ndarray]] = {
    "pr_auc": pr_auc,
    "roc_auc": roc_auc,
    "brier": brier,
}


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
    if len(np.unique(y)) < 2:
        raise ValueError("the test period has one class only: no metric can be compared")
    _, member = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(member.max()) + 1
    arrays = {name: np.asarray(s, dtype=np.float64) for name, s in scores.items()}
    for name, s in arrays.items():
        if s.shape != y.shape:
            raise ValueError(f"{name}: {len(s)} scores for {len(y)} rows")
    ones = np.ones((n_groups, 1))
    point, shift, models = {}, {}, {}
    for name, s in arrays.items():
        exact = Thresholds(y, s, member, n_groups)
        point[name] = float(compute(ones, exact)[0])
        if exact.rows.shape[0] <= max_thresholds:
            models[name], shift[name] = exact, 0.0
            continue
        models[name] = Thresholds(y, s, member, n_groups, max_thresholds)
        # cut scores move a model's figure a little, the same in every redraw: shift the
        # redraws by it, so that differences are centred on the exact ones
        shift[name] = point[name] - compute(ones, models[name])[0]
    positives_of = np.bincount(member, y, minlength=n_groups)
    rows_of = np.bincount(member, minlength=n_groups).astype(np.float64)
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // max(n_groups, max_thresholds))
    values: dict[str, list[np.ndarray]] = {name: [] for name in models}
    done = 0
    while done < replicates:
        size = min(chunk, replicates - done)
        draws = rng.integers(0, n_groups, size=(size, n_groups))
        draws += np.arange(size)[:, None] * n_groups
        counts = np.bincount(draws.ravel(), minlength=size * n_groups).reshape(size, n_groups)
        # a redraw without positives (or negatives) has no curve: it cannot happen on a
        # real test period, but a tiny one could; such redraws are dropped for all models
        positives = counts @ positives_of
        counts = counts[(positives > 0) & (positives < counts @ rows_of)]
        counts = np.ascontiguousarray(counts.T, dtype=np.float64)  # groups x redraws
        for name, model in models.items():
            values[name].append(compute(counts, model))
        done += size
    return point, {name: np.concatenate(parts) + shift[name] for name, parts in values.items()}
