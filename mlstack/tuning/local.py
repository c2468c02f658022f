"""Local tuning: an Optuna study over the search space, in place of a Katib Experiment.

The objective is ``objective(params, report) -> value``: it trains with ``params``, calls
``report(step, value)`` with intermediate values (one per boosting stage) and returns the
final value of ``tuning.objective``. ``report`` raises ``optuna.TrialPruned`` when median
pruning stops the trial; the objective lets it propagate.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mlstack.config import TuningSettings
from mlstack.models.candidates import DEFAULT_PARAMS
from mlstack.models.parallel import job_threads
from mlstack.tuning import format_params
from mlstack.tuning.space import pruner, sampler, starting_point, suggest

log = logging.getLogger(__name__)

Report = Callable[[int, float], None]
Objective = Callable[[dict[str, Any], Report], float]
# on_trial(trial_number, params, value, state): value is the objective for a completed trial,
# the last reported value for a pruned one, None for a failed one
OnTrial = Callable[[int, dict[str, Any], float | None, str], None]

COMPLETE, PRUNED, FAILED = "complete", "pruned", "fail"
_ERROR_ATTR = "error"


class TuningError(RuntimeError):
    """The study cannot give a result: too many failed trials, or none completed."""


@dataclass(frozen=True)
class StudyResult:
    """The best trial and what happened to every trial of a study."""

    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]]  # number, params, value, state (complete / pruned / fail)
    n_pruned: int
    n_failed: int
    direction: str
    algorithm: str


def run_study(
    tuning: TuningSettings, objective: Objective, on_trial: OnTrial | None = None
) -> StudyResult:
    """Run ``tuning.max_trials`` trials of the objective and return the best.

    The first trial tries the model kind's default parameters moved onto the space (unless
    ``tuning.start_from_defaults`` is off, and not for grid search, whose points are
    fixed), so a small budget cannot end below the untuned model on validation.
    Trials run ``tuning.parallel_trials`` at a time, in threads, each on its share of the
    cores (see `mlstack.models.parallel`). A trial that raises is counted as
    failed; once more than ``tuning.max_failed_trials`` have failed the study stops and a
    ``TuningError`` says why. ``on_trial`` is called once per finished trial, one call at a
    time, in the order trials finish; an exception from it stops the study.
    """
    watcher = _TrialWatcher(tuning, on_trial)
    # the limit set here covers BLAS (per process); each trial sets its own OpenMP limit
    with _quiet_optuna(), job_threads(tuning.parallel_trials):
        study = optuna.create_study(
            direction=tuning.direction, sampler=sampler(tuning), pruner=pruner(tuning)
        )
        if tuning.start_from_defaults and tuning.algorithm != "grid":
            first = starting_point(tuning.space, DEFAULT_PARAMS.get(tuning.model, {}))
            if first:
                study.enqueue_trial(first)
        study.optimize(
            lambda trial: _run_trial(trial, tuning, objective),
            n_trials=tuning.max_trials,
            n_jobs=tuning.parallel_trials,
            catch=(Exception,),
            callbacks=[watcher],
        )
    return _result(study, tuning)


def _run_trial(trial: optuna.Trial, tuning: TuningSettings, objective: Objective) -> float:
    params = suggest(trial, tuning.space)
    try:
        with job_threads(tuning.parallel_trials):
            return objective(params, _reporter(trial))
    except optuna.TrialPruned:
        raise
    except Exception as err:
        trial.set_user_attr(_ERROR_ATTR, f"{type(err).__name__}: {err}")
        raise


def _reporter(trial: optuna.Trial) -> Report:
    """``report(step, value)`` for one trial: records the value, raises when pruned."""

    def report(step: int, value: float) -> None:
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"trial {trial.number} pruned at step {step}: {value:.4g}")

    return report


class _TrialWatcher:
    """After each trial: the progress line, the ``on_trial`` hook, the failure budget."""

    def __init__(self, tuning: TuningSettings, on_trial: OnTrial | None) -> None:
        self.tuning = tuning
        self.on_trial = on_trial
        self.finished = 0
        self.lock = threading.Lock()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with self.lock:
            self.finished += 1
            state = _state(trial)
            log.info("%s", self._progress_line(study, trial, state))
            if self.on_trial is not None:
                self.on_trial(trial.number, dict(trial.params), trial.value, state)
            failed = _count(study, TrialState.FAIL)
            if failed > self.tuning.max_failed_trials:
                study.stop()

    def _progress_line(self, study: optuna.Study, trial: FrozenTrial, state: str) -> str:
        head = f"trial {self.finished}/{self.tuning.max_trials} (#{trial.number}) {state}"
        if state == COMPLETE:
            head += f" {self.tuning.objective}={trial.value:.4f}"
        elif state == PRUNED and trial.intermediate_values:
            step = max(trial.intermediate_values)
            head += f" at step {step} ({trial.intermediate_values[step]:.4f})"
        elif state == FAILED:
            head += f": {trial.user_attrs.get(_ERROR_ATTR, 'no valid objective value')}"
        best = _best(study)
        if best is not None:
            head += f" | best {self.tuning.objective}={best.value:.4f} (#{best.number})"
        return f"{head} | {format_params(trial.params)}"


def _result(study: optuna.Study, tuning: TuningSettings) -> StudyResult:
    finished = sorted((t for t in study.trials if t.state.is_finished()), key=lambda t: t.number)
    n_failed = _count(study, TrialState.FAIL)
    n_pruned = _count(study, TrialState.PRUNED)
    if n_failed > tuning.max_failed_trials:
        raise TuningError(
            f"tuning stopped: {n_failed} of {len(finished)} trials failed, more than "
            f"tuning.max_failed_trials={tuning.max_failed_trials}; "
            f"last error: {_last_error(finished)}"
        )
    best = _best(study)
    if best is None:
        raise TuningError(
            f"no trial completed ({n_pruned} pruned, {n_failed} failed; "
            f"last error: {_last_error(finished)})"
        )
    log.info(
        "tuning done: best %s=%.4f (trial #%d, %d pruned, %d failed) | %s",
        tuning.objective,
        best.value,
        best.number,
        n_pruned,
        n_failed,
        format_params(best.params),
    )
    return StudyResult(
        best_params=dict(best.params),
        best_value=float(best.value),
        trials=[
            {"number": t.number, "params": dict(t.params), "value": t.value, "state": _state(t)}
            for t in finished
        ],
        n_pruned=n_pruned,
        n_failed=n_failed,
        direction=tuning.direction,
        algorithm=tuning.algorithm,
    )


def _state(trial: FrozenTrial) -> str:
    return {TrialState.COMPLETE: COMPLETE, TrialState.PRUNED: PRUNED}.get(trial.state, FAILED)


def _count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def _best(study: optuna.Study) -> FrozenTrial | None:
    """The best completed trial so far (``study.best_trial`` raises when there is none)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


def _last_error(trials: list[FrozenTrial]) -> str:
    errors = [t.user_attrs[_ERROR_ATTR] for t in trials if _ERROR_ATTR in t.user_attrs]
    return errors[-1] if errors else "none recorded"


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs warnings only while a study runs: each trial gets our own line instead."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)
