"""One tuning trial as a process: the Katib trial container's work."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mlstack.config import Settings
from mlstack.features.definitions import feature_names, label_name


def metric_line(name: str, value: float) -> str:
    """A line Katib's StdOut collector parses; the timestamp lets median stopping order them."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} {name}={value:.6f}"


def run_trial(
    settings: Settings, dataset: str, params: dict[str, Any], emit: Callable[[str], None] = print
) -> float:
    """Fit the tuned model kind with `params` on the training split, emitting the validation
    objective after each stage; returns the final value."""
    from mlstack.models.split import time_split
    from mlstack.models.train import fit_staged, training_frame

    split = time_split(pd.read_parquet(dataset), settings)
    features, label = feature_names(settings), label_name(settings)
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
