"""One tuning trial as a process: the Katib trial container's work."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mlstack import storage
from mlstack.config import Settings
from mlstack.config.serving import ObjectStoreSettings
from mlstack.features.definitions import feature_names, label_name
from mlstack.models.split import time_split
from mlstack.models.train import fit_staged, training_frame


def metric_line(name: str, value: float) -> str:
    """A line Katib's StdOut collector parses; the timestamp lets median stopping order them."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} {name}={value:.6f}"


def run_trial(
    settings: Settings, dataset: str, params: dict[str, Any], emit: Callable[[str], None] = print
) -> float:
    """Fit the tuned model kind with `params` on the training split, emitting the validation
    objective after each stage; returns the final value."""
    split = time_split(
        _read_dataset(settings.object_store, dataset),
        settings.split,
        settings.features.horizon_days,
    )
    features, label = feature_names(settings), label_name(settings.features)
    metric = settings.tuning.objective
    fitted = fit_staged(
        settings.tuning.model,
        params,
        *training_frame(split.train, features, label),
        *training_frame(split.validation, features, label),
        metric=metric,
        report=lambda step, value: emit(metric_line(metric, value)),
    )
    return fitted.score


def _read_dataset(store: ObjectStoreSettings, uri: str | Path) -> pd.DataFrame:
    """The training set at a path or in the object store (`object_store.endpoint_url`)."""
    if not storage.is_remote(uri):
        return pd.read_parquet(uri)
    return pd.read_parquet(io.BytesIO(storage.read_bytes(uri, store)))
