"""The promotion gate: which model, if any, becomes champion.

The candidates are the tuned challenger and the learned baselines (the L1 logistic
regression); the heuristic (`gate.heuristic`, the recency rule) is the floor every candidate
must clear. One test period gives one figure per model, and a difference of a few thousandths
between two of them is within its noise; so every comparison is a paired bootstrap interval
(`mlstack.models.paired`: customers redrawn `gate.bootstrap_replicates` times, every model
scored on the same redraws) of the difference on `gate.metric`, positive when the candidate
is better. A candidate passes when:

1. it beats the heuristic by `gate.margin`: the interval's lower bound is at least the margin;
2. it is not significantly worse than the best other model: the interval against it does not
   lie wholly below zero;
3. it is not significantly worse than the current champion, re-scored on the same test rows:
   the interval's upper bound is at least `-gate.champion_tolerance` (no champion: passes).

The challenger is tried first, then the learned baselines, best first (unless
`gate.baselines_compete` is off); the first that passes is promoted. So a challenger that
trails the linear model by noise is still promoted, and when the linear model is
significantly better, it becomes the champion instead of leaving nothing to serve. Each rule
leaves a reason with its numbers.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlstack.config import GateSettings
from mlstack.models import paired
from mlstack.models.metrics import HIGHER_IS_BETTER

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
EPSILON = 1e-9  # slack for float noise, so a bound of exactly the margin passes


@dataclass
class Comparison:
    """One rule for one candidate: the difference against another model, with its interval."""

    rule: str  # "heuristic", "best other" or "champion"
    against: str
    difference: float  # candidate minus the other, in the metric's better direction
    low: float
    high: float
    threshold: float
    passed: bool
    reason: str


@dataclass
class GateDecision:
    """Which model to promote (None: keep the champion), why, and the figures used."""

    promote: bool
    candidate: str | None
    reasons: list[str]
    metric: str
    scores: dict[str, float]
    champion: float | None
    confidence: float
    replicates: int
    comparisons: dict[str, list[Comparison]] = field(default_factory=dict)

    @property
    def registered(self) -> str:
        """The model the run registers: the promoted one, else the challenger."""
        return self.candidate or CHALLENGER

    def intervals(self) -> dict[str, float]:
        """The registered model's intervals as flat MLflow metrics, e.g.
        `gate_vs_l1_logistic_low`."""
        out = {}
        for c in self.comparisons.get(self.registered, []):
            key = interval_name(c.rule, c.against)
            out[f"gate_vs_{key}_difference"] = c.difference
            out[f"gate_vs_{key}_low"] = c.low
            out[f"gate_vs_{key}_high"] = c.high
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


def interval_name(rule: str, against: str) -> str:
    """How a comparison is named in metrics and tags: the other model, or `champion`."""
    return "champion" if rule == "champion" else against


def _gain(metric: str, values: np.ndarray | float, other: np.ndarray | float) -> Any:
    return values - other if HIGHER_IS_BETTER[metric] else other - values


def _interval(metric: str, confidence: float, mine: np.ndarray, theirs: np.ndarray):
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(_gain(metric, mine, theirs), [tail, 100 - tail])
    return float(low), float(high)


def decide(
    y: np.ndarray,
    customers: np.ndarray,
    scores: dict[str, np.ndarray],
    champion: np.ndarray | None,
    cfg: GateSettings,
) -> GateDecision:
    """Apply the gate to the test-period scores of the challenger and the baselines (`scores`,
    by model name; the challenger under `CHALLENGER`) and of the champion, if there is one."""
    metric = cfg.metric
    if CHALLENGER not in scores:
        raise ValueError(f"the gate needs the challenger's scores under {CHALLENGER!r}")
    if cfg.heuristic not in scores:
        raise ValueError(
            f"gate.heuristic {cfg.heuristic!r} was not evaluated (models: {', '.join(scores)})"
        )
    everything = dict(scores)
    if champion is not None:
        everything["champion"] = champion
    point, redraws = paired.bootstrap(
        metric, y, customers, everything, cfg.bootstrap_replicates, cfg.seed
    )
    level = f"{cfg.confidence:.0%}"

    def compare(candidate: str, rule: str, other: str, threshold: float, lower: bool):
        diff = float(_gain(metric, point[candidate], point[other]))
        low, high = _interval(metric, cfg.confidence, redraws[candidate], redraws[other])
        bound = low if lower else high
        ok = bound >= threshold - EPSILON
        span = f"{diff:+.4f} ({level} interval {low:+.4f} to {high:+.4f})"
        if rule == "heuristic":
            verdict = "clears" if ok else "does not clear"
            text = (
                f"{candidate} {metric} {point[candidate]:.4f} vs the heuristic {other} "
                f"({point[other]:.4f}): {span}; the lower bound {verdict} the margin "
                f"{threshold:+.4f}"
            )
        else:
            whom = "the champion" if rule == "champion" else f"the best other model {other}"
            verdict = "not significantly worse" if ok else "significantly worse"
            allowed = f" (tolerance {-threshold:.4f})" if rule == "champion" else ""
            text = (
                f"{candidate} {metric} {point[candidate]:.4f} vs {whom} ({point[other]:.4f}): "
                f"{span}: {verdict}{allowed}"
            )
        return Comparison(rule, other, diff, low, high, threshold, ok, text)

    learned = [name for name in scores if name not in (CHALLENGER, cfg.heuristic)]
    if not cfg.baselines_compete:
        learned = []
    learned.sort(key=lambda name: point[name], reverse=HIGHER_IS_BETTER[metric])
    comparisons: dict[str, list[Comparison]] = {}
    promoted = None
    for candidate in [CHALLENGER, *learned]:
        others = [name for name in scores if name != candidate]
        best_other = max(others, key=lambda name: _gain(metric, point[name], 0.0))
        rules = [compare(candidate, "heuristic", cfg.heuristic, cfg.margin, lower=True)]
        if best_other != cfg.heuristic:
            rules.append(compare(candidate, "best other", best_other, 0.0, lower=False))
        if champion is not None:
            rules.append(
                compare(candidate, "champion", "champion", -cfg.champion_tolerance, lower=False)
            )
        comparisons[candidate] = rules
        if all(rule.passed for rule in rules):
            promoted = candidate
            break
    shown = promoted or CHALLENGER
    reasons = [c.reason for c in comparisons[shown]]
    if champion is None:
        reasons.append("no champion yet: nothing to compare against, the champion rule passes")
    if promoted is None:
        tried = ", ".join(comparisons)
        reasons.append(f"no candidate passed ({tried}): the champion stays")
    elif promoted != CHALLENGER:
        reasons.insert(0, f"the challenger did not pass: {_failures(comparisons[CHALLENGER])}")
    decision = GateDecision(
        promote=promoted is not None,
        candidate=promoted,
        reasons=reasons,
        metric=metric,
        scores=point,
        champion=point.get("champion"),
        confidence=cfg.confidence,
        replicates=cfg.bootstrap_replicates,
        comparisons=comparisons,
    )
    log.info("gate: %s; %s", f"promote {promoted}" if promoted else "keep", "; ".join(reasons))
    return decision


def _failures(rules: list[Comparison]) -> str:
    return "; ".join(rule.reason for rule in rules if not rule.passed)
