"""The scores every model is judged by: one definition for tuning, evaluation and the gate."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

# metric -> True when larger is better
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "brier": False,
    "calibration_error": False,
    "lift_at_top": True,
    "precision_at_top": True,
}


def top_mask(scores: np.ndarray, fraction: float) -> np.ndarray:
    """The `fraction` of rows with the highest scores (ties broken by position)."""
    k = max(1, round(len(scores) * fraction))
    order = np.argsort(-scores, kind="stable")
    mask = np.zeros(len(scores), dtype=bool)
    mask[order[:k]] = True
    return mask


def calibration_bins(
    y_true: np.ndarray, scores: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantile bins of the scores: observed rate, mean score and rows of each non-empty bin."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(scores, dtype=float)
    edges = np.percentile(p, np.linspace(0, 100, bins + 1))
    ids = np.searchsorted(edges[1:-1], p)
    counts = np.bincount(ids, minlength=bins)
    keep = counts > 0
    observed = np.bincount(ids, weights=y, minlength=bins)[keep] / counts[keep]
    predicted = np.bincount(ids, weights=p, minlength=bins)[keep] / counts[keep]
    return observed, predicted, counts[keep]


def calibration_error(y_true: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: mean |observed - predicted| over quantile bins, by size."""
    observed, predicted, counts = calibration_bins(y_true, scores, bins)
    return float(np.average(np.abs(observed - predicted), weights=counts))


def classification_metrics(
    y_true: np.ndarray, scores: np.ndarray, top_fraction: float = 0.1, bins: int = 10
) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier, calibration error, lift and precision in the top fraction."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(scores, dtype=float)
    if len(np.unique(y)) < 2:
        raise ValueError("metrics need both classes in the labels")
    top = top_mask(p, top_fraction)
    base_rate = y.mean()
    precision_top = float(y[top].mean())
    in_unit = (p >= 0) & (p <= 1)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        # Brier and calibration only mean something for probabilities
        "brier": float(brier_score_loss(y, p)) if in_unit.all() else float("nan"),
        "calibration_error": calibration_error(y, p, bins) if in_unit.all() else float("nan"),
        "precision_at_top": precision_top,
        "lift_at_top": float(precision_top / base_rate),
        "positive_rate": float(base_rate),
        "rows": float(len(y)),
    }


def better(metric: str, a: float, b: float) -> bool:
    """True when `a` is strictly better than `b` on `metric`."""
    return a > b if HIGHER_IS_BETTER[metric] else a < b
