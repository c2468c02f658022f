"""Fit candidate models, score them on validation, and produce the final models for the test.

Policy: candidates are fit on train and scored on validation (the honest figure that tuning
and model choice use). The final model is then refit with the same parameters on train +
validation, the most recent labelled data before the test, and only that model is scored
on test. The baselines follow the same policy, so the gate compares like with like, and
the test split is never used to fit or choose anything. On CDNOW the refit gains
0.003-0.007 test PR-AUC.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlstack.config import EvaluationSettings, Settings
from mlstack.features.definitions import feature_names, label_name
from mlstack.models.candidates import MODEL_STEP, make_model, resolved_params
from mlstack.models.metrics import HIGHER_IS_BETTER, better, classification_metrics
from mlstack.models.parts import (
    Part,
    StreamedPart,
    as_frame,
    labels_of,
    scores_of,
    scores_of_each,
)
from mlstack.models.split import Split

log = logging.getLogger(__name__)

STAGED_KINDS = ("gradient_boosting",)
CANDIDATE_KINDS = ("gradient_boosting", "logistic_regression")

Report = Callable[[int, float], None]


@dataclass
class FitResult:
    """A fitted model, its validation score and the score after each stage (step, value)."""

    model: Pipeline
    score: float
    history: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Candidate:
    """A candidate model: parameters, validation metrics (train-only fit) and test metrics
    (final model)."""

    name: str
    kind: str
    params: dict[str, Any]
    model: Pipeline
    validation: dict[str, float]
    test: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)


def training_frame(part: Part, features: list[str], label: str) -> tuple[Part, np.ndarray]:
    """The feature columns (in order) and the 0/1 labels of one split part (a streamed
    part stays as it is: its rows are read when scored)."""
    missing = [c for c in [*features, label] if c not in part.columns]
    if missing:
        raise ValueError(f"the training data lacks columns: {', '.join(missing)}")
    if isinstance(part, StreamedPart):
        return part, part.labels
    return part[features], part[label].to_numpy().astype(int)


def final_fit_frame(split: Split, refit: bool = True) -> pd.DataFrame:
    """The rows a final model is fit on: train + validation when refitting (the row
    budget's sample of them when there is one, `Split.final`), else train."""
    if not refit:
        return split.train
    if split.final is not None:
        return split.final
    return pd.concat([split.train, as_frame(split.validation)], ignore_index=True)


def positive_scores(model: Any, X: Part) -> np.ndarray:
    """Positive-class probabilities of a fitted classifier on raw feature rows."""
    return scores_of(model, X)


def evaluate_on(
    model: Any, part: Part, label: str, evaluation: EvaluationSettings
) -> dict[str, float]:
    """The shared classification metrics of a fitted model on one split part."""
    return evaluate_each({"": model}, part, label, evaluation)[""]


def evaluate_each(
    models: Mapping[str, Any], part: Part, label: str, evaluation: EvaluationSettings
) -> dict[str, dict[str, float]]:
    """The shared classification metrics of each fitted model on one split part, its rows
    read once for all of them."""
    labels = labels_of(part, label)
    return {
        name: classification_metrics(
            labels,
            scores,
            top_fraction=evaluation.top_fraction,
            bins=evaluation.calibration_bins,
        )
        for name, scores in scores_of_each(models, part).items()
    }


# Scoring a streamed validation part holds a chunk of its rows, a score for every row and the
# metrics' sort: at 100x (18.9M rows) about 1 GB. Tuning trials run in threads, and with two
# scoring at once tune reached 4.4 GB (2.9 GB one at a time); so one streamed part is scored
# at a time in a process, while the other trials go on fitting.
_SCORING_WHOLE_PART = threading.Lock()


def _validation_value(metric: str, model: Pipeline, val_X: Part, val_y: np.ndarray) -> float:
    """`metric` of the fitted `model` on every validation row."""
    scoring = _SCORING_WHOLE_PART if isinstance(val_X, StreamedPart) else nullcontext()
    with scoring:
        return classification_metrics(val_y, positive_scores(model, val_X))[metric]


def stage_budgets(max_iter: int, stages: int) -> list[int]:
    """Iteration counts that double up to `max_iter` (``max_iter / 2**(stages - 1)``, ...,
    ``max_iter / 2``, ``max_iter``; fewer when small ones coincide). Each check costs a
    rebinning of train and predictions on train and validation, so doubling keeps their
    share of the fit small while the first check comes early enough to prune."""
    return sorted({max(1, round(max_iter / 2 ** (stages - k))) for k in range(1, stages + 1)})


def fit_staged(
    kind: str,
    params: dict[str, Any] | None,
    train_X: pd.DataFrame,
    train_y: np.ndarray,
    val_X: Part,
    val_y: np.ndarray,
    metric: str = "pr_auc",
    report: Report | None = None,
    stages: int = 3,
    features: list[str] | None = None,
) -> FitResult:
    """Fit a candidate on train and score `metric` on validation.

    Gradient boosting grows in `stages` increasing budgets up to its ``max_iter`` (warm
    start), and ``report(stage, value)`` is called after each, stage numbered from 1, so a
    tuner can prune; other kinds fit once and report once. An exception raised by `report`
    (such as ``optuna.TrialPruned``) propagates. `features` defaults to the columns of
    `train_X`.
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(HIGHER_IS_BETTER)}")
    model = make_model(kind, params, features or list(train_X.columns))
    history: list[tuple[int, float]] = []

    def record(stage: int, value: float) -> None:
        history.append((stage, value))
        log.info("%s stage %d: validation %s %.4f", kind, stage, metric, value)
        if report is not None:
            report(stage, value)

    if kind not in STAGED_KINDS or stages <= 1:
        model.fit(train_X, train_y)
        record(1, _validation_value(metric, model, val_X, val_y))
        return FitResult(model, history[-1][1], history)

    prep, clf = model[:-1], model.named_steps[MODEL_STEP]
    train_t = prep.fit_transform(train_X, train_y)
    # a part held in memory is transformed once; a streamed one a chunk at a time, each stage
    val_t = None if isinstance(val_X, StreamedPart) else prep.transform(val_X)

    def validation_value() -> float:
        if val_t is None:
            return _validation_value(metric, model, val_X, val_y)
        return classification_metrics(val_y, clf.predict_proba(val_t)[:, 1])[metric]

    clf.set_params(warm_start=True)
    try:
        for stage, budget in enumerate(stage_budgets(clf.max_iter, stages), start=1):
            clf.set_params(max_iter=budget)
            clf.fit(train_t, train_y)
            record(stage, validation_value())
    finally:
        # a later refit of the saved model starts from scratch
        clf.set_params(warm_start=False)
    return FitResult(model, history[-1][1], history)


def _fit_candidate(
    kind: str,
    params: dict[str, Any],
    split: Split,
    settings: Settings,
    refit: bool,
    known_fit: FitResult | None = None,
) -> Candidate:
    features, label = feature_names(settings), label_name(settings.features)
    metric = settings.tuning.objective
    info: dict[str, Any] = {"final_fit_on": "train+validation" if refit else "train"}
    if known_fit is None:
        started = time.perf_counter()
        result = fit_staged(
            kind,
            params,
            *training_frame(split.train, features, label),
            *training_frame(split.validation, features, label),
            metric=metric,
        )
        info["fit_seconds"] = time.perf_counter() - started
    else:
        result = known_fit
        info["fit_reused"] = True
    info["history"] = result.history
    validation = evaluate_on(result.model, split.validation, label, settings.evaluation)

    final = result.model
    if refit:
        started = time.perf_counter()
        final = make_model(kind, params, features)
        final.fit(*training_frame(final_fit_frame(split), features, label))
        info["refit_seconds"] = time.perf_counter() - started
    test = evaluate_on(final, split.test, label, settings.evaluation)
    log.info(
        "candidate %s: validation %s %.4f%s; test PR-AUC %.4f ROC-AUC %.4f",
        kind,
        metric,
        validation[metric],
        " (the tuning's fit)" if known_fit is not None else "",
        test["pr_auc"],
        test["roc_auc"],
    )
    return Candidate(kind, kind, resolved_params(kind, params), final, validation, test, info)


def train_candidates(
    split: Split,
    settings: Settings,
    tuned_params: dict[str, Any] | None = None,
    refit: bool = True,
    known_fits: Mapping[str, FitResult] | None = None,
) -> dict[str, Candidate]:
    """Gradient boosting and logistic regression, by kind; the tuned kind
    (``settings.tuning.model``) uses `tuned_params` when given, the others their defaults.

    `known_fits` holds, by kind, fits on this split's train rows with exactly these
    parameters made earlier (tuning's best trial): they are scored, not fit again.
    """
    known_fits = known_fits or {}
    candidates = {}
    for kind in CANDIDATE_KINDS:
        params = tuned_params if tuned_params and kind == settings.tuning.model else {}
        candidates[kind] = _fit_candidate(
            kind, params, split, settings, refit, known_fits.get(kind)
        )
    return candidates


def best_candidate(candidates: dict[str, Candidate], metric: str) -> Candidate:
    """The candidate with the best validation `metric` (never chosen on test)."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    first, *rest = candidates.values()
    best = first
    for cand in rest:
        if better(metric, cand.validation[metric], best.validation[metric]):
            best = cand
    return best
