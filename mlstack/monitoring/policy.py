"""The retraining policy: from a drift summary to nothing, an alert or a retrain, with reasons.

Pure: it reads the summary, the policy settings and the time since the last training, and
says what to do and why; recording, alerting and triggering happen elsewhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mlstack.config import DriftPolicySettings
from mlstack.monitoring.drift import ColumnDrift

Action = Literal["none", "alert", "retrain"]
_RANK = {"none": 0, "alert": 1, "retrain": 2}


@dataclass
class Decision:
    """What the policy asks for and every reason that led there."""

    action: Action
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drifted_share(columns: list[ColumnDrift]) -> float:
    """Share of the tested columns that drifted (0 when none were tested)."""
    return sum(c.drifted for c in columns) / len(columns) if columns else 0.0


def decide(
    features: list[ColumnDrift],
    prediction: ColumnDrift | None,
    performance: dict[str, float] | None,
    model_test_pr_auc: float | None,
    days_since_training: float | None,
    policy: DriftPolicySettings,
) -> Decision:
    """Apply the policy (see `DriftPolicySettings` for each rule)."""
    action: Action = "none"
    reasons: list[str] = []

    def ask(wanted: Action, reason: str) -> None:
        nonlocal action
        reasons.append(reason)
        if _RANK[wanted] > _RANK[action]:
            action = wanted

    share = drifted_share(features)
    drifted = [c.column for c in features if c.drifted]
    named = ", ".join(drifted[:8]) + (" ..." if len(drifted) > 8 else "")
    if share >= policy.retrain_drifted_share and drifted:
        ask(
            "retrain",
            f"{len(drifted)}/{len(features)} features drifted ({share:.0%} >= "
            f"{policy.retrain_drifted_share:.0%}): {named}",
        )
    elif share >= policy.alert_drifted_share and drifted:
        ask(
            "alert",
            f"{len(drifted)}/{len(features)} features drifted ({share:.0%} >= "
            f"{policy.alert_drifted_share:.0%}): {named}",
        )
    dead = [c.column for c in features if c.reason.startswith("dead")]
    if dead and policy.alert_on_dead_feature:
        ask("alert", f"dead features (empty or constant in the window): {', '.join(dead)}")
    if prediction is not None and prediction.drifted:
        wanted: Action = "retrain" if policy.retrain_on_prediction_drift else "alert"
        ask(wanted, f"predictions drifted: {prediction.reason}")
    if performance:
        pr_auc = performance.get("pr_auc")
        floor = policy.performance_floor
        if pr_auc is not None and floor is not None and pr_auc < floor:
            ask("retrain", f"realised PR-AUC {pr_auc:.3f} < floor {policy.performance_floor}")
        if pr_auc is not None and model_test_pr_auc is not None:
            drop = model_test_pr_auc - pr_auc
            if drop > policy.max_performance_drop:
                ask(
                    "retrain",
                    f"realised PR-AUC {pr_auc:.3f} trails the model's test "
                    f"{model_test_pr_auc:.3f} by {drop:.3f} > {policy.max_performance_drop}",
                )
        calibration = performance.get("calibration_error")
        if calibration is not None and calibration > policy.max_calibration_error:
            ask(
                "alert",
                f"realised calibration error {calibration:.3f} > {policy.max_calibration_error}",
            )
    if (
        action == "retrain"
        and days_since_training is not None
        and days_since_training < policy.min_days_between_retrains
    ):
        action = "alert"
        reasons.append(
            f"retrain held: the model was trained {days_since_training:.0f} days ago "
            f"(< {policy.min_days_between_retrains})"
        )
    if not reasons:
        reasons.append("no drift, prediction shift or performance problem found")
    return Decision(action, reasons)
