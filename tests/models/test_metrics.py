"""The shared metrics: scikit-learn's definitions of ROC-AUC, average precision and Brier,
computed from one sort in chunks, and a memory cost of a few bytes a row."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from mlstack.models import metrics
from mlstack.models.metrics import calibration_bins, classification_metrics, top_mask

pytestmark = pytest.mark.unit


def _case(seed: int, rows: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(2 - signal))).astype(np.int8)
    p = 1 / (1 + np.exp(-signal - rng.normal(size=rows)))
    return y, np.round(p, 1) if ties else p  # rounded: a few long runs of equal scores


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("ties", [False, True])
def test_the_metrics_are_scikit_learns_in_any_chunking(monkeypatch, chunk: int, ties: bool):
    y, p = _case(3, 5_000, ties)
    monkeypatch.setattr(metrics, "CHUNK_ROWS", chunk)
    got = classification_metrics(y, p, top_fraction=0.1, bins=10)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert got["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert got["precision_at_top"] == y[top_mask(p, 0.1)].mean()
    assert got["lift_at_top"] == pytest.approx(got["precision_at_top"] / y.mean())
    assert got["positive_rate"] == y.mean()
    assert got["rows"] == 5_000
    monkeypatch.setattr(metrics, "CHUNK_ROWS", 1 << 20)
    whole = calibration_bins(y, p)
    monkeypatch.setattr(metrics, "CHUNK_ROWS", chunk)
    for chunked, one in zip(calibration_bins(y, p), whole, strict=True):
        np.testing.assert_allclose(chunked, one, rtol=1e-12)


def test_every_score_equal_is_chance():
    y = np.array([0, 1, 0, 1, 1])
    got = classification_metrics(y, np.full(5, 0.4))
    assert got["roc_auc"] == 0.5
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, np.full(5, 0.4)))


def test_scores_outside_zero_to_one_rank_but_are_not_calibrated():
    y, p = _case(5, 800, False)
    got = classification_metrics(y, np.log(p / (1 - p)))  # log-odds: the same order
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert np.isnan(got["brier"]) and np.isnan(got["calibration_error"])


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "both classes"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "labels must be 0 or 1"),
        ([0, 1, np.nan], [0.1, 0.2, 0.3], "labels must be 0 or 1"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "finite numbers"),
        ([0, 1, 1], [0.1, np.inf, 0.3], "finite numbers"),
        ([0, 1], [0.1, 0.2, 0.3], "2 labels for 3 scores"),
    ],
)
def test_bad_labels_and_scores_are_named(labels, scores, message: str):
    with pytest.raises(ValueError, match=message):
        classification_metrics(np.array(labels), np.array(scores))


def test_scoring_every_row_costs_a_few_bytes_a_row(monkeypatch):
    """Validation is scored on every row after each tuning stage (18.9M rows at 100x):
    the metrics hold one sort's arrays, not scikit-learn's copies (90 bytes a row)."""
    rows = 1_000_000
    rng = np.random.default_rng(0)
    y = (rng.random(rows) < 0.1).astype(np.int8)
    p = rng.random(rows)
    monkeypatch.setattr(metrics, "CHUNK_ROWS", 1 << 14)  # chunks small beside the rows
    tracemalloc.start()
    try:
        classification_metrics(y, p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak / rows < 24, f"{peak / rows:.1f} bytes a row"  # 18.0 measured
