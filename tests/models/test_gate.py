"""The promotion gate: paired bootstrap intervals over customers decide, not point figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mlstack.config import GateSettings, Settings
from mlstack.models.gate import CHALLENGER, decide

pytestmark = pytest.mark.unit

CUSTOMERS = 3000
SNAPSHOTS = 4


def gate(**values) -> GateSettings:
    return Settings(gate={"margin": 0.02, "bootstrap_replicates": 400, **values}).gate


@pytest.fixture(scope="module")
def period():
    """A test period: customers with a few snapshots each, a latent propensity per customer,
    and scores of models of known quality."""
    rng = np.random.default_rng(7)
    customers = np.repeat(np.arange(CUSTOMERS), SNAPSHOTS)
    latent = np.repeat(rng.normal(size=CUSTOMERS), SNAPSHOTS) + rng.normal(size=len(customers))
    y = (latent + rng.normal(size=len(customers)) > 1.6).astype(int)

    def model(noise: float, seed: int) -> np.ndarray:
        return latent + np.random.default_rng(seed).normal(scale=noise, size=len(latent))

    return {
        "y": y,
        "customers": customers,
        "good": model(0.5, 1),
        "good_twin": model(0.5, 2),  # as good: differs from `good` by noise only
        "weak": model(2.5, 3),
        "useless": np.random.default_rng(4).random(len(y)),
    }


def scores(period, challenger, l1, heuristic="weak"):
    return {
        CHALLENGER: period[challenger],
        "l1_logistic": period[l1],
        "recency_heuristic": period[heuristic],
    }


def test_a_challenger_within_noise_of_the_best_model_is_promoted(period) -> None:
    y, customers = period["y"], period["customers"]
    decision = decide(y, customers, scores(period, "good_twin", "good"), None, gate())
    best = decision.comparisons[CHALLENGER][1]
    assert best.rule == "best other" and best.against == "l1_logistic"
    assert best.low < 0 < best.high, best  # the interval straddles zero
    assert decision.promote and decision.candidate == CHALLENGER
    assert "not significantly worse" in best.reason and "95% interval" in best.reason
    # the figures are sklearn's on the data as it is
    assert decision.scores[CHALLENGER] == pytest.approx(
        average_precision_score(y, period["good_twin"])
    )
    json.dumps(decision.to_dict())  # logged as gate_decision.json


def test_a_significantly_worse_challenger_is_refused_and_the_champion_stays(period) -> None:
    y, customers = period["y"], period["customers"]
    settings = gate(baselines_compete=False)
    decision = decide(
        y, customers, scores(period, "useless", "weak", "weak"), period["good"], settings
    )
    assert not decision.promote and decision.candidate is None
    rules = {c.rule: c for c in decision.comparisons[CHALLENGER]}
    assert not rules["heuristic"].passed
    assert not rules["champion"].passed and rules["champion"].high < 0
    assert decision.reasons[-1].startswith("no candidate passed")


def test_a_baseline_that_is_significantly_better_becomes_champion(period) -> None:
    y, customers = period["y"], period["customers"]
    decision = decide(y, customers, scores(period, "weak", "good", "useless"), None, gate())
    assert decision.promote and decision.candidate == "l1_logistic"
    assert decision.registered == "l1_logistic"
    assert decision.reasons[0].startswith("the challenger did not pass")
    assert {c.rule for c in decision.comparisons["l1_logistic"]} == {"heuristic", "best other"}
    intervals = decision.intervals()  # the registered model's, for MLflow
    assert intervals["gate_vs_recency_heuristic_low"] > 0.02


def test_the_heuristic_margin_is_read_at_the_intervals_lower_bound(period) -> None:
    y, customers = period["y"], period["customers"]
    both = scores(period, "good", "good_twin")
    clears = decide(y, customers, both, None, gate()).comparisons[CHALLENGER][0]
    assert clears.rule == "heuristic" and clears.passed
    # a margin between the point difference and the lower bound: the point clears, the
    # interval does not, so the rule fails
    margin = (clears.low + clears.difference) / 2
    tight = decide(y, customers, both, None, gate(margin=margin, baselines_compete=False))
    assert not tight.comparisons[CHALLENGER][0].passed and not tight.promote


def test_a_champion_within_noise_does_not_block_and_the_tolerance_widens_the_rule(period):
    y, customers = period["y"], period["customers"]
    twin = decide(y, customers, scores(period, "good", "weak"), period["good_twin"], gate())
    assert twin.promote and twin.candidate == CHALLENGER
    alone = gate(baselines_compete=False)
    worse = decide(y, customers, scores(period, "weak", "weak", "useless"), period["good"], alone)
    champion = worse.comparisons[CHALLENGER][-1]
    assert champion.rule == "champion" and not worse.promote
    tolerant = gate(baselines_compete=False, champion_tolerance=-champion.low + 0.01)
    assert decide(
        y, customers, scores(period, "weak", "weak", "useless"), period["good"], tolerant
    ).promote


def test_lower_is_better_metrics_flip_the_direction(period) -> None:
    y, customers = period["y"], period["customers"]
    probability = {k: 1 / (1 + np.exp(-(period[k] - 1.6))) for k in ("good", "weak", "useless")}
    period_p = {**period, **probability}
    decision = decide(
        y,
        customers,
        scores(period_p, "good", "weak", "useless"),
        None,
        gate(metric="brier", margin=0.0),
    )
    assert decision.promote and decision.candidate == CHALLENGER
    assert decision.comparisons[CHALLENGER][0].difference > 0  # better: a lower Brier score


def test_bad_gate_settings_are_named() -> None:
    with pytest.raises(ValueError, match="metric"):
        Settings(gate={"metric": "lift_at_top"})
    with pytest.raises(ValueError, match="baseline_margin"):
        Settings(gate={"baseline_margin": 0.1})
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"gate\.heuristic 'recency_heuristic' was not evaluated"):
        decide(y, np.arange(4), {CHALLENGER: y * 1.0, "l1_logistic": y * 1.0}, None, gate())
