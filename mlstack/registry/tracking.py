"""MLflow tracking: where runs go, what a training run records, and how the model is logged.

`configure` is the one place that points MLflow at the tracking and registry URIs from the
settings; every other function works on the active run `training_run` opened.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE

from mlstack.config.modelling import MlflowSettings

log = logging.getLogger(__name__)

MODEL_NAME = "model"
"""The usual name of the logged propensity model in its run; `register` looks for it."""

LINEAGE_KEYS = ("data_version", "feature_version", "feature_service", "training_rows")
"""Lineage recorded on every training run and copied onto the model versions it produces."""

HYPOTHESIS_TAG = "hypothesis"
TRIAL_STATE_TAG = "trial_state"
TRIAL_NUMBER_TAG = "trial_number"

SKOPS_TRUSTED_TYPES = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
"""Types skops does not trust by default that our own sklearn Pipelines contain (reviewed:
the numpy dtype descriptor and the HistGradientBoosting tree arrays). Extend per call with
`log_model(trusted_types=...)`; never trust everything skops reports."""

_TRIAL_STATUS = {
    "COMPLETE": RunStatus.FINISHED,
    "PRUNED": RunStatus.KILLED,
    "FAIL": RunStatus.FAILED,
}
_SQLITE_PREFIX = "sqlite:///"


def configure(mlflow_settings: MlflowSettings) -> MlflowClient:
    """Point MLflow at the configured tracking and registry, make sure the experiment exists."""
    return _connect(mlflow_settings)[0]


def ensure_experiment(client: MlflowClient, mlflow_settings: MlflowSettings) -> str:
    """The id of the configured experiment, created with the configured artifact location."""
    name = mlflow_settings.experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, mlflow_settings.artifact_location)
        except MlflowException as err:  # created concurrently by another step
            if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment = client.get_experiment_by_name(name)
            assert experiment is not None
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    if experiment.artifact_location != mlflow_settings.artifact_location:
        log.warning(
            "experiment %s keeps its artifact location %s (configured: %s)",
            name,
            experiment.artifact_location,
            mlflow_settings.artifact_location,
        )
    return experiment.experiment_id


@contextmanager
def training_run(
    mlflow_settings: MlflowSettings,
    run_name: str,
    note: str | None = None,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """The MLflow run of one pipeline run; `note` is its hypothesis. Pass `run_id` to resume."""
    _, experiment_id = _connect(mlflow_settings)
    run_tags = {key: str(value) for key, value in (tags or {}).items()}
    if note:
        run_tags[HYPOTHESIS_TAG] = note
    if run_id is not None:
        with mlflow.start_run(run_id=run_id) as run:
            _tag_resumed_run(run_tags, note)
            yield run
        return
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name, tags=run_tags, description=note
    ) as run:
        yield run


def log_lineage(
    data_version: str,
    feature_version: str,
    feature_service: str,
    training_rows: int,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Record which data, features and feature service the active run trained on."""
    _require_active_run("log_lineage")
    lineage = (data_version, feature_version, feature_service, training_rows)
    values = {**dict(zip(LINEAGE_KEYS, lineage, strict=True)), **(extra or {})}
    mlflow.log_params(values)
    mlflow.set_tags(values)


def log_trial(
    parent_run_id: str,
    number: int,
    params: Mapping[str, Any],
    value: float | None,
    state: Any,
    metric_name: str,
) -> str:
    """Record one tuning trial as a finished child run of `parent_run_id`; returns its run id.

    `state` is an Optuna `TrialState` or its name; the objective is logged when finite.
    """
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    state_name = str(getattr(state, "name", state)).upper()
    child = client.create_run(
        parent.info.experiment_id,
        run_name=f"trial-{number:03d}",
        tags={
            MLFLOW_PARENT_RUN_ID: parent_run_id,
            MLFLOW_RUN_NAME: f"trial-{number:03d}",
            TRIAL_NUMBER_TAG: str(number),
            TRIAL_STATE_TAG: state_name,
        },
    )
    run_id = child.info.run_id
    metrics = [Metric(metric_name, float(value), _now_ms(), number)] if _finite(value) else []
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param(key, str(val)) for key, val in params.items()],
        tags=[RunTag("objective", metric_name)],
    )
    status = _TRIAL_STATUS.get(state_name, RunStatus.FINISHED)
    client.set_terminated(run_id, status=RunStatus.to_string(status))
    return run_id


def log_model(
    model: Any,
    name: str,
    input_example: pd.DataFrame,
    registered_model: str | None = None,
    trusted_types: tuple[str, ...] = (),
) -> ModelInfo:
    """Log a fitted sklearn Pipeline on raw feature columns, served through `predict_proba`.

    The signature is inferred from the example and the model's probabilities; integer columns
    are declared as doubles, so rows with missing values match it (callers of the pyfunc
    model pass `integers_as_floats(frame)`). The model is stored with skops and needs only
    scikit-learn, skops and MLflow. A new version of `registered_model` is created when given.
    """
    _require_active_run("log_model")
    example = integers_as_floats(input_example)
    signature = infer_signature(example, model.predict_proba(example))
    return mlflow.sklearn.log_model(
        model,
        name=name,
        signature=signature,
        input_example=example,
        pyfunc_predict_fn="predict_proba",
        registered_model_name=registered_model,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=[*SKOPS_TRUSTED_TYPES, *trusted_types],
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
    )


def log_reports(paths: Mapping[str, Path]) -> None:
    """Attach report files or folders to the active run, each under `reports/<name>`."""
    _require_active_run("log_reports")
    for name, path in paths.items():
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"report {name!r} not found: {path}")
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=f"reports/{name}")
        else:
            mlflow.log_artifact(str(path), artifact_path=f"reports/{name}")


def log_metrics(
    prefix: str, metrics: Mapping[str, Any], step: int | None = None
) -> dict[str, float]:
    """Log finite numbers as `<prefix>_<name>` on the active run; returns what was logged.

    Nested mappings are flattened with `_`; NaN, infinities and non-numbers are skipped.
    """
    _require_active_run("log_metrics")
    logged = {
        key: float(value) for key, value in _flatten(prefix, metrics).items() if _finite(value)
    }
    if logged:
        mlflow.log_metrics(logged, step=step)
    return logged


def integers_as_floats(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with integer columns as float64: the schema then accepts missing values."""
    ints = frame.select_dtypes(include="integer").columns
    return frame.astype(dict.fromkeys(ints, "float64")) if len(ints) else frame.copy()


def _flatten(prefix: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}_{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(name, value))
        else:
            flat[name] = value
    return flat


def _finite(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _connect(mlflow_settings: MlflowSettings) -> tuple[MlflowClient, str]:
    uri = mlflow_settings.tracking_uri
    _ensure_sqlite_folder(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return client, ensure_experiment(client, mlflow_settings)


def _ensure_sqlite_folder(uri: str) -> None:
    if uri.startswith(_SQLITE_PREFIX):
        path = uri[len(_SQLITE_PREFIX) :].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def _tag_resumed_run(tags: dict[str, str], note: str | None) -> None:
    if note:
        mlflow.set_tag(MLFLOW_RUN_NOTE, note)
    if tags:
        mlflow.set_tags(tags)


def _require_active_run(what: str) -> None:
    if mlflow.active_run() is None:
        raise RuntimeError(f"{what} needs an active run: call it inside `training_run(...)`")


def _now_ms() -> int:
    return int(time.time() * 1000)
