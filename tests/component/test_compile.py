"""The compiled training pipeline: tasks, wiring, artifact types, parameters and image."""

import json
from pathlib import Path

import pytest
import yaml

from mlstack.config import load_settings
from pipelines.run import IMAGE_ROOT, compile_training

STEPS = [
    "ingest",
    "validate",
    "features",
    "training-set",
    "materialize",
    "start-run",
    "baselines",
    "tune",
    "train",
    "evaluate",
    "register",
    "summarize",
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    settings = load_settings(overrides=["pipeline.base_image=registry.example/mlstack:9.9"])
    path = compile_training(settings, tmp_path_factory.mktemp("dist"))
    return yaml.safe_load(Path(path).read_text())


def test_tasks_and_order(compiled: dict) -> None:
    tasks = compiled["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(STEPS)
    assert tasks["validate"]["dependentTasks"] == ["ingest"]
    # features waits for validation to pass: nothing reaches Feast from bad data
    assert "validate" in tasks["features"]["dependentTasks"]
    assert set(tasks["training-set"]["dependentTasks"]) == {"features", "ingest"}
    assert tasks["materialize"]["dependentTasks"] == ["features"]
    assert tasks["features"]["taskInfo"]["name"] == "features"
    # the model steps run in lifecycle order, the registry last of all
    assert set(tasks["tune"]["dependentTasks"]) == {"start-run", "training-set"}
    assert set(tasks["train"]["dependentTasks"]) == {"start-run", "training-set", "tune"}
    assert "baselines" in tasks["evaluate"]["dependentTasks"]
    assert set(tasks["register"]["dependentTasks"]) >= {"evaluate", "train"}


def test_artifact_types(compiled: dict) -> None:
    comps = compiled["components"]

    def kinds(name: str, side: str) -> dict[str, str]:
        arts = comps[f"comp-{name}"][side].get("artifacts", {})
        return {k: v["artifactType"]["schemaTitle"] for k, v in arts.items()}

    assert kinds("ingest", "outputDefinitions") == {
        "transactions": "system.Dataset",
        "stats": "system.Metrics",
    }
    assert kinds("validate", "outputDefinitions") == {
        "report": "system.HTML",
        "stats": "system.Metrics",
    }
    assert kinds("features", "outputDefinitions") == {
        "feature_table": "system.Dataset",
        "profile": "system.HTML",
        "stats": "system.Metrics",
    }
    assert kinds("training-set", "inputDefinitions") == {
        "transactions": "system.Dataset",
        "feature_table": "system.Dataset",
    }
    assert kinds("training-set", "outputDefinitions")["dataset"] == "system.Dataset"
    assert kinds("summarize", "outputDefinitions") == {"summary": "system.Markdown"}
    assert kinds("evaluate", "outputDefinitions") == {
        "metrics": "system.Metrics",
        "curves": "system.ClassificationMetrics",
        "report": "system.HTML",
    }
    assert kinds("train", "outputDefinitions")["challenger"] == "system.Model"
    assert kinds("baselines", "outputDefinitions")["models"] == "system.Model"


def test_parameters_and_wiring(compiled: dict) -> None:
    params = compiled["root"]["inputDefinitions"]["parameters"]
    assert sorted(params) == ["note", "settings_json"]
    assert params["note"]["defaultValue"] == ""
    defaults = json.loads(params["settings_json"]["defaultValue"])
    # the compiled default points into the image, not at this machine's checkout
    assert defaults["root"] == IMAGE_ROOT
    assert defaults["source"]["uri"] == f"{IMAGE_ROOT}/data/cdnow_master.txt.gz"
    assert defaults["feast"]["feature_service"] == "customer_propensity_v1"
    features_inputs = compiled["root"]["dag"]["tasks"]["features"]["inputs"]["parameters"]
    assert features_inputs["data_version"]["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": "ingest",
    }
    assert compiled["root"]["outputDefinitions"]["parameters"]["Output"]["parameterType"] == (
        "STRING"
    )


def test_every_step_runs_in_the_configured_image(compiled: dict) -> None:
    executors = compiled["deploymentSpec"]["executors"]
    assert len(executors) == len(STEPS)
    for spec in executors.values():
        container = spec["container"]
        assert container["image"] == "registry.example/mlstack:9.9"
        # the image carries kfp and mlstack: nothing is pip-installed at run time
        assert "pip install" not in " ".join(container["command"])
