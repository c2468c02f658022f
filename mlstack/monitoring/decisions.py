"""The decisions log: one JSON line per drift check, with the decision and its reasons.

It lives in the state store (`<state>/monitoring/decisions.jsonl`): on a cluster each check
is a new pod, and the log is how one check sees the ones before it."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from mlstack import storage
from mlstack.config import Settings

log = logging.getLogger(__name__)


def log_path(settings: Settings) -> str:
    return settings.state("monitoring", "decisions.jsonl")


def record(settings: Settings, assessment: Any) -> dict[str, Any]:
    """Append the check's decision, reasons, window and headline numbers to the log."""
    entry = {
        "checked_at": datetime.now(UTC).isoformat(),
        "action": assessment.decision.action,
        "reasons": assessment.decision.reasons,
        "drifted_share": assessment.drifted_share,
        "drifted_features": [c.column for c in assessment.features if c.drifted],
        "prediction_drift": None
        if assessment.prediction is None
        else assessment.prediction.statistic,
        "performance": assessment.performance,
        "window": assessment.window,
        "model": assessment.model,
    }
    # Read, then write the whole log back: an object store has no append. Checks do not run
    # at once (the CronJob forbids concurrency), and the log stays small (a line a check).
    uri = log_path(settings)
    before = (
        storage.read_bytes(uri, settings.object_store)
        if storage.exists(uri, settings.object_store)
        else b""
    )
    line = json.dumps(entry, default=str) + "\n"
    storage.write_bytes(uri, before + line.encode(), settings.object_store)
    log.info("decision %s: %s", entry["action"], "; ".join(entry["reasons"]))
    return entry


def read_log(settings: Settings) -> list[dict[str, Any]]:
    """Every recorded decision, oldest first."""
    uri = log_path(settings)
    if not storage.exists(uri, settings.object_store):
        return []
    text = storage.read_bytes(uri, settings.object_store).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
