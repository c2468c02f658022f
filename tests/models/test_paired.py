"""The paired bootstrap's metrics are sklearn's, with draw counts as sample weights."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from mlstack.models import paired

pytestmark = pytest.mark.unit

SKLEARN = {"pr_auc": average_precision_score, "roc_auc": roc_auc_score, "brier": brier_score_loss}


@pytest.mark.parametrize("metric", sorted(SKLEARN))
def test_each_redraw_scores_as_sklearn_does_with_the_counts_as_weights(metric: str) -> None:
    rng = np.random.default_rng(0)
    rows, groups = 4000, 600
    member = rng.integers(0, groups, rows)
    y = (rng.random(rows) < 0.15).astype(float)
    scores = np.round(rng.random(rows) * 0.6 + 0.3 * y, 2)  # many ties
    model = paired.Thresholds(y, scores, member, groups)
    counts = rng.integers(0, 3, size=(groups, 5)).astype(float)
    ours = paired.METRICS[metric](counts, model)
    for k in range(5):
        expected = SKLEARN[metric](y, scores, sample_weight=counts[member, k])
        assert ours[k] == pytest.approx(expected, abs=1e-12)


def test_redraws_are_paired_and_centred_on_the_exact_figures() -> None:
    rng = np.random.default_rng(1)
    rows = 20_000
    customers = rng.integers(0, 2000, rows)
    y = (rng.random(rows) < 0.1).astype(float)
    a = y + rng.normal(size=rows)  # continuous: cut at quantiles in the redraws
    b = a + rng.normal(scale=0.05, size=rows)  # nearly the same model
    point, redraws = paired.bootstrap(
        "pr_auc", y, customers, {"a": a, "b": b}, 300, seed=0, max_thresholds=500
    )
    assert point["a"] == pytest.approx(average_precision_score(y, a), abs=1e-12)
    assert len(redraws["a"]) == 300
    # paired: the difference varies far less than each model's figure
    assert np.std(redraws["a"] - redraws["b"]) < np.std(redraws["a"]) / 5
    # centred: the redraws' mean is near the exact figure despite the cut scores
    assert np.mean(redraws["a"]) == pytest.approx(point["a"], abs=3 * np.std(redraws["a"]) / 10)
    again = paired.bootstrap("pr_auc", y, customers, {"a": a, "b": b}, 300, 0, 500)[1]
    assert np.array_equal(again["a"], redraws["a"])  # the seed fixes the redraws


def test_bad_input_is_named() -> None:
    y = np.array([0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="one of pr_auc, roc_auc, brier"):
        paired.bootstrap("lift_at_top", y, np.arange(3), {"a": y}, 100, 0)
    with pytest.raises(ValueError, match="one class only"):
        paired.bootstrap("pr_auc", np.zeros(3), np.arange(3), {"a": y}, 100, 0)
    with pytest.raises(ValueError, match="a: 2 scores for 3 rows"):
        paired.bootstrap("pr_auc", y, np.arange(3), {"a": y[:2]}, 100, 0)
