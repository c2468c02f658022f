"""Model steps: the MLflow run, baselines, tuning, training, evaluation and registration.

Every step reads the training set and recomputes the time split (cheap and deterministic),
so no split files travel between steps. The champion alias moves only in the last step,
after everything else succeeded: a crash anywhere leaves the champion where it was.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from mlstack.config import Settings
from mlstack.features.definitions import ENTITY, feature_names, label_name
from mlstack.steps import StepResult, keep, step
from mlstack.steps.cache import cached, shared_file

log = logging.getLogger(__name__)


def load_split(settings: Settings, dataset: Path):  # -> Split
    from mlstack.models.split import time_split

    return time_split(pd.read_parquet(dataset), settings)


@step
def start_run_step(settings: Settings, note: str, lineage: dict[str, Any]) -> StepResult:
    """Open this pipeline run's MLflow run: the note (hypothesis), lineage and settings."""
    import mlflow

    from mlstack.registry import tracking

    tracking.configure(settings)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = f"train-{lineage.get('data_version', 'data')[:8]}-{stamp}"
    with tracking.training_run(
        settings, name, note=note or None, tags={"mode": settings.mode}
    ) as run:
        tracking.log_lineage(
            lineage["data_version"],
            lineage["feature_version"],
            lineage["feature_service"],
            int(lineage["training_rows"]),
        )
        mlflow.log_dict(json.loads(settings.to_json()), "settings.json")
        run_id = run.info.run_id
    return StepResult(metadata={"run_id": run_id, "run_name": name})


@cached(outputs=("out_model",))
def _fit_baselines(settings: Settings, dataset: Path, out_model: Path) -> StepResult:
    from mlstack.models.baselines import fit_baselines

    baselines = fit_baselines(load_split(settings, dataset), settings)
    out_model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({name: b.model for name, b in baselines.items()}, out_model)
    meta = {
        name: {"validation": b.validation, "test": b.test, "info": b.info}
        for name, b in baselines.items()
    }
    metrics = {
        f"{name}_test_{m}": b.test[m]
        for name, b in baselines.items()
        for m in ("roc_auc", "pr_auc")
    }
    return StepResult(metrics=metrics, metadata=json.loads(json.dumps(meta, default=str)))


@step
def baselines_step(settings: Settings, dataset: Path, out_model: Path, run_id: str) -> StepResult:
    """Fit the recency heuristic and the L1 logistic regression; log them to the run."""
    from mlstack.registry import tracking

    result = _fit_baselines(settings, dataset, out_model)
    with tracking.training_run(settings, "", run_id=run_id):
        for name, found in result.metadata.items():
            tracking.log_metrics(f"baseline_{name}_validation", found["validation"])
            tracking.log_metrics(f"baseline_{name}_test", found["test"])
        dropped = result.metadata.get("l1_logistic", {}).get("info", {}).get("dropped_features")
        if dropped is not None:
            import mlflow

            mlflow.set_tag("l1_dropped_features", ",".join(dropped) or "none")
            log.info("L1 logistic regression drops: %s", ", ".join(dropped) or "none")
    return result


class TuningObjective:
    """The tuning objective on a training set, ``objective(params, report) -> float``: fit
    with the trial's parameters on train, report each stage's validation score, return the
    last. Keeps every completed trial's fit, so the best one can be handed to training."""

    def __init__(self, settings: Settings, dataset: Path) -> None:
        from mlstack.models.train import training_frame

        self.settings = settings
        split = load_split(settings, dataset)
        features, label = feature_names(settings), label_name(settings)
        self.train = training_frame(split.train, features, label)
        self.validation = training_frame(split.validation, features, label)
        self.fits: dict[str, Any] = {}  # parameters (as a key) -> FitResult
        self._lock = threading.Lock()

    def __call__(self, params: dict[str, Any], report: Any) -> float:
        from mlstack.models.train import fit_staged

        fitted = fit_staged(
            self.settings.tuning.model,
            params,
            *self.train,
            *self.validation,
            metric=self.settings.tuning.objective,
            report=report,
        )
        with self._lock:
            self.fits[_params_key(params)] = fitted
        return fitted.score

    def fit_of(self, params: dict[str, Any]) -> Any:  # -> FitResult | None
        return self.fits.get(_params_key(params))


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _best_fit_file(settings: Settings, dataset: Path, params: dict[str, Any]) -> Path | None:
    """Where tuning leaves its best trial's fit on train for the train step (local runs)."""
    return shared_file(
        settings, "best_fit", dataset=dataset, kind=settings.tuning.model, params=params
    )


@cached(outputs=(), ignore=("run_id",))
def _tune_locally(settings: Settings, dataset: Path, run_id: str) -> StepResult:
    from mlstack.registry import tracking
    from mlstack.tuning.local import run_study

    tracking.configure(settings)

    def on_trial(number: int, params: dict, value: float | None, state: str) -> None:
        tracking.log_trial(run_id, number, params, value, state, settings.tuning.objective)

    objective = TuningObjective(settings, dataset)
    study = run_study(settings, objective, on_trial=on_trial)
    best_fit = objective.fit_of(study.best_params)
    best_file = _best_fit_file(settings, dataset, study.best_params)
    if best_file is not None and best_fit is not None:
        best_file.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(best_fit, best_file)
    metrics = {
        "best_value": study.best_value,
        "trials": len(study.trials),
        "pruned": study.n_pruned,
        "failed": study.n_failed,
    }
    meta = {"best_params": study.best_params, "backend": "optuna", "algorithm": study.algorithm}
    return StepResult(metrics=metrics, metadata=meta)


@step
def tune_step(settings: Settings, dataset: Path, dataset_uri: str, run_id: str) -> StepResult:
    """Search the configured space: an Optuna study here, a Katib Experiment on a cluster."""
    from mlstack.registry import tracking

    if settings.mode == "cluster":
        from mlstack.deploy.kube import api_client
        from mlstack.tuning.katib import TRIAL_ENTRYPOINT
        from mlstack.tuning.katib_runs import katib_client, run_katib

        shared = _dataset_for_trials(settings, dataset, dataset_uri, run_id)
        client = katib_client(api_client(settings).configuration)
        params = run_katib(
            settings, client, training_command=[*TRIAL_ENTRYPOINT, "--dataset", shared]
        )
        result = StepResult(metadata={"best_params": params, "backend": "katib"})
    else:
        result = _tune_locally(settings, dataset, run_id)
    with tracking.training_run(settings, "", run_id=run_id):
        import mlflow

        mlflow.log_params({f"tuned_{k}": v for k, v in result.metadata["best_params"].items()})
        tracking.log_metrics("tuning", result.metrics)
    return result


def _dataset_for_trials(settings: Settings, dataset: Path, dataset_uri: str, run_id: str) -> str:
    """Where Katib's trial pods read the training set: with a remote state store, a copy
    there (a trial pod does not see this step's artifact paths); else the artifact's URI."""
    from mlstack import storage

    if not settings.state_uri or not storage.is_remote(settings.state_uri):
        return dataset_uri
    uri = settings.state("tuning", run_id or "run", "training_set.parquet")
    storage.upload(dataset, uri, settings)
    return uri


@cached(outputs=("out_model",))
def _train(
    settings: Settings, dataset: Path, params: dict[str, Any], out_model: Path
) -> StepResult:
    from mlstack.models.train import best_candidate, train_candidates

    known = {}
    best_file = _best_fit_file(settings, dataset, params)
    if best_file is not None and best_file.is_file():
        known[settings.tuning.model] = joblib.load(best_file)
        log.info("the tuning's fit of %s on train is reused: %s", settings.tuning.model, best_file)
    split = load_split(settings, dataset)
    candidates = train_candidates(split, settings, params, known_fits=known)
    best = best_candidate(candidates, settings.tuning.objective)
    out_model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(best.model, out_model)
    meta = {
        "challenger": best.name,
        "kind": best.kind,
        "params": best.params,
        "candidates": {
            name: {
                "params": c.params,
                "validation": c.validation,
                "test": c.test,
                "fit_reused": c.info.get("fit_reused", False),
            }
            for name, c in candidates.items()
        },
    }
    metrics = {
        f"{name}_validation_{settings.tuning.objective}": c.validation[settings.tuning.objective]
        for name, c in candidates.items()
    }
    return StepResult(metrics=metrics, metadata=json.loads(json.dumps(meta, default=str)))


@step
def train_step(
    settings: Settings, dataset: Path, params: dict[str, Any], out_model: Path, run_id: str
) -> StepResult:
    """Fit every candidate (the tuned one with the best parameters); keep the best on validation."""
    from mlstack.registry import tracking

    result = _train(settings, dataset, params, out_model)
    with tracking.training_run(settings, "", run_id=run_id):
        for name, found in result.metadata["candidates"].items():
            tracking.log_metrics(f"candidate_{name}_validation", found["validation"])
        import mlflow

        mlflow.set_tag("challenger_kind", result.metadata["kind"])
    log.info("challenger: %s %s", result.metadata["kind"], result.metadata["params"])
    return result


def _champion_scores(settings: Settings, test: pd.DataFrame) -> tuple[str, dict, np.ndarray] | None:
    """The current champion's version, metrics and scores on this test data, or None when
    there is none."""
    import mlflow.sklearn

    from mlstack.models.metrics import classification_metrics
    from mlstack.registry import models, tracking

    client = tracking.configure(settings)
    current = models.champion(client, settings.mlflow.registered_model)
    if current is None:
        return None
    uri = f"models:/{settings.mlflow.registered_model}@{models.CHAMPION}"
    champion = mlflow.sklearn.load_model(uri)
    scores = champion.predict_proba(test)[:, 1]
    ev = settings.evaluation
    metrics = classification_metrics(
        test[label_name(settings)], scores, ev.top_fraction, ev.calibration_bins
    )
    return str(current.version), metrics, scores


@step
def evaluate_step(
    settings: Settings,
    dataset: Path,
    challenger: Path,
    baselines: Path,
    report_html: Path,
    run_id: str,
) -> StepResult:
    """Evaluate the challenger on the test period against the baselines and the champion;
    decide whether it may become champion."""
    from mlstack.models.evaluate import evaluate_model
    from mlstack.models.gate import CHALLENGER, decide
    from mlstack.models.train import positive_scores
    from mlstack.registry import tracking

    test = load_split(settings, dataset).test
    features, label = feature_names(settings), label_name(settings)
    model = joblib.load(challenger)
    baseline_models = joblib.load(baselines)
    baseline_scores = {name: positive_scores(m, test) for name, m in baseline_models.items()}
    challenger_scores = positive_scores(model, test)  # scored once: the report and the gate
    out_dir = settings.reports_dir / "evaluation" / run_id
    evaluation = evaluate_model(
        model,
        test,
        features,
        label,
        settings,
        out_dir,
        name="challenger",
        scores=challenger_scores,
        baselines=baseline_scores,
    )
    keep(evaluation.html, report_html)
    found = _champion_scores(settings, test)
    champion_version, champion_metrics, champion_scores = found if found else (None, None, None)
    decision = decide(
        test[label].to_numpy(),
        test[ENTITY].to_numpy(),
        {CHALLENGER: challenger_scores, **baseline_scores},
        champion_scores,
        settings,
    )
    for reason in decision.reasons:
        log.info("gate: %s", reason)
    log.info(
        "gate decision: %s",
        f"PROMOTE {decision.candidate}" if decision.promote else "keep the champion",
    )
    with tracking.training_run(settings, "", run_id=run_id):
        import mlflow

        tracking.log_metrics("test", evaluation.metrics)
        if champion_metrics:
            tracking.log_metrics("champion_test", champion_metrics)
        mlflow.log_metrics(decision.intervals())
        tracking.log_reports({"evaluation": out_dir})
        mlflow.log_dict(decision.to_dict(), "gate_decision.json")
        mlflow.set_tag("gate_decision", "promote" if decision.promote else "reject")
        mlflow.set_tag("gate_candidate", decision.registered)
    meta = {
        "evaluation": evaluation.to_dict(),
        "roc": evaluation.roc,
        # with every candidate's test metrics: register records the chosen one's
        "decision": {
            **decision.to_dict(),
            "test_metrics": {CHALLENGER: dict(evaluation.metrics), **evaluation.baselines},
        },
        "champion_version": champion_version,
        "champion_metrics": champion_metrics,
        "report_dir": str(out_dir),
    }
    return StepResult(
        metrics=dict(evaluation.metrics), metadata=json.loads(json.dumps(meta, default=str))
    )


@step
def register_step(
    settings: Settings,
    dataset: Path,
    challenger: Path,
    baselines: Path,
    decision: dict[str, Any],
    test_metrics: dict[str, float],
    run_id: str,
) -> StepResult:
    """Log and register the model the gate chose (the challenger, or a learned baseline that
    passed where it did not); alias it `challenger`, and `champion` if it passed.
    `test_metrics` are the challenger's; a baseline's come with the decision."""
    from mlstack.models.gate import CHALLENGER, interval_name
    from mlstack.models.train import final_fit_frame
    from mlstack.monitoring.reference import build_reference, log_reference
    from mlstack.registry import models, tracking

    name = settings.mlflow.registered_model
    kind = decision.get("candidate") or CHALLENGER
    if kind == CHALLENGER:
        model = joblib.load(challenger)
    else:
        model = joblib.load(baselines)[kind]
        test_metrics = decision["test_metrics"][kind]
    split = load_split(settings, dataset)
    example = split.test[feature_names(settings)].head(5)
    client = tracking.configure(settings)
    with tracking.training_run(settings, "", run_id=run_id):
        info = tracking.log_model(model, tracking.MODEL_NAME, example, registered_model=name)
        # the drift checks' reference: the rows the model was fit on, with its scores
        log_reference(
            build_reference(
                model,
                final_fit_frame(split),
                settings,
                test_metrics,
                trained_until=split.boundaries.get("validation_end"),
            )
        )
    verdict = "promote" if decision["promote"] else "reject"
    intervals = {
        f"gate_vs_{interval_name(c['rule'], c['against'])}": (
            f"{c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]"
        )
        for c in decision.get("comparisons", {}).get(kind, [])
    }  # e.g. gate_vs_l1_logistic: +0.0009 [-0.0021, +0.0040]
    tags = {"gate_decision": verdict, "model_kind": kind, **intervals}
    version = models.register(client, settings, info.model_uri, metrics=test_metrics, tags=tags)
    reasons = "; ".join(decision["reasons"])
    models.set_alias(client, name, models.CHALLENGER, version.version, f"run {run_id}: {reasons}")
    if decision["promote"]:
        models.promote(client, settings, version.version, f"gate passed in run {run_id}: {reasons}")
    aliases = sorted(
        a for a, v in models.aliases(client, name).items() if v == str(version.version)
    )
    log.info(
        "registered %s (%s) version %s, aliases: %s",
        name,
        kind,
        version.version,
        ", ".join(aliases) or "none",
    )
    return StepResult(
        metadata={
            "model": name,
            "version": str(version.version),
            "model_kind": kind,
            "aliases": aliases,
            "promoted": decision["promote"],
        }
    )
