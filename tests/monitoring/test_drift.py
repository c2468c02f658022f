"""Drift statistics: the fast path agrees with Evidently, and the policy acts on injected
drift (shifted distributions, a new category, a dead feature) but not on an unchanged window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlstack.config import load_settings
from mlstack.features.definitions import feature_names
from mlstack.monitoring import MonitoringError
from mlstack.monitoring.check import assess
from mlstack.monitoring.drift import (
    column_drift,
    evidently_values,
    jensenshannon_categories,
    wasserstein_normed,
)
from mlstack.monitoring.window import feature_kinds
from tests.monitoring.helpers import feature_frame

pytestmark = pytest.mark.unit

SETTINGS = load_settings(overrides=["monitoring.categorical_columns=[channel]"])


def _with_channel(frame: pd.DataFrame, seed: int, categories: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return frame.assign(channel=rng.choice(categories, len(frame), p=None))


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return _with_channel(feature_frame(SETTINGS, 6000, seed=1), 1, ["web", "store", "phone"])


def test_unchanged_window_decides_nothing(reference: pd.DataFrame) -> None:
    window = _with_channel(feature_frame(SETTINGS, 2000, seed=2), 2, ["web", "store", "phone"])
    result = assess(reference, window, SETTINGS, days_since_training=60)
    assert result.drifted_share == 0.0, [c.reason for c in result.features if c.drifted]
    assert result.prediction is not None and not result.prediction.drifted
    assert result.decision.action == "none"


def test_shifted_window_triggers_a_retrain(reference: pd.DataFrame) -> None:
    window = _with_channel(
        feature_frame(SETTINGS, 2000, seed=3, shift=0.5), 3, ["web", "store", "phone"]
    )
    result = assess(reference, window, SETTINGS, days_since_training=60)
    assert result.drifted_share > 0.9
    assert result.prediction.drifted
    assert result.decision.action == "retrain"
    assert any("features drifted" in r for r in result.decision.reasons)
    assert any("predictions drifted" in r for r in result.decision.reasons)


def test_new_category_and_dead_feature_are_drift(reference: pd.DataFrame) -> None:
    window = _with_channel(feature_frame(SETTINGS, 2000, seed=4), 4, ["web", "store", "app"])
    dead, empty = feature_names(SETTINGS)[:2]
    window[dead] = 0  # a feature job that broke and writes zeros
    window[empty] = np.nan  # a feature no longer filled
    result = assess(reference, window, SETTINGS, days_since_training=60)
    by_column = {c.column: c for c in result.features}
    assert by_column["channel"].kind == "categorical"
    assert by_column["channel"].drifted and by_column["channel"].method == "jensenshannon"
    assert by_column[dead].drifted and by_column[dead].reason.startswith("dead: constant")
    assert by_column[empty].drifted and "no values" in by_column[empty].reason
    drifted = {c.column for c in result.features if c.drifted}
    assert drifted == {"channel", dead, empty}
    # 3 of 25 columns is below the alert share, but a dead feature is always worth an alert
    assert result.drifted_share < SETTINGS.monitoring.policy.alert_drifted_share
    assert result.decision.action == "alert"
    assert any(r.startswith("dead features") and dead in r for r in result.decision.reasons)


def test_alert_share_and_cooldown(reference: pd.DataFrame) -> None:
    window = feature_frame(SETTINGS, 2000, seed=5, shift=0.5).assign(
        channel=reference["channel"].iloc[:2000].to_numpy()
    )
    recent = assess(reference, window, SETTINGS, days_since_training=3)
    assert recent.decision.action == "alert"
    assert any(r.startswith("retrain held") for r in recent.decision.reasons)


def test_empty_window_is_a_clear_error(reference: pd.DataFrame) -> None:
    with pytest.raises(MonitoringError, match="empty window"):
        assess(reference, reference.head(5), SETTINGS)
    with pytest.raises(MonitoringError, match="missing reference"):
        assess(reference.head(0), reference, SETTINGS)


def test_fast_statistics_equal_scipy_and_evidently(reference: pd.DataFrame) -> None:
    window = _with_channel(
        feature_frame(SETTINGS, 3000, seed=6, shift=0.2), 6, ["web", "store", "app"]
    )
    kinds = feature_kinds(SETTINGS, list(window.columns))
    kinds["probability"] = "numerical"
    ours = {}
    for column, kind in kinds.items():
        method = "jensenshannon" if kind == "categorical" else "wasserstein"
        ours[column] = column_drift(
            column, reference[column], window[column], kind, method, 0.1
        ).statistic
    theirs = evidently_values(reference, window, kinds, SETTINGS.monitoring)
    assert set(theirs) == set(kinds)
    for column in kinds:
        assert ours[column] == pytest.approx(theirs[column], rel=1e-9, abs=1e-12), column
    # and the normed Wasserstein distance is scipy's, over the reference std
    a, b = reference["recency_days"].to_numpy(float), window["recency_days"].to_numpy(float)
    assert wasserstein_normed(a, b) == pytest.approx(
        stats.wasserstein_distance(a, b) / np.std(a), rel=1e-12
    )
    same = jensenshannon_categories(np.array(["a", "b"] * 50), np.array(["b", "a"] * 30))
    assert same == pytest.approx(0.0, abs=1e-12)


def test_a_mapped_country_is_tested_as_a_category_where_the_window_has_it() -> None:
    settings = load_settings(overrides=["source.columns.country=country"])
    countries = ["United Kingdom", "France", "Germany"]
    rng = np.random.default_rng(3)
    reference = feature_frame(settings, 4000, seed=1).assign(
        country=rng.choice(countries, 4000, p=[0.8, 0.1, 0.1])
    )
    served = feature_frame(settings, 1500, seed=2)  # the payload log: features only
    moved = served.assign(country=rng.choice(countries, 1500, p=[0.3, 0.35, 0.35]))

    without = assess(reference, served, settings, days_since_training=10)
    tested = {c.column: c for c in assess(reference, moved, settings).features}

    assert "country" not in {c.column for c in without.features}  # not a dead feature
    assert tested["country"].kind == "categorical" and tested["country"].drifted
