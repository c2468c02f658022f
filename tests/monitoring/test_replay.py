"""The replay on the 1,000-customer sample for a handful of weeks: three policies on the
same timeline, point-in-time training, and the table and the plot it writes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pandas as pd
import pytest

from mlstack.config import Settings
from mlstack.monitoring.replay import POLICIES, run_replay

pytestmark = [pytest.mark.component, pytest.mark.slow]


def test_replay_a_few_weeks(project: Callable[..., Settings]) -> None:
    settings = project(
        "monitoring.replay_start=1997-06-03",
        "monitoring.replay_schedule_weeks=2",
        "monitoring.policy.min_days_between_retrains=14",
        "monitoring.reference_rows=2000",
    )
    out = settings.artifacts_dir / "replay"
    result = run_replay(settings, out, weeks=5, progress=False)

    weekly = result.weekly
    assert sorted(weekly["policy"].unique()) == sorted(POLICIES)
    assert (weekly.groupby("policy").size() == 5).all()
    weeks = pd.to_datetime(weekly["week"])
    assert weeks.min() == pd.Timestamp("1997-06-06", tz="UTC")  # first snapshot on or after
    # never: one model all along; schedule: a retrain every second week (none in the last)
    never = weekly[weekly["policy"] == "never"]
    assert never["model_trained_at"].nunique() == 1 and not never["retrained"].any()
    schedule = weekly[weekly["policy"] == "schedule"]
    assert schedule["retrained"].tolist() == [False, True, False, True, False]
    # a model retrained in week t serves from week t + 1, fitted on labels matured by t
    served = schedule["model_trained_at"].tolist()
    assert served[2] == schedule["week"].iloc[1] and served[4] == schedule["week"].iloc[3]
    assert (pd.to_datetime(schedule["model_trained_at"]) <= weeks[schedule.index]).all()
    drift = weekly[weekly["policy"] == "drift"]
    assert drift["action"].isin(["none", "alert", "retrain"]).all()
    assert drift["drifted_share"].between(0, 1).all()
    assert weekly["pr_auc"].between(0, 1).all()

    summary = result.summary
    assert summary.loc["never", "retrains"] == 0 and summary.loc["schedule", "retrains"] == 2
    assert summary.loc["drift", "retrains"] == drift["retrained"].sum()
    assert summary.loc["schedule", "compute_seconds"] > 0
    for name in ("weekly", "summary", "periods", "decisions", "plot", "summary_md"):
        assert result.files[name].stat().st_size > 0, name
    saved = json.loads(result.files["summary"].read_text())
    assert set(saved["policies"]) == set(POLICIES)
    assert result.files["plot"].read_bytes()[:4] == b"\x89PNG"
    assert "| drift |" in result.markdown()


def test_a_retrain_uses_only_labels_matured_by_then(project: Callable[..., Settings]) -> None:
    from mlstack.features.definitions import EVENT_TIMESTAMP
    from mlstack.monitoring.replay import load_timeline, training_rows

    settings = project("monitoring.replay_max_train_rows=1000")
    _, table = load_timeline(settings)
    table[EVENT_TIMESTAMP] = pd.to_datetime(table[EVENT_TIMESTAMP], utc=True)
    by_date = table.groupby(EVENT_TIMESTAMP).indices
    dates = sorted(by_date)
    at = pd.Timestamp("1997-09-05", tz="UTC")
    rows = training_rows(table, by_date, dates, at, settings)
    horizon = pd.Timedelta(days=settings.features.horizon_days)
    assert (rows[EVENT_TIMESTAMP] + horizon <= at).all()
    assert rows[EVENT_TIMESTAMP].max() == max(d for d in dates if d + horizon <= at)
    assert len(rows) == 1000  # the cap, sampled
    assert rows["purchase_within_30d"].notna().all()
    with pytest.raises(ValueError, match="no labelled snapshot has matured"):
        training_rows(table, by_date, dates, dates[0], settings)
