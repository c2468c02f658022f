"""The stacked-tree scorer gives a boosting model's own probabilities, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from mlstack.serving.trees import MAX_ROWS, tree_table

pytestmark = pytest.mark.unit


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 6))
    X[:, 2] = rng.integers(0, 5, rows)  # a count-like column with ties on the thresholds
    X[rng.random(X.shape) < 0.1] = np.nan
    logit = X[:, 0] - np.nan_to_num(X[:, 1]) + 0.5 * np.nan_to_num(X[:, 2]) - 1
    y = (rng.random(rows) < 1 / (1 + np.exp(-np.nan_to_num(logit)))).astype(int)
    return X, y


@pytest.mark.parametrize("params", [{}, {"max_iter": 60, "max_leaf_nodes": 8}])
def test_probabilities_are_the_models_own(params: dict) -> None:
    X, y = _data(4000, seed=1)
    model = HistGradientBoostingClassifier(random_state=0, **params).fit(X, y)
    table = tree_table(model)
    assert table is not None
    fresh, _ = _data(MAX_ROWS * 20, seed=2)
    for start in range(0, len(fresh), MAX_ROWS):
        rows = fresh[start : start + MAX_ROWS]
        assert np.array_equal(table.predict_proba(rows), model.predict_proba(rows))
    for seed in range(10):  # on, just below and just above every threshold, and missing
        probe = table.probe(seed=seed)
        assert np.array_equal(table.predict_proba(probe), model.predict_proba(probe))
    # a large batch goes to the model itself
    assert np.array_equal(table.predict_proba(fresh), model.predict_proba(fresh))


def test_models_it_cannot_walk_are_left_to_sklearn() -> None:
    X, y = _data(1000, seed=3)
    three = HistGradientBoostingClassifier(max_iter=5).fit(X, y + (X[:, 0] > 1))
    assert tree_table(three) is None  # three classes: one tree per class and iteration
    X[:, 2] = np.nan_to_num(X[:, 2])
    categorical = HistGradientBoostingClassifier(max_iter=5, categorical_features=[2])
    assert tree_table(categorical.fit(X, y)) is None
    assert tree_table(object()) is None
