"""The drift reference: the newest training snapshots, scored by the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlstack.config import Settings
from mlstack.features.definitions import EVENT_TIMESTAMP, feature_names
from mlstack.models.candidates import make_model
from mlstack.monitoring.drift import PREDICTION
from mlstack.registry.reference import build_reference
from tests.monitoring.helpers import feature_frame

pytestmark = pytest.mark.unit


@pytest.fixture
def fitted() -> tuple[Settings, object, pd.DataFrame]:
    """A small model and training rows over three weekly snapshots, newest shifted."""
    settings = Settings()
    dates = pd.to_datetime(["1998-01-02", "1998-01-09", "1998-01-16"], utc=True)
    parts = [
        feature_frame(settings, 400, seed=i, shift=2.0 if i == 2 else 0.0)
        .drop(columns=PREDICTION)
        .assign(**{EVENT_TIMESTAMP: day})
        for i, day in enumerate(dates)
    ]
    rows = pd.concat(parts, ignore_index=True)
    label = (np.random.default_rng(0).random(len(rows)) < 0.2).astype(int)
    model = make_model("logistic_regression", None, feature_names(settings)).fit(rows, label)
    return settings, model, rows


def test_the_reference_is_the_newest_snapshot_scored_by_the_model(fitted) -> None:
    settings, model, rows = fitted
    reference = build_reference(model, rows, settings).frame
    newest = rows[rows[EVENT_TIMESTAMP] == rows[EVENT_TIMESTAMP].max()]
    assert len(reference) == len(newest) == 400
    features = feature_names(settings)
    pd.testing.assert_frame_equal(
        reference[features], newest[features].reset_index(drop=True), check_dtype=False
    )
    expected = model.predict_proba(newest[features])[:, 1]
    np.testing.assert_allclose(reference[PREDICTION].to_numpy(), expected)


def test_more_snapshots_or_all_of_them_by_settings(fitted) -> None:
    _, model, rows = fitted
    two = Settings(monitoring={"reference_snapshots": 2})
    pooled = Settings(monitoring={"reference_snapshots": None})
    assert len(build_reference(model, rows, two).frame) == 800
    assert len(build_reference(model, rows, pooled).frame) == 1200
    # rows without a snapshot date (a plain frame) are all kept
    plain = rows.drop(columns=EVENT_TIMESTAMP)
    assert len(build_reference(model, plain, Settings()).frame) == 1200
