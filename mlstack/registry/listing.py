"""The registered versions as rows (aliases, creation time, run, key test metrics, lineage)
and as the plain-text table `mlstack models` prints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from mlstack.registry.models import (
    GATE_DECISION_TAG,
    KEY_METRICS,
    RegistryError,
    aliases,
    version_metrics,
    version_number,
    versions_of,
)


def list_versions(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Every version, newest first: aliases, creation time, run, key test metrics, lineage."""
    try:
        held = aliases(client, name)
    except RegistryError:
        return []
    by_version: dict[str, list[str]] = {}
    for alias, version in sorted(held.items()):
        by_version.setdefault(version, []).append(alias)
    versions = sorted(versions_of(client, name), key=version_number, reverse=True)
    return [_row(client, version, by_version.get(str(version.version), [])) for version in versions]


def format_versions(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of `list_versions` rows for the terminal."""
    if not rows:
        return "no registered model versions"
    header = [title for _, title in _COLUMNS]
    cells = [[_cell(key, row.get(key)) for key, _ in _COLUMNS] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *cells, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *cells]
    )


_COLUMNS = (
    ("version", "VERSION"),
    ("aliases", "ALIASES"),
    ("created", "CREATED"),
    ("roc_auc", "ROC_AUC"),
    ("pr_auc", "PR_AUC"),
    ("data_version", "DATA"),
    ("gate_decision", "GATE"),
    ("run_id", "RUN"),
)
_ID_WIDTH = 12


def _cell(key: str, value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ",".join(value)
    text = str(value)
    return text[:_ID_WIDTH] if key in {"run_id", "data_version"} else text


def _row(client: MlflowClient, version: ModelVersion, aliases: list[str]) -> dict[str, Any]:
    metrics = version_metrics(client, version)
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
    return {
        "version": int(version.version),
        "aliases": aliases,
        "created": created.isoformat(timespec="seconds"),
        "run_id": version.run_id,
        **{key: metrics.get(key) for key in KEY_METRICS},
        "data_version": version.tags.get("data_version"),
        "gate_decision": version.tags.get(GATE_DECISION_TAG),
    }
