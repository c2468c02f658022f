"""The one search space (``tuning.space``) as Optuna distributions, grids and Katib parameters.

Everything that samples hyperparameters reads them from here, so a local Optuna study and a
Katib Experiment on a cluster search the same names, bounds, types and steps.

Mapping rules, per ``ParamSpec``:

- ``int`` → ``IntDistribution(low, high, step, log)``; Katib ``int`` with min/max/step.
- ``float`` → ``FloatDistribution(low, high, step, log)``; Katib ``double`` with min/max/step.
- ``categorical`` → ``CategoricalDistribution(choices)``; Katib ``categorical`` with the
  choices as strings.
- **Log scale on Katib**: every ``int``/``double`` parameter carries
  ``feasibleSpace.distribution``: ``logUniform`` for a ``log: true`` parameter, ``uniform``
  otherwise (Katib's ``Distribution`` enum, read by Katib 0.18 and later; older Katib
  controllers drop the field and sample uniformly). Categorical and grid (``discrete``)
  parameters are lists and carry none. The parameters are plain dicts, the API's JSON, so the
  field is there whichever Katib SDK version is installed (0.14's models lack it).
- **Grid**: a parameter with ``step`` contributes ``low, low + step, …, ≤ high``; a ``log``
  parameter without ``step`` contributes ``GRID_LOG_POINTS`` log-spaced points from ``low``
  to ``high`` (rounded and de-duplicated for ints); a categorical contributes its choices.
  Anything else cannot be gridded and is an error naming the parameter. For Katib's grid,
  every numeric parameter becomes a ``discrete`` list of exactly these points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from mlstack.config import ParamSpec, TuningSettings

# tuning.algorithm -> the algorithmName Katib's suggestion services accept
KATIB_ALGORITHMS: dict[str, str] = {"tpe": "tpe", "random": "random", "grid": "grid"}
# points per log-scale parameter without a step, in a grid
GRID_LOG_POINTS = 5
# significant digits kept for float grid points (drops 0.30000000000000004-style noise)
_GRID_DIGITS = 12

Value = str | int | float


# -- Optuna --------------------------------------------------------------------------------
def optuna_distributions(space: Sequence[ParamSpec]) -> dict[str, BaseDistribution]:
    """The Optuna distribution of each parameter, by name."""
    return {spec.name: _distribution(spec) for spec in space}


def _distribution(spec: ParamSpec) -> BaseDistribution:
    try:
        if spec.type == "categorical":
            return CategoricalDistribution(list(spec.choices or []))
        if spec.type == "int":
            step = _integral(spec, "step", spec.step) if spec.step is not None else 1
            low, high = _integral(spec, "low", spec.low), _integral(spec, "high", spec.high)
            return IntDistribution(low, high, log=spec.log, step=step)
        return FloatDistribution(float(spec.low), float(spec.high), log=spec.log, step=spec.step)
    except ValueError as err:
        raise ValueError(f"parameter {spec.name}: {err}") from err


def _integral(spec: ParamSpec, field: str, value: float | None) -> int:
    if value is None or not float(value).is_integer():
        raise ValueError(f"int parameter needs a whole-number `{field}`, got {value!r}")
    return int(value)


def suggest(trial: optuna.Trial, space: Sequence[ParamSpec]) -> dict[str, Any]:
    """One value per parameter, drawn by the trial's sampler from the space."""
    params: dict[str, Any] = {}
    for name, dist in optuna_distributions(space).items():
        if isinstance(dist, IntDistribution):
            params[name] = trial.suggest_int(
                name, dist.low, dist.high, step=dist.step, log=dist.log
            )
        elif isinstance(dist, FloatDistribution):
            params[name] = trial.suggest_float(
                name, dist.low, dist.high, step=dist.step, log=dist.log
            )
        else:
            params[name] = trial.suggest_categorical(name, dist.choices)
    return params


def starting_point(space: Sequence[ParamSpec], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """`defaults` moved onto the space: each numeric value clipped to its bounds and rounded
    to its step, a categorical kept when it is a choice; parameters without a default (or
    with an unknown categorical) are left out, for the sampler to draw."""
    point: dict[str, Any] = {}
    for spec in space:
        if spec.name not in defaults:
            continue
        value = defaults[spec.name]
        if spec.type == "categorical":
            if value in (spec.choices or []):
                point[spec.name] = value
            continue
        low, high = float(spec.low), float(spec.high)
        value = min(max(float(value), low), high)
        if spec.step is not None:
            value = min(low + round((value - low) / spec.step) * spec.step, high)
        point[spec.name] = round(value) if spec.type == "int" else value
    return point


def tpe_startup_trials(max_trials: int) -> int:
    """Random trials before TPE models the space: a third of the budget, 3 to 10."""
    return max(3, min(10, max_trials // 3))


def sampler(tuning: TuningSettings) -> optuna.samplers.BaseSampler:
    """The seeded Optuna sampler for ``tuning.algorithm``."""
    if tuning.algorithm == "tpe":
        # Optuna's default of 10 random start-up trials would leave a 12-trial budget
        # almost all random search; with parallel trials, the running ones count as bad
        # results (constant liar) so that concurrent trials do not pick the same point
        return optuna.samplers.TPESampler(
            seed=tuning.seed,
            n_startup_trials=tpe_startup_trials(tuning.max_trials),
            constant_liar=tuning.parallel_trials > 1,
        )
    if tuning.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=tuning.seed)
    if tuning.algorithm == "grid":
        return optuna.samplers.GridSampler(grid(tuning.space), seed=tuning.seed)
    raise ValueError(f"unknown tuning.algorithm {tuning.algorithm!r}")


def pruner(tuning: TuningSettings) -> optuna.pruners.BasePruner:
    """Median pruning after ``early_stopping_min_trials`` trials, or none."""
    if tuning.early_stopping == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=tuning.early_stopping_min_trials)
    return optuna.pruners.NopPruner()


# -- grid ----------------------------------------------------------------------------------
def grid(space: Sequence[ParamSpec]) -> dict[str, list[Value]]:
    """The points of each parameter for grid search (rules in the module docstring)."""
    return {spec.name: _grid_points(spec) for spec in space}


def grid_size(space: Sequence[ParamSpec]) -> int:
    """How many combinations the grid has."""
    return math.prod(len(points) for points in grid(space).values())


def _grid_points(spec: ParamSpec) -> list[Value]:
    if spec.type == "categorical":
        return list(spec.choices or [])
    dist = _distribution(spec)  # validates the bounds and step for this type
    low, high = float(spec.low), float(spec.high)
    if spec.step is not None:
        count = math.floor((high - low) / spec.step + 1e-9) + 1
        points = [low + i * spec.step for i in range(count)]
    elif spec.log:
        ratio = high / low
        points = [low * ratio ** (i / (GRID_LOG_POINTS - 1)) for i in range(GRID_LOG_POINTS)]
        points[0], points[-1] = low, high
    else:
        raise ValueError(
            f"parameter {spec.name}: grid search needs a `step` (evenly spaced points) "
            "or `log: true` (log-spaced points)"
        )
    if isinstance(dist, IntDistribution):
        return sorted({round(p) for p in points})
    return [float(f"{p:.{_GRID_DIGITS}g}") for p in points]


# -- values as text (Katib, command lines) ---------------------------------------------------
def as_text(value: Value) -> str:
    """A parameter value as Katib and the trial command line carry it."""
    return repr(value) if isinstance(value, float) else str(value)


def typed_value(spec: ParamSpec, text: str) -> Value:
    """A value given as text (a Katib assignment, a command-line flag) typed by its spec."""
    if spec.type == "categorical":
        for choice in spec.choices or []:
            if as_text(choice) == text:
                return choice
        raise ValueError(f"parameter {spec.name}: {text!r} is not one of {spec.choices}")
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"parameter {spec.name}: {text!r} is not a number") from None
    if spec.type == "float":
        return number
    if not number.is_integer():
        raise ValueError(f"parameter {spec.name}: {text!r} is not a whole number")
    return int(number)


def typed_params(assignments: Mapping[str, str], space: Sequence[ParamSpec]) -> dict[str, Value]:
    """Text assignments for every parameter of the space, typed; unknown or missing is an error."""
    specs = {spec.name: spec for spec in space}
    unknown = sorted(set(assignments) - set(specs))
    missing = [name for name in specs if name not in assignments]
    if unknown or missing:
        raise ValueError(
            f"parameters do not match the search space: unknown {unknown}, missing {missing}"
        )
    return {name: typed_value(spec, assignments[name]) for name, spec in specs.items()}


# -- Katib ---------------------------------------------------------------------------------
# Katib's FeasibleSpace.distribution values (pkg/apis/controller/experiments/v1beta1)
KATIB_UNIFORM = "uniform"
KATIB_LOG_UNIFORM = "logUniform"


def katib_parameters(
    space: Sequence[ParamSpec], *, grid_points: bool = False
) -> list[dict[str, Any]]:
    """The Katib parameters of the space as the API's JSON (``name``, ``parameterType``,
    ``feasibleSpace``); with ``grid_points``, numeric ones as grid lists."""
    points = grid(space) if grid_points else {}
    parameters = []
    for spec in space:
        parameter_type, feasible = _katib_feasible_space(spec, points.get(spec.name))
        parameters.append(
            {
                "name": spec.name,
                "parameterType": parameter_type,
                "feasibleSpace": {k: v for k, v in feasible.items() if v is not None},
            }
        )
    return parameters


def _katib_feasible_space(
    spec: ParamSpec, points: list[Value] | None
) -> tuple[str, dict[str, Any]]:
    """Katib's parameterType and feasibleSpace fields (all values as strings) for one spec."""
    if spec.type == "categorical":
        return "categorical", {"list": [as_text(c) for c in spec.choices or []]}
    if points is not None:
        return "discrete", {"list": [as_text(p) for p in points]}
    dist = _distribution(spec)
    distribution = KATIB_LOG_UNIFORM if spec.log else KATIB_UNIFORM
    if isinstance(dist, IntDistribution):
        step = str(dist.step) if spec.step is not None else None
        return "int", {
            "min": str(dist.low),
            "max": str(dist.high),
            "step": step,
            "distribution": distribution,
        }
    assert isinstance(dist, FloatDistribution)
    step = as_text(float(dist.step)) if dist.step is not None else None
    return "double", {
        "min": as_text(dist.low),
        "max": as_text(dist.high),
        "step": step,
        "distribution": distribution,
    }


def describe(spec: ParamSpec) -> str:
    """One line saying what values a parameter takes."""
    if spec.type == "categorical":
        return f"{spec.name}: one of {', '.join(as_text(c) for c in spec.choices or [])}"
    number = int if spec.type == "int" else float
    bounds = ", ".join(as_text(number(v)) for v in (spec.low, spec.high))
    extras = [f"step {as_text(number(spec.step))}"] if spec.step is not None else []
    extras += ["log scale"] if spec.log else []
    suffix = f" ({', '.join(extras)})" if extras else ""
    return f"{spec.name}: {spec.type} in [{bounds}]{suffix}"


def log_scale_names(space: Sequence[ParamSpec]) -> list[str]:
    """Numeric parameters on a log scale (``distribution: logUniform`` on Katib)."""
    return [spec.name for spec in space if spec.log and spec.type != "categorical"]
