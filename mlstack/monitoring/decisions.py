"""The decisions log: one JSON line per drift check, with the decision and its reasons."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlstack.config import Settings

log = logging.getLogger(__name__)


def log_path(settings: Settings) -> Path:
    return settings.artifacts_dir / "monitoring" / "decisions.jsonl"


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
    path = log_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(entry, default=str) + "\n")
    log.info("decision %s: %s", entry["action"], "; ".join(entry["reasons"]))
    return entry


def read_log(settings: Settings) -> list[dict[str, Any]]:
    """Every recorded decision, oldest first."""
    path = log_path(settings)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
