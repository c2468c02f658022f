"""Drift check: the window against the champion's training reference; the policy decides."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Metrics, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def drift_check(settings_json: str, report: Output[HTML], stats: Output[Metrics]) -> NamedTuple(
    "DriftDecision", [("action", str), ("window_id", str), ("reasons", str)]
):
    """In: the settings. Out: `report` (Evidently HTML), `stats` (drifted share, prediction
    drift, realised PR-AUC), and the decision: `action` (none | alert | retrain), the
    window id and the reasons (JSON list). The decision is recorded; nothing is retrained."""
    import json
    from collections import namedtuple
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.monitoring.check import check_step

    result = check_step(Settings.from_json(settings_json), Path(report.path))
    for name, value in result.metrics.items():
        stats.log_metric(name, value)
    out = namedtuple("DriftDecision", ["action", "window_id", "reasons"])
    return out(result.action, result.window_id, json.dumps(result.reasons))
