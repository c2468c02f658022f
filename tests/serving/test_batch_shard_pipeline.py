"""The compiled batch-scoring pipeline fans out over the shards with ParallelFor and
collects their scores; with one shard it is today's pipeline; locally it keeps one task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlstack.config import Settings
from pipelines.batch_scoring import build_batch_scoring_pipeline, compile_batch_scoring
from pipelines.profile import CLUSTER_PROFILE, profile_settings
from tests.support.paths import CONFIG, PROJECT

pytestmark = pytest.mark.component  # the KFP compiler

ONE_SHARD_TASKS = ["configure", "score"]


def settings_for(*overrides: str, cluster: bool = True) -> Settings:
    return profile_settings(CONFIG, PROJECT / CLUSTER_PROFILE if cluster else None, list(overrides))


def compiled(tmp_path: Path, *overrides: str) -> dict[str, Any]:
    path = compile_batch_scoring(settings_for(*overrides), tmp_path)
    return next(yaml.safe_load_all(path.read_text()))


def test_one_shard_compiles_todays_tasks(tmp_path: Path) -> None:
    ir = compiled(tmp_path)
    assert sorted(ir["root"]["dag"]["tasks"]) == ONE_SHARD_TASKS
    assert "parameterIterator" not in str(ir)
    assert set(ir["deploymentSpec"]["executors"]) == {"exec-configure", "exec-score"}
    output = ir["root"]["dag"]["outputs"]["parameters"]["Output"]
    assert output["valueFromParameter"]["producerSubtask"] == "score"


def test_four_shards_fan_out_with_parallel_for_and_collect(tmp_path: Path) -> None:
    ir = compiled(tmp_path, "features.shards=4")
    root = ir["root"]["dag"]["tasks"]
    loops = {name: task for name, task in root.items() if "parameterIterator" in task}
    assert len(loops) == 1
    ((loop_name, loop),) = loops.items()
    assert yaml.safe_load(loop["parameterIterator"]["items"]["raw"]) == [0, 1, 2, 3]
    inner = ir["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert sorted(inner) == ["score-shard"]
    shard_inputs = inner["score-shard"]["inputs"]["parameters"]
    assert "loop-item" in shard_inputs["shard"]["componentInputParameter"]
    # each shard scores at the pipeline's date, with the configured settings
    assert "snapshot_date" in str(shard_inputs["snapshot_date"])
    assert set(root) == {"configure", loop_name, "collect-scores"}
    collect = root["collect-scores"]["inputs"]
    for name in ("parts", "results"):
        kind = "artifacts" if name == "parts" else "parameters"
        producer = collect[kind][name]
        assert (
            producer.get("taskOutputArtifact", producer.get("taskOutputParameter"))["producerTask"]
            == loop_name
        )
    # the pipeline returns the collecting task's model version, as the one-shard `score`'s
    output = ir["root"]["dag"]["outputs"]["parameters"]["Output"]
    assert output["valueFromParameter"]["producerSubtask"] == "collect-scores"
    executors = ir["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-configure", "exec-score-shard", "exec-collect-scores"}
    commands = {name: " ".join(e["container"]["command"]) for name, e in executors.items()}
    assert "score_shard_step" in commands["exec-score-shard"]
    assert "collect_scores_step" in commands["exec-collect-scores"]
    # the parameters a UI user fills in do not change with the shards
    assert set(ir["root"]["inputDefinitions"]["parameters"]) == {
        "snapshot_date",
        "model_alias",
        "config_version",
    }


@pytest.mark.parametrize("shards", [1, 4])
def test_local_runs_keep_the_one_score_task(shards: int) -> None:
    """Locally the shards are processes in the `score` step."""
    settings = settings_for(f"features.shards={shards}", cluster=False)
    spec = build_batch_scoring_pipeline(settings, fan_out=False).pipeline_spec
    assert sorted(spec.root.dag.tasks) == ONE_SHARD_TASKS
