"""The promotion gate: margin over the best baseline, tolerance against the champion."""

from __future__ import annotations

import json

import pytest

from mlstack.config import Settings
from mlstack.models.gate import decide

BASELINES = {
    "recency_heuristic": {"pr_auc": 0.25, "brier": 0.060},
    "l1_logistic": {"pr_auc": 0.30, "brier": 0.055},
}


def gate(metric: str = "pr_auc", margin: float = 0.05, tolerance: float = 0.0) -> Settings:
    return Settings(
        gate={"metric": metric, "baseline_margin": margin, "champion_tolerance": tolerance}
    )


def test_a_challenger_below_the_margin_is_not_promoted() -> None:
    decision = decide({"pr_auc": 0.32}, BASELINES, None, gate())
    assert not decision.promote
    assert decision.best_baseline == ("l1_logistic", 0.30)
    assert decision.reasons[0] == (
        "pr_auc 0.3200 does not beat the best baseline l1_logistic (0.3000) by the margin "
        "0.0500: difference +0.0200"
    )


def test_no_champion_passes_that_rule_and_says_so() -> None:
    decision = decide({"pr_auc": 0.40}, BASELINES, None, gate())
    assert decision.promote
    assert decision.champion is None
    assert "no champion yet" in decision.reasons[1]
    assert "beats the best baseline l1_logistic (0.3000)" in decision.reasons[0]


def test_beating_the_baseline_but_trailing_the_champion_is_not_promoted() -> None:
    decision = decide({"pr_auc": 0.40}, BASELINES, {"pr_auc": 0.42}, gate())
    assert not decision.promote
    assert decision.champion == 0.42
    assert decision.reasons[1] == (
        "pr_auc 0.4000 vs champion 0.4200: difference -0.0200, trails the champion by more "
        "than the tolerance 0.0000"
    )


@pytest.mark.parametrize(
    ("champion", "tolerance", "promote"),
    [
        (0.42, 0.03, True),  # trails by 0.02, allowed 0.03
        (0.42, 0.02, True),  # exactly the tolerance
        (0.42, 0.01, False),
        (0.40, 0.0, True),  # a tie with the champion is not worse
        (0.35, 0.0, True),
    ],
)
def test_champion_tolerance(champion: float, tolerance: float, promote: bool) -> None:
    decision = decide({"pr_auc": 0.40}, BASELINES, {"pr_auc": champion}, gate(tolerance=tolerance))
    assert decision.promote is promote


def test_a_gain_of_exactly_the_margin_passes() -> None:
    assert decide({"pr_auc": 0.35}, BASELINES, None, gate()).promote
    assert not decide({"pr_auc": 0.3499}, BASELINES, None, gate()).promote


def test_lower_is_better_metrics_flip_the_direction() -> None:
    settings = gate(metric="brier", margin=0.005, tolerance=0.001)
    decision = decide({"brier": 0.049}, BASELINES, {"brier": 0.0485}, settings)
    assert decision.promote
    assert decision.best_baseline == ("l1_logistic", 0.055)
    assert not decide({"brier": 0.052}, BASELINES, None, settings).promote
    assert not decide({"brier": 0.049}, BASELINES, {"brier": 0.047}, settings).promote


def test_both_rules_must_hold() -> None:
    failing_both = decide({"pr_auc": 0.31}, BASELINES, {"pr_auc": 0.5}, gate())
    assert not failing_both.promote
    assert len(failing_both.reasons) == 2


@pytest.mark.parametrize(
    ("challenger", "baselines", "champion", "who"),
    [
        ({"roc_auc": 0.9}, BASELINES, None, "challenger"),
        ({"pr_auc": 0.4}, {"l1_logistic": {"roc_auc": 0.8}}, None, "baseline l1_logistic"),
        ({"pr_auc": 0.4}, BASELINES, {"roc_auc": 0.8}, "champion"),
        ({"pr_auc": float("nan")}, BASELINES, None, "challenger"),
    ],
)
def test_a_missing_metric_is_an_error(challenger, baselines, champion, who: str) -> None:
    with pytest.raises(ValueError, match=who):
        decide(challenger, baselines, champion, gate())


def test_no_baselines_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one baseline"):
        decide({"pr_auc": 0.4}, {}, None, gate())


def test_to_dict_is_json_ready() -> None:
    decision = decide({"pr_auc": 0.40}, BASELINES, {"pr_auc": 0.39}, gate())
    data = json.loads(json.dumps(decision.to_dict()))
    assert data["promote"] is True
    assert data["best_baseline"] == {"name": "l1_logistic", "value": 0.30}
    assert data["champion"] == 0.39
    assert data["metric"] == "pr_auc"
    assert data["thresholds"] == {"baseline_margin": 0.05, "champion_tolerance": 0.0}
    assert len(data["reasons"]) == 2
