"""The compiled training pipeline fans out over the shards with ParallelFor; with one shard
it is today's pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlstack.config import Settings
from pipelines.profile import CLUSTER_PROFILE, profile_settings
from pipelines.run import compile_training
from tests.support.paths import PROJECT
from tests.support.pipeline_tasks import TRAINING_TASKS

pytestmark = pytest.mark.component  # the KFP compiler


def compiled(tmp_path: Path, *overrides: str) -> dict[str, Any]:
    settings: Settings = profile_settings(
        PROJECT / "configs" / "cdnow.yaml", PROJECT / CLUSTER_PROFILE, list(overrides)
    )
    return yaml.safe_load_all(compile_training(settings, tmp_path).read_text()).__next__()


def test_one_shard_compiles_todays_tasks(tmp_path: Path) -> None:
    ir = compiled(tmp_path)
    assert sorted(ir["root"]["dag"]["tasks"]) == sorted(TRAINING_TASKS)
    assert "parameterIterator" not in str(ir)


def test_four_shards_fan_out_with_parallel_for(tmp_path: Path) -> None:
    ir = compiled(tmp_path, "features.shards=4")
    root = ir["root"]["dag"]["tasks"]
    loops = {name: task for name, task in root.items() if "parameterIterator" in task}
    assert len(loops) == 3
    inner: dict[str, list[str]] = {}
    for name, task in loops.items():
        items = task["parameterIterator"]["items"]["raw"]
        assert yaml.safe_load(items) == [0, 1, 2, 3]  # one iteration per shard
        component = ir["components"][task["componentRef"]["name"]]
        inner[name] = sorted(component["dag"]["tasks"])
    assert sorted(inner.values()) == [
        ["features-shard"],
        ["materialize-shard"],
        ["training-set-shard"],
    ]
    # the per-shard tasks take the loop item as their shard
    for task in loops.values():
        component = ir["components"][task["componentRef"]["name"]]
        (shard_task,) = component["dag"]["tasks"].values()
        shard_input = shard_task["inputs"]["parameters"]["shard"]
        assert "loop-item" in shard_input["componentInputParameter"]
    # the collecting tasks and the rest of the pipeline are outside the loops
    outside = set(root) - set(loops)
    expected = set(TRAINING_TASKS) - {"features", "training-set", "materialize"}
    assert outside == expected | {
        "split-shards",
        "collect-features",
        "collect-training-set",
        "materialize-plan",
        "collect-materialized",
    }
    collected = root["collect-training-set"]["inputs"]["artifacts"]["parts"]
    assert collected["taskOutputArtifact"]["producerTask"] in loops
    # downstream steps read the collected outputs
    start = root["start-run"]["inputs"]["artifacts"]
    assert start["dataset"]["taskOutputArtifact"]["producerTask"] == "collect-training-set"
    assert start["feature_table"]["taskOutputArtifact"]["producerTask"] == "collect-features"


@pytest.mark.parametrize("shards", [1, 4])
def test_local_runs_keep_the_single_tasks(shards: int) -> None:
    """Locally the shards are processes in the features and training-set steps."""
    from pipelines.training import build_training_pipeline

    settings = profile_settings(
        PROJECT / "configs" / "cdnow.yaml", None, [f"features.shards={shards}"]
    )
    spec = build_training_pipeline(settings, fan_out=False).pipeline_spec
    assert sorted(spec.root.dag.tasks) == sorted(TRAINING_TASKS)


def test_four_shards_materialize_in_a_pod_each_after_the_collected_features(
    tmp_path: Path,
) -> None:
    ir = compiled(tmp_path, "features.shards=4")
    root = ir["root"]["dag"]["tasks"]
    loops = {
        name: task
        for name, task in root.items()
        if "parameterIterator" in task
        and "materialize-shard" in ir["components"][task["componentRef"]["name"]]["dag"]["tasks"]
    }
    ((name, loop),) = loops.items()
    assert yaml.safe_load(loop["parameterIterator"]["items"]["raw"]) == [0, 1, 2, 3]
    component = ir["components"][loop["componentRef"]["name"]]
    (shard_task,) = component["dag"]["tasks"].values()
    assert shard_task["componentRef"]["name"] == "comp-materialize-shard"
    # planned once, from the collected feature table; every shard gets the plan
    plan = root["materialize-plan"]["inputs"]["artifacts"]["feature_table"]
    assert plan["taskOutputArtifact"]["producerTask"] == "collect-features"
    assert "materialize-plan" in loop["dependentTasks"]
    planned = shard_task["inputs"]["parameters"]["plan_json"]["componentInputParameter"]
    assert "materialize-plan" in planned
    # recorded once every shard is done, from what the shards return; the summary reads it
    done = root["collect-materialized"]["inputs"]["parameters"]["shards_done"]
    assert done["taskOutputParameter"]["producerTask"] == name
    summary = root["summarize"]["inputs"]["parameters"]["materialized_until"]
    assert summary["taskOutputParameter"]["producerTask"] == "collect-materialized"
    # a shard pod writes the online store: never served from KFP's cache
    assert not shard_task.get("cachingOptions", {}).get("enableCache", False)


def test_every_shard_loop_keeps_its_task_key_as_its_name(tmp_path: Path) -> None:
    """A loop's `taskInfo.name` is the key `dsl.Collected` consumers name as producer: KFP's
    Argo driver looks the producer up by that name, and a `ParallelFor(name=...)` breaks the
    collected steps at run time (kubeflow/pipelines#13239), so the loops carry no name."""
    ir = compiled(tmp_path, "features.shards=4")
    loops = {k: t for k, t in ir["root"]["dag"]["tasks"].items() if "parameterIterator" in t}
    assert len(loops) == 3  # features, training set, materialization
    assert all(task["taskInfo"]["name"] == key for key, task in loops.items())
