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
    assert "no champion yet" in decision.reasons[-1]
    assert "beats the best baseline l1_logistic (0.3000)" in decision.reasons[0]


def test_beating_the_baseline_but_trailing_the_champion_is_not_promoted() -> None:
    decision = decide({"pr_auc": 0.40}, BASELINES, {"pr_auc": 0.42}, gate())
    assert not decision.promote
    assert decision.champion == 0.42
    assert decision.reasons[-1] == (
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
    # one reason per baseline, the best first, then the champion's
    assert len(failing_both.reasons) == 3
    assert failing_both.reasons[0].startswith("pr_auc 0.3100 does not beat the best baseline l1")
    assert failing_both.reasons[1].startswith("pr_auc 0.3100 beats baseline recency_heuristic")
    assert failing_both.reasons[2].startswith("pr_auc 0.3100 vs champion 0.5000")


def per_baseline(heuristic: float, l1: float) -> Settings:
    return Settings(
        gate={
            "baseline_margin": 0.5,  # would fail anything; every baseline is named below
            "baseline_margins": {"recency_heuristic": heuristic, "l1_logistic": l1},
        }
    )


@pytest.mark.parametrize(
    ("challenger", "heuristic_margin", "promote", "failing"),
    [
        (0.31, 0.05, True, None),  # +0.06 over the heuristic, +0.01 over L1
        (0.30, 0.05, True, None),  # a tie with L1 meets its zero margin
        (0.2999, 0.04, False, "l1_logistic"),
        (0.40, 0.2, False, "recency_heuristic"),  # +0.15 over the heuristic, 0.2 needed
    ],
)
def test_each_baseline_has_its_own_margin(
    challenger: float, heuristic_margin: float, promote: bool, failing: str | None
) -> None:
    settings = per_baseline(heuristic_margin, 0.0)
    decision = decide({"pr_auc": challenger}, BASELINES, None, settings)
    assert decision.promote is promote
    assert decision.thresholds["baseline_margin.l1_logistic"] == 0.0
    missed = [r for r in decision.reasons if "does not beat" in r]
    assert len(missed) == (1 if failing else 0)
    if failing:
        assert failing in missed[0]


def test_a_margin_for_an_unknown_baseline_is_an_error() -> None:
    settings = Settings(gate={"baseline_margins": {"recency": 0.05}})
    with pytest.raises(ValueError, match="not evaluated: recency"):
        decide({"pr_auc": 0.4}, BASELINES, None, settings)


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
    assert data["thresholds"] == {
        "baseline_margin.l1_logistic": 0.05,
        "baseline_margin.recency_heuristic": 0.05,
        "champion_tolerance": 0.0,
    }
    assert len(data["reasons"]) == 3
