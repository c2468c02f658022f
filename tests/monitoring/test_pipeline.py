"""The compiled monitoring pipeline: a drift check, then a retrain only when it says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlstack.config import load_settings
from pipelines.monitoring import compile_monitoring

pytestmark = pytest.mark.component


def test_compiled_monitoring_pipeline(tmp_path: Path) -> None:
    settings = load_settings(overrides=["pipeline.base_image=registry.example/mlstack:9.9"])
    path = compile_monitoring(settings, tmp_path)
    assert path == tmp_path / "monitoring.yaml"
    spec = yaml.safe_load(path.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    (condition,) = [t for name, t in tasks.items() if name not in ("configure", "drift-check")]
    assert condition["dependentTasks"] == ["configure", "drift-check"]
    assert condition["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--drift-check-action'] == 'retrain'"
    )
    inner = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    retrain = inner["retrain"]["inputs"]["parameters"]
    assert (
        retrain["window_id"]["componentInputParameter"] == "pipelinechannel--drift-check-window_id"
    )
    assert retrain["reasons"]["componentInputParameter"] == "pipelinechannel--drift-check-reasons"
    outputs = spec["components"]["comp-drift-check"]["outputDefinitions"]
    assert set(outputs["parameters"]) == {"action", "window_id", "reasons"}
    assert {k: v["artifactType"]["schemaTitle"] for k, v in outputs["artifacts"].items()} == {
        "report": "system.HTML",
        "stats": "system.Metrics",
    }
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/mlstack:9.9"}
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"window_days", "config_version"}
    profile = spec["root"]["dag"]["tasks"]["configure"]["inputs"]["parameters"]["profile"]
    assert json.loads(profile["runtimeValue"]["constant"])["root"] == "/app"
