"""One tuning trial as a process: the Katib trial container's work."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlstack import storage
from mlstack.config import Settings
from mlstack.config.serving import ObjectStoreSettings
from mlstack.features.definitions import feature_names, label_name
from mlstack.features.shards import SHARD_COLUMN, part_name
from mlstack.models.split_file import read_split
from mlstack.models.train import fit_staged, training_frame


def metric_line(name: str, value: float) -> str:
    """A line Katib's StdOut collector parses; the timestamp lets median stopping order them."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} {name}={value:.6f}"


def run_trial(
    settings: Settings, dataset: str, params: dict[str, Any], emit: Callable[[str], None] = print
) -> float:
    """Fit the tuned model kind with `params` on the training split (under the row budget,
    as the local tuning), emitting the validation objective after each stage; returns the
    final value."""
    features, label = feature_names(settings), label_name(settings.features)
    split = read_split(
        _dataset_source(settings.object_store, dataset),
        settings.split,
        settings.features.horizon_days,
        label,
        parts=("train", "validation"),
        columns=features,
    )
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


def _dataset_source(store: ObjectStoreSettings, uri: str | Path) -> str | bytes | list[bytes]:
    """The training set at a path, or its bytes from the object store
    (`object_store.endpoint_url`): a file's, or a partitioned dataset's parts' in shard
    order (a prefix holding ``shard=K/part-0.parquet``)."""
    if not storage.is_remote(uri):
        return str(uri)
    prefix = f"{SHARD_COLUMN}="
    shards = [n for n in storage.listdir(uri, store) if n.startswith(prefix)]
    if not shards:
        return storage.read_bytes(uri, store)
    order = sorted(int(name[len(prefix) :]) for name in shards)
    return [storage.read_bytes(storage.join(uri, part_name(k)), store) for k in order]
