"""Model steps: the MLflow run, baselines, tuning and training (`gate` has evaluation and
registration).

Every step reads the training set and recomputes the time split (cheap and deterministic),
so no split files travel between steps. Tuning hands its best trial's fit to training as an
artifact (`BestFit`), so training does not fit those parameters again.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib

from mlstack.config import Settings
from mlstack.features.definitions import EVENT_TIMESTAMP, feature_names, label_name
from mlstack.features.shards import part_files
from mlstack.models.baselines import fit_baselines
from mlstack.models.split import PARTS, Split
from mlstack.models.split_file import FINAL, read_split
from mlstack.models.train import (
    FitResult,
    best_candidate,
    fit_staged,
    train_candidates,
    training_frame,
)
from mlstack.steps import step
from mlstack.steps.cache import cached
from mlstack.steps.results import (
    Baselines,
    BaselineScores,
    CandidateScores,
    Lineage,
    RunStarted,
    Trained,
    TrainingRows,
    Tuned,
    plain,
)

log = logging.getLogger(__name__)

# what the time split and the training rows depend on
SPLIT_SETTINGS = ("split", "features", "source.columns")


def load_split(
    settings: Settings,
    dataset: Path,
    parts: Iterable[str] = (*PARTS, FINAL),
    columns: Iterable[str] | None = None,
) -> Split:
    """The time split of the training set (a file, or a dataset partitioned by shard) under
    the row budget, with only `parts` and `columns` (default: all) read."""
    return read_split(
        str(dataset),
        settings.split,
        settings.features.horizon_days,
        label_name(settings.features),
        parts,
        columns,
    )


def model_columns(settings: Settings) -> list[str]:
    """What fitting and scoring read: the features and the label (not the customer id nor
    the categorical attributes, which only evaluation reads)."""
    return [EVENT_TIMESTAMP, label_name(settings.features), *feature_names(settings)]


@step
def start_run_step(settings: Settings, note: str, lineage: Lineage) -> RunStarted:
    """Open this pipeline run's MLflow run: the note (hypothesis), lineage and settings."""
    import mlflow  # lazy on purpose: MLflow is slow to import

    from mlstack.registry import tracking

    tracking.configure(settings.mlflow)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = f"train-{lineage.data_version[:8]}-{stamp}"
    with tracking.training_run(
        settings.mlflow, name, note=note or None, tags={"mode": settings.mode}
    ) as run:
        tracking.log_lineage(
            lineage.data_version,
            lineage.feature_version,
            lineage.feature_service,
            lineage.training_rows,
        )
        mlflow.log_dict(json.loads(settings.to_json()), "settings.json")
        run_id = run.info.run_id
    return RunStarted(run_id=run_id, run_name=name)


@cached(outputs=("out_model",), reads=(*SPLIT_SETTINGS, "evaluation"))
def _fit_baselines(settings: Settings, dataset: Path, out_model: Path) -> Baselines:
    split = load_split(settings, dataset, columns=model_columns(settings))
    baselines = fit_baselines(split, settings)
    out_model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({name: b.model for name, b in baselines.items()}, out_model)
    scores = {
        name: BaselineScores(validation=b.validation, test=b.test, info=plain(b.info))
        for name, b in baselines.items()
    }
    metrics = {
        f"{name}_test_{m}": b.test[m]
        for name, b in baselines.items()
        for m in ("roc_auc", "pr_auc")
    }
    return Baselines(metrics=metrics, baselines=scores)


@step
def baselines_step(settings: Settings, dataset: Path, out_model: Path, run_id: str) -> Baselines:
    """Fit the recency heuristic and the L1 logistic regression; log them to the run."""
    from mlstack.registry import tracking  # lazy on purpose: MLflow is slow to import

    result = _fit_baselines(settings, dataset, out_model)
    with tracking.training_run(settings.mlflow, "", run_id=run_id):
        for name, found in result.baselines.items():
            tracking.log_metrics(f"baseline_{name}_validation", found.validation)
            tracking.log_metrics(f"baseline_{name}_test", found.test)
        dropped = result.l1_dropped
        if dropped is not None:
            import mlflow

            mlflow.set_tag("l1_dropped_features", ",".join(dropped) or "none")
            log.info("L1 logistic regression drops: %s", ", ".join(dropped) or "none")
    return result


@dataclass
class BestFit:
    """Tuning's hand-over to training (the tune step's `best_fit` artifact): the best
    parameters of the tuned `kind` and, when tuning ran here, that trial's fit on train."""

    kind: str
    params: dict[str, Any]
    fit: FitResult | None = None

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path)
        return path

    @classmethod
    def load(cls, path: Path) -> BestFit:
        found = joblib.load(path)
        if not isinstance(found, cls):
            raise TypeError(f"{path} is not a tuning's best fit but a {type(found).__name__}")
        return found


class TuningObjective:
    """The tuning objective on a training set, ``objective(params, report) -> float``: fit
    with the trial's parameters on train, report each stage's validation score, return the
    last. Keeps every completed trial's fit, so the best one can be handed to training."""

    def __init__(self, settings: Settings, dataset: Path) -> None:
        self.tuning = settings.tuning
        split = load_split(
            settings, dataset, parts=("train", "validation"), columns=model_columns(settings)
        )
        self.rows = rows_of(split)
        features, label = feature_names(settings), label_name(settings.features)
        self.train = training_frame(split.train, features, label)
        self.validation = training_frame(split.validation, features, label)
        self.fits: dict[str, FitResult] = {}  # parameters (as a key) -> the trial's fit
        self._lock = threading.Lock()

    def __call__(self, params: dict[str, Any], report: Any) -> float:
        fitted = fit_staged(
            self.tuning.model,
            params,
            *self.train,
            *self.validation,
            metric=self.tuning.objective,
            report=report,
        )
        with self._lock:
            self.fits[params_key(params)] = fitted
        return fitted.score

    def fit_of(self, params: dict[str, Any]) -> FitResult | None:
        return self.fits.get(params_key(params))


def rows_of(split: Split) -> TrainingRows | None:
    """What the row budget kept of this split, as a step's result holds it."""
    return None if split.rows is None else TrainingRows(**asdict(split.rows))


def params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


@cached(outputs=("out_best_fit",), reads=(*SPLIT_SETTINGS, "tuning"), ignore=("run_id",))
def _tune_locally(settings: Settings, dataset: Path, run_id: str, out_best_fit: Path) -> Tuned:
    from mlstack.registry import tracking  # lazy on purpose: MLflow and Optuna are slow
    from mlstack.tuning.local import run_study

    tracking.configure(settings.mlflow)

    def on_trial(number: int, params: dict, value: float | None, state: str) -> None:
        tracking.log_trial(run_id, number, params, value, state, settings.tuning.objective)

    objective = TuningObjective(settings, dataset)
    study = run_study(settings.tuning, objective, on_trial=on_trial)
    best = study.best_params
    BestFit(settings.tuning.model, best, objective.fit_of(best)).save(out_best_fit)
    metrics = {
        "best_value": study.best_value,
        "trials": len(study.trials),
        "pruned": study.n_pruned,
        "failed": study.n_failed,
    }
    return Tuned(
        metrics=metrics,
        best_params=best,
        backend="optuna",
        algorithm=study.algorithm,
        rows=objective.rows,
    )


@step
def tune_step(
    settings: Settings, dataset: Path, dataset_uri: str, run_id: str, out_best_fit: Path
) -> Tuned:
    """Search the configured space: an Optuna study here, a Katib Experiment on a cluster.
    Writes the best parameters (and, here, their fit on train) to `out_best_fit`."""
    from mlstack.registry import tracking  # lazy on purpose: MLflow is slow to import

    if settings.mode == "cluster":
        from mlstack.deploy.kube import api_client  # lazy: the Kubernetes client, cluster only
        from mlstack.tuning.katib import TRIAL_ENTRYPOINT
        from mlstack.tuning.katib_runs import katib_client, run_katib

        shared = _dataset_for_trials(settings, dataset, dataset_uri, run_id)
        client = katib_client(api_client(settings.deploy).configuration)
        params = run_katib(
            settings, client, training_command=[*TRIAL_ENTRYPOINT, "--dataset", shared]
        )
        BestFit(settings.tuning.model, params).save(out_best_fit)  # the fit stayed in a pod
        result = Tuned(best_params=params, backend="katib")
    else:
        result = _tune_locally(settings, dataset, run_id, out_best_fit)
    with tracking.training_run(settings.mlflow, "", run_id=run_id):
        import mlflow

        mlflow.log_params({f"tuned_{k}": v for k, v in result.best_params.items()})
        tracking.log_metrics("tuning", result.metrics)
    return result


def _dataset_for_trials(settings: Settings, dataset: Path, dataset_uri: str, run_id: str) -> str:
    """Where Katib's trial pods read the training set: with a remote state store, a copy
    there (a trial pod does not see this step's artifact paths); else the artifact's URI.
    A training set partitioned by shard is copied part by part, in the same layout."""
    from mlstack import storage  # lazy: fsspec's object-store backends, cluster only

    if not settings.state_uri or not storage.is_remote(settings.state_uri):
        return dataset_uri
    if dataset.is_dir():
        uri = settings.state("tuning", run_id or "run", "training_set")
        for part in part_files(dataset):
            relative = part.relative_to(dataset).as_posix()
            storage.upload(part, storage.join(uri, relative), settings.object_store)
        return uri
    uri = settings.state("tuning", run_id or "run", "training_set.parquet")
    storage.upload(dataset, uri, settings.object_store)
    return uri


@cached(outputs=("out_model",), reads=(*SPLIT_SETTINGS, "tuning", "evaluation"))
def _train(settings: Settings, dataset: Path, best_fit: Path, out_model: Path) -> Trained:
    tuned = BestFit.load(best_fit)
    known = {}
    if tuned.fit is not None and tuned.kind == settings.tuning.model:
        known[tuned.kind] = tuned.fit
        log.info("the tuning's fit of %s on train is reused", tuned.kind)
    split = load_split(settings, dataset, columns=model_columns(settings))
    candidates = train_candidates(split, settings, tuned.params, known_fits=known)
    best = best_candidate(candidates, settings.tuning.objective)
    out_model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(best.model, out_model)
    scores = {
        name: CandidateScores(
            params=plain(c.params),
            validation=c.validation,
            test=c.test,
            fit_reused=c.info.get("fit_reused", False),
        )
        for name, c in candidates.items()
    }
    objective = settings.tuning.objective
    metrics = {
        f"{name}_validation_{objective}": c.validation[objective] for name, c in candidates.items()
    }
    return Trained(
        metrics=metrics,
        challenger=best.name,
        kind=best.kind,
        params=plain(best.params),
        candidates=scores,
        rows=rows_of(split),
    )


@step
def train_step(
    settings: Settings, dataset: Path, best_fit: Path, out_model: Path, run_id: str
) -> Trained:
    """Fit every candidate (the tuned one with the best parameters, reusing tuning's fit on
    train when there is one); keep the best on validation."""
    from mlstack.registry import tracking  # lazy on purpose: MLflow is slow to import

    result = _train(settings, dataset, best_fit, out_model)
    with tracking.training_run(settings.mlflow, "", run_id=run_id):
        for name, found in result.candidates.items():
            tracking.log_metrics(f"candidate_{name}_validation", found.validation)
        import mlflow

        mlflow.set_tag("challenger_kind", result.kind)
        if result.rows is not None:
            mlflow.log_params(result.rows.params())
    log.info("challenger: %s %s", result.kind, result.params)
    return result
