"""The scores every model is judged by: one definition for tuning, evaluation and the gate.

Validation and test are scored on every row: 18.9M validation rows at 100x CDNOW's
customers, scored after every tuning stage. scikit-learn's `roc_auc_score`,
`average_precision_score` and `brier_score_loss` each sort or copy the scores in 64-bit
arrays of their own, about 90 bytes a row and 22 s for the set of them on 18.9M rows
(measured). So `classification_metrics` sorts
the scores once, stably and highest first, and computes ROC-AUC and average precision by
scikit-learn's definitions from that one order, a chunk of `CHUNK_ROWS` rows at a time:
about 20 bytes a row at its peak (the sort's). ROC-AUC is summed in integers, so it is
exact; the other sums are in floating point and may differ from scikit-learn's in the last
digits (tests hold them to 1e-12). A part of at most `CHUNK_ROWS` rows (CDNOW's) has its
Brier score and calibration bins summed in one piece, as before.
"""

from __future__ import annotations

import numpy as np

# metric -> True when larger is better
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "brier": False,
    "calibration_error": False,
    "lift_at_top": True,
    "precision_at_top": True,
}

CHUNK_ROWS = 1 << 20  # rows summed at a time: a few arrays of this many held beside the sort


def top_mask(scores: np.ndarray, fraction: float) -> np.ndarray:
    """The `fraction` of rows with the highest scores (ties broken by position)."""
    mask = np.zeros(len(scores), dtype=bool)
    mask[_descending(np.asarray(scores, dtype=float))[: _top_rows(len(scores), fraction)]] = True
    return mask


def _top_rows(rows: int, fraction: float) -> int:
    return max(1, round(rows * fraction))


def _descending(scores: np.ndarray) -> np.ndarray:
    """Row positions by score, highest first, ties in row order."""
    return np.argsort(np.negative(scores), kind="stable")


def _chunks(rows: int) -> range:
    return range(0, rows, CHUNK_ROWS)


def calibration_bins(
    y_true: np.ndarray, scores: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantile bins of the scores: observed rate, mean score and rows of each non-empty bin."""
    y = np.asarray(y_true)
    p = np.asarray(scores, dtype=float)
    edges = np.percentile(p, np.linspace(0, 100, bins + 1))[1:-1]
    counts = np.zeros(bins, dtype=np.int64)
    positives, total = np.zeros(bins), np.zeros(bins)
    for start in _chunks(len(p)):
        here = p[start : start + CHUNK_ROWS]
        ids = np.searchsorted(edges, here)
        counts += np.bincount(ids, minlength=bins)
        positives += np.bincount(ids, weights=y[start : start + CHUNK_ROWS], minlength=bins)
        total += np.bincount(ids, weights=here, minlength=bins)
    keep = counts > 0
    return positives[keep] / counts[keep], total[keep] / counts[keep], counts[keep]


def calibration_error(y_true: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: mean |observed - predicted| over quantile bins, by size."""
    observed, predicted, counts = calibration_bins(y_true, scores, bins)
    return float(np.average(np.abs(observed - predicted), weights=counts))


def _binary_labels(y_true: np.ndarray, rows: int) -> np.ndarray:
    """The labels as booleans (True for 1), checked: 0 or 1 only, both present."""
    y = np.asarray(y_true)
    if len(y) != rows:
        raise ValueError(f"{len(y)} labels for {rows} scores")
    positive = y == 1
    ones = int(np.count_nonzero(positive))
    if ones + int(np.count_nonzero(y == 0)) != rows:
        raise ValueError("labels must be 0 or 1 (a missing or other value is not a label)")
    if ones in (0, rows):
        raise ValueError("metrics need both classes in the labels")
    return positive


def _brier(positive: np.ndarray, p: np.ndarray) -> float:
    squares = sum(
        float(np.sum((p[s : s + CHUNK_ROWS] - positive[s : s + CHUNK_ROWS]) ** 2))
        for s in _chunks(len(p))
    )
    return squares / len(p)


def _ranking(ranked: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """ROC-AUC and average precision from the labels `ranked` in the order of the scores
    `p` (sorted, highest first).

    Each run of equal scores is one threshold; at the end of a run, `tps` and `fps` count the
    positives and negatives scored at or above it. ROC-AUC is the trapezoid area under
    (fps / negatives, tps / positives) from (0, 0); average precision is the sum over the
    thresholds of recall's step times the precision there, as scikit-learn defines them.
    """
    rows = len(p)
    positives = int(np.count_nonzero(ranked))
    area = 0  # twice the ROC area in units of one positive x one negative: an integer
    precision_sum = 0.0
    seen = last_tp = last_fp = 0
    for start in _chunks(rows):
        stop = min(rows, start + CHUNK_ROWS)
        here = p[start:stop]
        closes = np.empty(len(here), dtype=bool)
        closes[:-1] = here[:-1] != here[1:]
        closes[-1] = stop == rows or here[-1] != p[stop]
        ends = np.flatnonzero(closes)
        hits = np.cumsum(ranked[start:stop], dtype=np.int64)
        chunk_hits = int(hits[-1])
        tps = seen + hits[ends]
        del hits
        seen += chunk_hits
        if not len(ends):
            continue
        fps = start + ends + 1 - tps
        before_tp = np.concatenate(([last_tp], tps[:-1]))
        before_fp = np.concatenate(([last_fp], fps[:-1]))
        area += int(np.sum((fps - before_fp) * (tps + before_tp)))
        precision_sum += float(np.sum((tps - before_tp) * (tps / (tps + fps))))
        last_tp, last_fp = int(tps[-1]), int(fps[-1])
    negatives = rows - positives
    return area / (2 * positives * negatives), precision_sum / positives


def classification_metrics(
    y_true: np.ndarray, scores: np.ndarray, top_fraction: float = 0.1, bins: int = 10
) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier, calibration error, lift and precision in the top fraction."""
    p = np.asarray(scores, dtype=float)
    positive = _binary_labels(y_true, len(p))
    low, high = float(p.min()), float(p.max())  # both classes: at least two rows
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("scores must be finite numbers (a NaN or an infinity is not a score)")
    # Brier and calibration only mean something for probabilities
    in_unit = low >= 0 and high <= 1
    brier = _brier(positive, p) if in_unit else float("nan")
    calibration = calibration_error(positive, p, bins) if in_unit else float("nan")
    base_rate = float(np.count_nonzero(positive)) / len(p)

    order = _descending(p)
    ranked = positive[order]
    p = p[order]
    del order
    top = _top_rows(len(p), top_fraction)
    precision_top = float(np.count_nonzero(ranked[:top])) / top
    roc_auc, pr_auc = _ranking(ranked, p)
    return {
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "brier": brier,
        "calibration_error": calibration,
        "precision_at_top": precision_top,
        "lift_at_top": precision_top / base_rate,
        "positive_rate": base_rate,
        "rows": float(len(p)),
    }


def better(metric: str, a: float, b: float) -> bool:
    """True when `a` is strictly better than `b` on `metric`."""
    return a > b if HIGHER_IS_BETTER[metric] else a < b
