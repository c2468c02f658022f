"""Synthetic reference and window frames with the model's feature columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlstack.config import Settings
from mlstack.features.definitions import feature_list
from mlstack.monitoring.drift import PREDICTION


def feature_frame(settings: Settings, rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Every feature column: counts for int features, log-normal amounts for floats, a few
    missing values; `shift` moves every distribution by that many of its stds."""
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for i, feature in enumerate(feature_list(settings)):
        if feature.kind == "int":
            values = rng.poisson(3 + i % 5, rows).astype(float)
            values += shift * np.sqrt(3 + i % 5)
            data[feature.name] = np.round(values).astype(np.int64)
        else:
            values = rng.lognormal(1.0 + 0.1 * i, 0.5, rows)
            values = values + shift * values.std()
            values[rng.random(rows) < 0.02] = np.nan
            data[feature.name] = values
    frame = pd.DataFrame(data)
    frame[PREDICTION] = np.clip(rng.beta(2, 5, rows) + 0.3 * shift, 0, 1)
    return frame
