"""The promotion gate: may a challenger replace the champion?

Two rules on the gate metric, both measured on the same test data:

1. the challenger beats every baseline by at least its margin: ``gate.baseline_margins``
   names a margin per baseline, and ``gate.baseline_margin`` is the margin of any baseline
   not named there (so with no per-baseline margins, the challenger must beat the best
   baseline by ``baseline_margin``);
2. the challenger is not worse than the current champion by more than
   ``gate.champion_tolerance`` (with no champion yet, this rule passes).

"Better" follows the metric's direction (`HIGHER_IS_BETTER`). Each rule leaves a reason
with the numbers, so a refusal explains itself.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from mlstack.config import Settings
from mlstack.models.metrics import HIGHER_IS_BETTER, better

log = logging.getLogger(__name__)

# slack for float noise, so a difference of exactly the margin passes
EPSILON = 1e-9


class Scored(NamedTuple):
    name: str
    value: float


@dataclass
class GateDecision:
    """Whether to promote, why (one reason per rule, with numbers) and the figures used."""

    promote: bool
    reasons: list[str]
    metric: str
    challenger: float
    best_baseline: Scored
    champion: float | None
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        out = asdict(self)
        out["best_baseline"] = self.best_baseline._asdict()
        return out


def _value(metrics: dict[str, float], metric: str, whose: str) -> float:
    if metric not in metrics:
        raise ValueError(f"{whose} metrics lack {metric!r} (have: {', '.join(sorted(metrics))})")
    value = float(metrics[metric])
    if math.isnan(value):
        raise ValueError(f"{whose} {metric} is NaN")
    return value


def gain(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old` on `metric` (negative when worse)."""
    return new - old if HIGHER_IS_BETTER[metric] else old - new


def best_of(baselines: dict[str, dict[str, float]], metric: str) -> Scored:
    """The baseline with the best `metric`."""
    if not baselines:
        raise ValueError("the gate needs at least one baseline")
    scored = [Scored(name, _value(m, metric, f"baseline {name}")) for name, m in baselines.items()]
    best = scored[0]
    for s in scored[1:]:
        if better(metric, s.value, best.value):
            best = s
    return best


def margins(baseline_names: list[str], settings: Settings) -> dict[str, float]:
    """The margin the challenger must beat each baseline by (see the module doc)."""
    cfg = settings.gate
    unknown = sorted(set(cfg.baseline_margins) - set(baseline_names))
    if unknown:
        raise ValueError(
            f"gate.baseline_margins names baselines that were not evaluated: {', '.join(unknown)} "
            f"(evaluated: {', '.join(baseline_names)})"
        )
    return {name: cfg.baseline_margins.get(name, cfg.baseline_margin) for name in baseline_names}


def _baseline_rule(
    metric: str, challenger: float, baseline: Scored, margin: float, best: bool
) -> tuple[bool, str]:
    diff = gain(metric, challenger, baseline.value)
    ok = diff >= margin - EPSILON
    verdict = "beats" if ok else "does not beat"
    which = "the best baseline" if best else "baseline"
    return ok, (
        f"{metric} {challenger:.4f} {verdict} {which} {baseline.name} ({baseline.value:.4f}) "
        f"by the margin {margin:.4f}: difference {diff:+.4f}"
    )


def _champion_rule(
    metric: str, challenger: float, champion: float | None, tolerance: float
) -> tuple[bool, str]:
    if champion is None:
        return True, "no champion yet: nothing to compare against, the champion rule passes"
    diff = gain(metric, challenger, champion)
    ok = diff >= -tolerance - EPSILON
    verdict = "is within" if ok else "trails the champion by more than"
    return ok, (
        f"{metric} {challenger:.4f} vs champion {champion:.4f}: difference {diff:+.4f}, "
        f"{verdict} the tolerance {tolerance:.4f}"
    )


def decide(
    challenger_metrics: dict[str, float],
    baseline_metrics: dict[str, dict[str, float]],
    champion_metrics: dict[str, float] | None,
    settings: Settings,
) -> GateDecision:
    """Apply the gate to test metrics of the challenger, the baselines and the champion."""
    cfg = settings.gate
    metric = cfg.metric
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"gate metric {metric!r} is not one of {', '.join(HIGHER_IS_BETTER)}")
    challenger = _value(challenger_metrics, metric, "challenger")
    best = best_of(baseline_metrics, metric)
    champion = None if champion_metrics is None else _value(champion_metrics, metric, "champion")

    margin_of = margins(list(baseline_metrics), settings)
    # the best baseline first, then the others in the order given
    order = [best.name, *(name for name in baseline_metrics if name != best.name)]
    baseline_rules = [
        _baseline_rule(
            metric,
            challenger,
            Scored(name, _value(baseline_metrics[name], metric, f"baseline {name}")),
            margin_of[name],
            best=name == best.name,
        )
        for name in order
    ]
    keeps_up, why_champion = _champion_rule(metric, challenger, champion, cfg.champion_tolerance)
    decision = GateDecision(
        promote=all(ok for ok, _ in baseline_rules) and keeps_up,
        reasons=[*(why for _, why in baseline_rules), why_champion],
        metric=metric,
        challenger=challenger,
        best_baseline=best,
        champion=champion,
        thresholds={
            **{f"baseline_margin.{name}": margin_of[name] for name in order},
            "champion_tolerance": cfg.champion_tolerance,
        },
    )
    log.info("gate: %s; %s", "promote" if decision.promote else "keep", "; ".join(decision.reasons))
    return decision
