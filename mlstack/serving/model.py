"""The served model: resolved from the MLflow registry (an alias) or a storage URI, loaded in
full, and scored on a float64 feature matrix. The server and batch scoring both use it.

Scoring calls the registered sklearn Pipeline's own `predict_proba`. When the Pipeline starts
with the column selector of `mlstack.models.candidates` (it picks exactly the features, in
order, from a DataFrame), that step is an identity on a matrix whose columns are already in
that order, so the rest of the Pipeline is called on the matrix directly and no DataFrame is
built per request. This fast path is used only when it gives bit-identical probabilities to
the whole Pipeline on the model's input example and on a probe with missing values. For a
gradient boosting model the trees are then walked together (`serving.trees`), again only
when that is bit-identical to the model, on the example and on probes at every threshold.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlstack.config import Settings
from mlstack.serving.trees import TreeTable, tree_table

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from sklearn.pipeline import Pipeline

    from mlstack.serving.trees import TreeTable

# mlflow (its package import pulls in tracing, genai, projects …) and sklearn (also through
# `serving.trees`) are imported where a model is resolved or loaded, not when this module is
# imported: importing the server, the CLI or batch scoring does not pay for them up front.

log = logging.getLogger(__name__)

# probe batches (of trees.MAX_ROWS rows) the stacked-tree scorer must match the model on
PROBES = 16
STORAGE_VERSION = "storage"
"""The version of a model served from a storage URI until its MLmodel names it (the logged
model id, else the run id)."""
LOAD_MODULES = ("mlflow.artifacts", "mlflow.models", "mlflow.sklearn", "skops.io")
"""What `load` imports when it runs (MLflow's loaders, skops): a process that loads models in
its children can import them first (`steps.sharded.in_processes(preload=...)`)."""


class ModelLoadError(RuntimeError):
    """The model could not be resolved or loaded; the message says which and why."""


@dataclass(frozen=True)
class ModelRef:
    """Where a model version lives: registered name, version and the URI to load."""

    name: str
    version: str
    uri: str


@dataclass
class LoadedModel:
    """A fully loaded model version and how to score it."""

    ref: ModelRef
    features: tuple[str, ...]
    estimator: Any
    fast: Any | None = None
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> str:
        return self.ref.version

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """The purchase probability of each row of a float64 matrix in `features` order."""
        if self.fast is not None:
            return self.fast.predict_proba(matrix)[:, 1]
        frame = pd.DataFrame(matrix, columns=list(self.features), copy=False)
        return self.estimator.predict_proba(frame)[:, 1]


def resolve(settings: Settings, client: MlflowClient | None = None) -> ModelRef:
    """The model to serve: `serving.storage_uri` if set (its version is then the logged
    model's id), else the version holding `serving.model_alias` of the registered model."""
    name = settings.mlflow.registered_model
    if settings.serving.storage_uri:
        return ModelRef(name=name, version=STORAGE_VERSION, uri=settings.serving.storage_uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = client or MlflowClient(
        tracking_uri=settings.mlflow.tracking_uri, registry_uri=settings.mlflow.tracking_uri
    )
    alias = settings.serving.model_alias
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ModelLoadError(
                f"no version of {name!r} holds the alias {alias!r}: {err}"
            ) from err
        raise ModelLoadError(
            f"cannot ask the MLflow registry at {settings.mlflow.tracking_uri} for "
            f"{name!r}@{alias}: {err}"
        ) from err
    return ModelRef(
        name=name, version=str(version.version), uri=f"models:/{name}/{version.version}"
    )


def load(ref: ModelRef, tracking_uri: str | None = None) -> LoadedModel:
    """Download and load `ref` fully, check it scores, and pick the fast path if it is exact."""
    started = time.perf_counter()
    # One download of the model's folder, then everything is read from it: the model's
    # metadata, its input example and the estimator would each fetch it again (through the
    # registry and the tracking server) if given the URI.
    with tempfile.TemporaryDirectory(prefix="mlstack-model-") as scratch:
        try:
            import mlflow
            import mlflow.artifacts
            import mlflow.sklearn
            from mlflow.models import Model

            if tracking_uri:
                mlflow.set_tracking_uri(tracking_uri)
                mlflow.set_registry_uri(tracking_uri)
            folder = ref.uri
            if not Path(folder).is_dir():
                folder = mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=scratch)
            info = Model.load(folder)
            estimator = mlflow.sklearn.load_model(folder)
        except Exception as err:  # any failure to fetch or unpickle is a load failure
            raise ModelLoadError(
                f"cannot load {ref.name} version {ref.version} ({ref.uri}): {err}"
            ) from err
        if ref.version == STORAGE_VERSION:  # name the version by the logged model it holds
            logged = getattr(info, "model_id", None) or info.run_id
            if logged:
                ref = ModelRef(name=ref.name, version=str(logged), uri=ref.uri)
        features = _signature_features(info, ref.uri)
        if not hasattr(estimator, "predict_proba"):
            raise ModelLoadError(f"{ref.uri} has no predict_proba")
        example = _example(info, features, folder)
    model = LoadedModel(ref=ref, features=features, estimator=estimator)
    try:
        reference = estimator.predict_proba(pd.DataFrame(example, columns=list(features)))[:, 1]
    except Exception as err:
        raise ModelLoadError(f"{ref.uri} fails on its own input example: {err}") from err
    if not np.all(np.isfinite(reference)):
        raise ModelLoadError(f"{ref.uri} returns non-finite probabilities on its example")
    model.fast = _fast_path(estimator, features, example, reference)
    log.info(
        "loaded %s version %s from %s in %.2fs (%d features, %s path)",
        ref.name,
        ref.version,
        ref.uri,
        time.perf_counter() - started,
        len(features),
        _path_name(model.fast),
    )
    return model


def _path_name(fast: Any) -> str:

    if fast is None:
        return "DataFrame"
    return "stacked-tree" if isinstance(fast, TreeTable) else "array"


def _signature_features(info: Any, uri: str) -> tuple[str, ...]:
    signature = info.signature
    if signature is None or signature.inputs is None:
        raise ModelLoadError(f"{uri} has no input signature")
    names = signature.inputs.input_names()
    if not names or any(not isinstance(name, str) for name in names):
        raise ModelLoadError(f"{uri}: the signature does not name its input columns")
    return tuple(names)


def _example(info: Any, features: tuple[str, ...], folder: str) -> np.ndarray:
    """The logged input example (if any) plus a row of all-missing values, as float64."""
    rows = []
    try:
        example = info.load_input_example(folder)
    except Exception:  # an example is optional
        example = None
    if isinstance(example, pd.DataFrame) and set(features) <= set(example.columns):
        rows.append(example[list(features)].to_numpy(dtype=np.float64))
    rows.append(np.full((1, len(features)), math.nan))
    return np.vstack(rows)


def _fast_path(
    estimator: Any, features: tuple[str, ...], example: np.ndarray, reference: np.ndarray
) -> Any | None:
    """The Pipeline after its column selector, if the selector passes `features` through in
    order and the rest gives exactly the same probabilities on a matrix."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(estimator, Pipeline) or len(estimator.steps) < 2:
        return None
    selector = estimator.steps[0][1]
    if not isinstance(selector, ColumnTransformer) or selector.remainder != "drop":
        return None
    spec = selector.transformers  # as built; the fitted copy holds an identity transformer
    if len(spec) != 1 or not isinstance(spec[0][1], str) or spec[0][1] != "passthrough":
        return None
    if list(spec[0][2]) != list(features):
        return None
    tail = estimator[1:]
    if getattr(tail.steps[0][1], "feature_names_in_", None) is not None:
        return None  # fitted on names: a bare matrix would be checked against them
    try:
        fast = tail.predict_proba(example)[:, 1]
    except Exception:
        return None
    if not np.array_equal(fast, reference):
        return None
    return _tree_table(tail, example, reference) or tail


def _tree_table(tail: Pipeline, example: np.ndarray, reference: np.ndarray) -> TreeTable | None:
    """The boosting model's trees walked together, if the tail is just that model and the
    table's probabilities equal the model's on the example and on threshold probes."""
    table = tree_table(tail[-1], large=tail) if len(tail.steps) == 1 else None
    if table is None:
        return None
    probes = [table.probe(seed=seed) for seed in range(PROBES)]
    exact = np.array_equal(table.predict_proba(example)[:, 1], reference) and all(
        np.array_equal(table.predict_proba(probe), tail.predict_proba(probe)) for probe in probes
    )
    if not exact:
        log.warning("the stacked-tree scorer differs from the model; scoring tree by tree")
    return table if exact else None
