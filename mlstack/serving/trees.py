"""All trees of a fitted binary `HistGradientBoostingClassifier` walked at once with NumPy.

sklearn predicts tree by tree, and for the few rows of a serving request the fixed cost of
each tree's call (about 10 µs, 100-300 trees) is most of the request. Here every tree's
nodes are stacked into one table and all trees descend together, one NumPy step per level,
using the fitted model's own split thresholds, missing-value directions and leaf values.
The leaf values are added to the baseline in sklearn's order (tree after tree, `cumsum` is
sequential) and passed through the same `expit`, so the probabilities can be bit-identical
to the model's; `serving.model` uses this scorer only after checking that they are, on
probe rows placed on every split threshold, just either side of it, and missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier

# above this many rows sklearn's tree-by-tree loop is as fast (measured crossover: ~64 rows
# for 150 trees), so larger batches go to the model itself
MAX_ROWS = 32


class TreeTable:
    """The stacked trees of one fitted model; `predict_proba` matches sklearn's output."""

    def __init__(self, model: HistGradientBoostingClassifier, large: Any = None) -> None:
        self.large = large or model  # scores batches of more than MAX_ROWS rows
        trees = [predictor.nodes for (predictor,) in model._predictors]
        sizes = np.array([len(nodes) for nodes in trees])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        nodes = np.concatenate(trees)
        shift = np.repeat(offsets, sizes)
        self.roots = offsets.astype(np.intp)
        self.feature = nodes["feature_idx"].astype(np.intp)
        self.threshold = nodes["num_threshold"].astype(np.float64)
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        self.is_leaf = nodes["is_leaf"].astype(bool)
        self.left = (nodes["left"].astype(np.intp) + shift).astype(np.intp)
        self.right = (nodes["right"].astype(np.intp) + shift).astype(np.intp)
        self.value = nodes["value"].astype(np.float64)
        self.depth = int(nodes["depth"].max())
        self.baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
        self.n_features = int(model.n_features_in_)

    def raw(self, matrix: np.ndarray) -> np.ndarray:
        """The model's raw score (log-odds) of each row."""
        n = len(matrix)
        rows = np.arange(n)[:, None]
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        for _ in range(self.depth):
            leaf = self.is_leaf[node]
            if leaf.all():
                break
            x = matrix[rows, self.feature[node]]
            left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            node = np.where(leaf, node, np.where(left, self.left[node], self.right[node]))
        leaves = np.concatenate([np.full((n, 1), self.baseline), self.value[node]], axis=1)
        return np.cumsum(leaves, axis=1)[:, -1]

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Class probabilities, shaped (rows, 2), as `HistGradientBoostingClassifier`."""
        if len(matrix) > MAX_ROWS:
            return self.large.predict_proba(matrix)
        positive = expit(self.raw(np.asarray(matrix, dtype=np.float64)))
        return np.column_stack([1 - positive, positive])

    def probe(self, rows: int = MAX_ROWS, seed: int = 0) -> np.ndarray:
        """Rows whose every value sits on a split threshold of its feature, one step either
        side of it, or is missing: where a walk that differs from sklearn's would show."""
        rng = np.random.default_rng(seed)
        splits = ~self.is_leaf
        matrix = np.full((rows, self.n_features), np.nan)
        for f in range(self.n_features):
            cuts = self.threshold[splits & (self.feature == f)]
            if not len(cuts):
                continue
            near = np.concatenate([cuts, np.nextafter(cuts, -np.inf), np.nextafter(cuts, np.inf)])
            values = rng.choice(near, rows)
            values[rng.random(rows) < 0.1] = np.nan
            matrix[:, f] = values
        return matrix


def tree_table(model: Any, large: Any = None) -> TreeTable | None:
    """A `TreeTable` of a fitted binary boosting model with numeric splits only, else None;
    `large` (default: the model) scores batches of more than `MAX_ROWS` rows."""
    if not isinstance(model, HistGradientBoostingClassifier):
        return None
    predictors = getattr(model, "_predictors", None)
    if not predictors or len(model.classes_) != 2 or any(len(it) != 1 for it in predictors):
        return None
    if any(p.nodes["is_categorical"].any() for (p,) in predictors):
        return None
    return TreeTable(model, large)
