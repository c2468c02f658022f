"""The compiled pipelines, as a KFP UI user uploads them: compiled with the cluster profile,
checked for what they carry (parameters, profile, resources, caching, credentials, image)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlstack.config import Settings
from pipelines.batch_scoring import compile_batch_scoring
from pipelines.monitoring import compile_monitoring
from pipelines.profile import CLUSTER_PROFILE, IMAGE_ROOT, config_version, profile_settings
from pipelines.run import compile_training
from tests.support.paths import CONFIG, PROJECT
from tests.support.pipeline_tasks import TRAINING_TASKS

pytestmark = pytest.mark.component

IMAGE = "registry.example/mlstack:9.9"
COMPILERS = {
    "training": compile_training,
    "batch_scoring": compile_batch_scoring,
    "monitoring": compile_monitoring,
}
# KFP caching as stated in the pipelines: on only for pure functions of inputs and parameters
CACHED = {
    "training": {"configure", "validate", "training-set", "summarize"},
    "batch_scoring": {"configure"},
    "monitoring": {"configure"},
}
SECRET = "mlpipeline-minio-artifact"
RESOURCE_KEYS = (
    "resourceCpuRequest",
    "resourceCpuLimit",
    "resourceMemoryRequest",
    "resourceMemoryLimit",
)


@dataclass
class Compiled:
    """One compiled pipeline file: its text, the IR document and the platform document."""

    text: str
    ir: dict[str, Any]
    platform: dict[str, Any]


def load_compiled(path: Path) -> Compiled:
    text = path.read_text()
    docs = list(yaml.safe_load_all(text))
    platform = docs[1] if len(docs) > 1 else {}
    return Compiled(text, docs[0], platform)


def machine_paths(tmp_root: Path) -> list[str]:
    """Absolute paths of this machine that must not reach a compiled pipeline."""
    return sorted(
        {str(PROJECT), str(Path.cwd()), str(Path.home()), "/root", "/home", str(tmp_root)}
    )


def all_tasks(ir: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task of the pipeline, including those inside conditions (sub-DAGs), by name."""
    found = dict(ir["root"]["dag"]["tasks"])
    for component in ir["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


def assert_deployable(compiled: Compiled, forbidden: list[str]) -> None:
    """What every compiled pipeline must satisfy to run as uploaded: no path of the
    compiling machine anywhere in the file, and cpu and memory requests and limits on
    every executor (every step's container)."""
    for path in forbidden:
        assert path not in compiled.text, f"the compiled pipeline carries {path}"
    executors = compiled.ir["deploymentSpec"]["executors"]
    assert executors
    for name, spec in executors.items():
        resources = spec["container"].get("resources", {})
        missing = [key for key in RESOURCE_KEYS if not resources.get(key)]
        assert not missing, f"{name} has no {', '.join(missing)}"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return profile_settings(
        CONFIG,
        PROJECT / CLUSTER_PROFILE,
        [f"pipeline.base_image={IMAGE}"],
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> dict[str, Compiled]:
    out = tmp_path_factory.mktemp("dist")
    return {name: load_compiled(build(settings, out)) for name, build in COMPILERS.items()}


@pytest.fixture(scope="module")
def compiled(dist: dict[str, Compiled]) -> dict:
    return dist["training"].ir


@pytest.mark.parametrize("name", sorted(COMPILERS))
def test_every_compiled_pipeline_is_deployable(
    dist: dict[str, Compiled], name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert_deployable(dist[name], machine_paths(tmp_path_factory.getbasetemp()))
    assert "/tmp/pytest-of-" not in dist[name].text


def test_the_check_catches_a_machine_path_and_a_step_without_resources(
    settings: Settings, tmp_path: Path
) -> None:
    leaky = settings.model_copy(update={"artifacts_dir": tmp_path / "artifacts"})
    bad = load_compiled(compile_monitoring(leaky, tmp_path))
    with pytest.raises(AssertionError, match="carries"):
        assert_deployable(bad, machine_paths(tmp_path))
    good = load_compiled(compile_monitoring(settings, tmp_path / "good"))
    assert_deployable(good, machine_paths(tmp_path))
    executor = next(iter(good.ir["deploymentSpec"]["executors"].values()))
    del executor["container"]["resources"]["resourceMemoryLimit"]
    with pytest.raises(AssertionError, match="resourceMemoryLimit"):
        assert_deployable(good, machine_paths(tmp_path))


def test_tasks_and_order(compiled: dict) -> None:
    tasks = compiled["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(TRAINING_TASKS)
    assert tasks["ingest"]["dependentTasks"] == ["configure"]
    assert set(tasks["validate"]["dependentTasks"]) == {"configure", "ingest"}
    # features reads validation's cleaned table: nothing reaches Feast from bad data
    assert "validate" in tasks["features"]["dependentTasks"]
    cleaned = tasks["features"]["inputs"]["artifacts"]["transactions"]["taskOutputArtifact"]
    assert cleaned == {"outputArtifactKey": "clean", "producerTask": "validate"}
    assert set(tasks["training-set"]["dependentTasks"]) == {"configure", "features", "validate"}
    assert set(tasks["materialize"]["dependentTasks"]) == {"configure", "features"}
    assert tasks["features"]["taskInfo"]["name"] == "features"
    # the model steps run in lifecycle order, the registry last of all
    assert set(tasks["tune"]["dependentTasks"]) == {"configure", "start-run", "training-set"}
    assert set(tasks["train"]["dependentTasks"]) == {
        "configure",
        "start-run",
        "training-set",
        "tune",
    }
    # tuning hands its best fit to training as an artifact: an edge of the graph
    best_fit = tasks["train"]["inputs"]["artifacts"]["best_fit"]["taskOutputArtifact"]
    assert best_fit == {"outputArtifactKey": "best_fit", "producerTask": "tune"}
    assert "params_json" not in tasks["train"]["inputs"].get("parameters", {})
    # the summary reads the best parameters off the same artifact; tune returns no string
    summarized = tasks["summarize"]["inputs"]["artifacts"]["best_fit"]["taskOutputArtifact"]
    assert summarized == {"outputArtifactKey": "best_fit", "producerTask": "tune"}
    assert "baselines" in tasks["evaluate"]["dependentTasks"]
    assert set(tasks["register"]["dependentTasks"]) >= {"evaluate", "train", "baselines"}
    # the gate may choose a baseline: register gets the baselines' models
    baselines_in = tasks["register"]["inputs"]["artifacts"]["baselines"]["taskOutputArtifact"]
    assert baselines_in == {"outputArtifactKey": "models", "producerTask": "baselines"}


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
        "clean": "system.Dataset",
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
    assert kinds("tune", "outputDefinitions") == {
        "best_fit": "system.Model",
        "stats": "system.Metrics",
    }
    assert "parameters" not in comps["comp-tune"]["outputDefinitions"]
    assert kinds("train", "inputDefinitions")["best_fit"] == "system.Model"
    assert kinds("train", "outputDefinitions")["challenger"] == "system.Model"
    assert kinds("baselines", "outputDefinitions")["models"] == "system.Model"


def parameters(ir: dict) -> dict[str, tuple[str, Any]]:
    """The pipeline's parameters: name -> (type, default)."""
    found = ir["root"]["inputDefinitions"]["parameters"]
    return {name: (p["parameterType"], p.get("defaultValue")) for name, p in found.items()}


def carried_profile(ir: dict) -> str:
    """The settings the pipeline carries: the configure task's constant `profile` input."""
    inputs = ir["root"]["dag"]["tasks"]["configure"]["inputs"]["parameters"]
    return inputs["profile"]["runtimeValue"]["constant"]


def test_typed_parameters_with_defaults_from_the_profile(dist: dict[str, Compiled]) -> None:
    training = dist["training"].ir
    profile = carried_profile(training)
    version = config_version(profile)
    assert parameters(training) == {
        "data_uri": ("STRING", f"{IMAGE_ROOT}/data/cdnow_master.txt.gz"),
        "note": ("STRING", ""),
        "max_trials": ("NUMBER_INTEGER", 12),
        "horizon_days": ("NUMBER_INTEGER", 30),
        "config_version": ("STRING", version),
    }
    assert parameters(dist["batch_scoring"].ir) == {
        "snapshot_date": ("STRING", ""),
        "model_alias": ("STRING", "champion"),
        "config_version": ("STRING", version),
    }
    assert parameters(dist["monitoring"].ir) == {
        "window_days": ("NUMBER_INTEGER", 7),
        "config_version": ("STRING", version),
    }
    # each parameter tells the UI user what it is
    for compiled in dist.values():
        for name, spec in compiled.ir["root"]["inputDefinitions"]["parameters"].items():
            assert spec.get("description"), name
    # the three carry the same profile, as a task constant, not as a parameter
    for name in ("batch_scoring", "monitoring"):
        assert carried_profile(dist[name].ir) == profile


def test_the_profile_is_the_cluster_one(compiled: dict) -> None:
    carried = json.loads(carried_profile(compiled))
    assert carried["mode"] == "cluster"
    assert carried["cache"] is False
    assert carried["root"] == IMAGE_ROOT
    assert carried["artifacts_dir"] == "/tmp/mlstack"
    assert carried["mlflow"]["tracking_uri"] == (
        "http://mlstack-mlflow.kubeflow.svc.cluster.local:5000"
    )
    assert carried["mlflow"]["registered_model"] == "mlstack-propensity"  # from the data config
    assert carried["feast"]["config_file"] == "feature_store.cluster.yaml"
    assert carried["feast"]["feature_service"] == "customer_propensity_v1"
    assert carried["pipeline"]["object_store_secret"] == SECRET


def test_every_later_step_reads_the_configured_settings(dist: dict[str, Compiled]) -> None:
    for name, compiled in dist.items():
        tasks = all_tasks(compiled.ir)
        for task_name, task in tasks.items():
            settings_in = task.get("inputs", {}).get("parameters", {}).get("settings_json")
            if task_name == "configure" or "componentRef" not in task or settings_in is None:
                continue
            source = settings_in.get("taskOutputParameter") or settings_in
            assert source.get("producerTask") == "configure" or source.get(
                "componentInputParameter", ""
            ).startswith("pipelinechannel--configure"), (name, task_name)
    wiring = all_tasks(dist["training"].ir)["configure"]["inputs"]["parameters"]
    for parameter in ("data_uri", "max_trials", "horizon_days", "config_version"):
        assert wiring[parameter] == {"componentInputParameter": parameter}
    start = all_tasks(dist["training"].ir)["start-run"]["inputs"]["parameters"]
    assert start["note"] == {"componentInputParameter": "note"}


def test_resources_on_every_step_larger_for_tuning_and_training(dist: dict[str, Compiled]) -> None:
    executors = dist["training"].ir["deploymentSpec"]["executors"]
    resources = {
        name.removeprefix("exec-"): e["container"]["resources"] for name, e in executors.items()
    }
    default = resources["ingest"]
    assert default["resourceCpuLimit"] == "2" and default["resourceMemoryLimit"] == "3Gi"
    for step in ("tune", "train"):
        assert resources[step]["cpuLimit"] > default["cpuLimit"]
        assert resources[step]["memoryLimit"] > default["memoryLimit"]
        assert resources[step]["memoryRequest"] > default["memoryRequest"]
    for step, spec in resources.items():
        if step not in ("tune", "train"):
            assert spec == default, step


def test_caching_is_stated_per_task(dist: dict[str, Compiled]) -> None:
    for name, compiled in dist.items():
        tasks = {
            task_name: task
            for task_name, task in all_tasks(compiled.ir).items()
            if "componentRef" in task and not task_name.startswith("condition")
        }
        cached = {
            task_name
            for task_name, task in tasks.items()
            if task["cachingOptions"].get("enableCache")
        }
        assert cached == CACHED[name], name


def test_the_object_store_secret_is_on_every_step(dist: dict[str, Compiled]) -> None:
    for name, compiled in dist.items():
        executors = compiled.ir["deploymentSpec"]["executors"]
        platform = compiled.platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        assert set(platform) == set(executors), name
        for spec in platform.values():
            (secret,) = spec["secretAsEnv"]
            assert secret["secretName"] == SECRET
            assert {e["secretKey"]: e["envVar"] for e in secret["keyToEnv"]} == {
                "accesskey": "AWS_ACCESS_KEY_ID",
                "secretkey": "AWS_SECRET_ACCESS_KEY",
            }
    # names, never values: nothing else of a Secret is in the file
    assert "secretValue" not in dist["training"].text


def test_every_step_runs_in_the_configured_image(dist: dict[str, Compiled]) -> None:
    for compiled in dist.values():
        for spec in compiled.ir["deploymentSpec"]["executors"].values():
            container = spec["container"]
            assert container["image"] == IMAGE
            # the image carries kfp and mlstack: nothing is pip-installed at run time
            assert "pip install" not in " ".join(container["command"])
    assert len(dist["training"].ir["deploymentSpec"]["executors"]) == len(TRAINING_TASKS)


def test_a_local_profile_compile_mounts_no_secret(tmp_path: Path) -> None:
    local = profile_settings(CONFIG, None, [f"root={PROJECT}"])
    compiled = load_compiled(compile_monitoring(local, tmp_path))
    assert compiled.platform == {}
    assert json.loads(carried_profile(compiled.ir))["root"] == IMAGE_ROOT
    assert_deployable(compiled, machine_paths(tmp_path))
