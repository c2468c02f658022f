"""Curves of a scored test period and its operating point.

The confusion matrix, the slices' "selected" share and the error analysis share one
operating point: by default the `evaluation.top_fraction` of rows with the highest scores
(`top_mask`), so the matrix's precision equals `precision_at_top`; its threshold is the
lowest score selected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from mlstack.models.metrics import top_mask

CATEGORIES = ["no purchase", "purchase"]
MAX_ROC_POINTS = 200  # KFP's ClassificationMetrics.log_roc_curve takes plain lists
MAX_PLOT_POINTS = 400

Curve = tuple[np.ndarray, np.ndarray, str]  # x, y and the legend's figure ("AUC 0.812")


def thin(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most `max_points` points spread evenly along the curve (x, y), in order,
    first and last included."""
    if len(x) <= max_points:
        return np.arange(len(x))
    length = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))])
    targets = np.linspace(0.0, length[-1], max_points)[:-1]
    return np.unique(np.append(np.searchsorted(length, targets), len(x) - 1))


def roc_points(
    y: np.ndarray, scores: np.ndarray, max_points: int = MAX_ROC_POINTS
) -> dict[str, list[float]]:
    """ROC curve thinned to at most `max_points` points: fpr (non-decreasing), tpr and the
    score thresholds, all finite (the "select nothing" point gets a threshold just above the
    top score)."""
    fpr, tpr, thresholds = roc_curve(y, scores)
    top = float(np.max(scores))
    thresholds = np.where(np.isfinite(thresholds), thresholds, np.nextafter(top, np.inf))
    keep = thin(fpr, tpr, max_points)
    return {
        "fpr": fpr[keep].tolist(),
        "tpr": tpr[keep].tolist(),
        "thresholds": thresholds[keep].tolist(),
    }


def plot_curves(
    y: np.ndarray, models: dict[str, np.ndarray], metrics: dict[str, dict[str, float]]
) -> tuple[dict[str, Curve], dict[str, Curve]]:
    """The ROC (fpr, tpr) and precision-recall (recall, precision) curve of each model,
    thinned to `MAX_PLOT_POINTS` and labelled with its AUC or average precision."""
    roc, pr = {}, {}
    for label, scores in models.items():
        fpr, tpr, _ = roc_curve(y, scores)
        keep = thin(fpr, tpr, MAX_PLOT_POINTS)
        roc[label] = (fpr[keep], tpr[keep], f"AUC {metrics[label]['roc_auc']:.3f}")
        precision, recall, _ = precision_recall_curve(y, scores)
        keep = thin(recall, precision, MAX_PLOT_POINTS)
        pr[label] = (recall[keep], precision[keep], f"AP {metrics[label]['pr_auc']:.3f}")
    return roc, pr


def gains(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Share targeted, share of positives captured (highest scores first, ties by position)
    and the lift of each decile."""
    order = np.argsort(-scores, kind="stable")
    hits = y[order]
    captured = np.concatenate([[0.0], np.cumsum(hits) / hits.sum()])
    targeted = np.arange(len(hits) + 1) / len(hits)
    deciles = np.array([part.mean() for part in np.array_split(hits, 10)]) / hits.mean()
    return targeted, captured, deciles


def operating_point(
    scores: np.ndarray, top_fraction: float, threshold: float | None = None
) -> tuple[np.ndarray, float]:
    """Rows predicted positive and the threshold: `score >= threshold` when one is given,
    else the top `top_fraction` of rows (threshold: the lowest score among them)."""
    if threshold is not None:
        return scores >= threshold, float(threshold)
    selected = top_mask(scores, top_fraction)
    return selected, float(scores[selected].min())


def operating_rates(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """True and false positive rate and precision at the operating point."""
    positive = y.astype(bool)
    return {
        "tpr": float((predicted & positive).sum() / positive.sum()),
        "fpr": float((predicted & ~positive).sum() / (~positive).sum()),
        "precision": float((predicted & positive).sum() / max(predicted.sum(), 1)),
    }


def confusion_matrix(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """The 2x2 matrix in KFP's layout: rows are the true class, columns the predicted one."""
    positive = y.astype(bool)
    tp = int((predicted & positive).sum())
    fp = int((predicted & ~positive).sum())
    fn = int((~predicted & positive).sum())
    tn = int((~predicted & ~positive).sum())
    return {"categories": list(CATEGORIES), "matrix": [[tn, fp], [fn, tp]]}
