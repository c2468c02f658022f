"""The policy on its own: each rule, its reason, and the minimum time between retrains."""

from __future__ import annotations

import pytest

from mlstack.config import DriftPolicySettings
from mlstack.monitoring.drift import ColumnDrift
from mlstack.monitoring.policy import decide

pytestmark = pytest.mark.unit


def _columns(drifted: int, total: int = 10) -> list[ColumnDrift]:
    return [
        ColumnDrift(
            f"f{i}",
            "numerical",
            "wasserstein",
            0.5 if i < drifted else 0.01,
            0.1,
            i < drifted,
            "test",
            0.0,
            0.0,
        )
        for i in range(total)
    ]


POLICY = DriftPolicySettings(performance_floor=0.3)


def test_shares_map_to_actions() -> None:
    assert decide(_columns(0), None, None, None, 90, POLICY).action == "none"
    assert decide(_columns(2), None, None, None, 90, POLICY).action == "alert"
    retrain = decide(_columns(5), None, None, None, 90, POLICY)
    assert retrain.action == "retrain"
    assert retrain.reasons == ["5/10 features drifted (50% >= 50%): f0, f1, f2, f3, f4"]


def test_performance_rules() -> None:
    floor = decide(_columns(0), None, {"pr_auc": 0.25}, None, 90, POLICY)
    assert floor.action == "retrain"
    assert floor.reasons == ["realised PR-AUC 0.250 < floor 0.3"]
    drop = decide(_columns(0), None, {"pr_auc": 0.40}, 0.50, 90, POLICY)
    assert drop.action == "retrain" and "trails the model's test 0.500 by 0.100" in drop.reasons[0]
    fine = decide(_columns(0), None, {"pr_auc": 0.48, "calibration_error": 0.02}, 0.5, 90, POLICY)
    assert fine.action == "none"
    calibration = decide(
        _columns(0), None, {"pr_auc": 0.48, "calibration_error": 0.2}, 0.5, 90, POLICY
    )
    assert calibration.action == "alert"


def test_minimum_time_between_retrains_holds_a_retrain() -> None:
    held = decide(_columns(8), None, None, None, 10, POLICY)
    assert held.action == "alert"
    assert held.reasons[-1] == "retrain held: the model was trained 10 days ago (< 28)"
    assert decide(_columns(8), None, None, None, 28, POLICY).action == "retrain"
