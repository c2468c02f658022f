"""The rehearsal's patch of KFP's local runner (tests/rehearsal/kfp_loops.py) on a pipeline of
the sharded training pipeline's shape: an upstream output, a ParallelFor whose iterations
read it, and a step collecting the iterations' parameters and artifacts.

No `from __future__ import annotations` here: KFP reads the components' annotations as
types, not strings.
"""

import json

import pytest
from kfp import dsl, local
from kfp.dsl import Dataset, Input, Output

from tests.rehearsal.kfp_loops import collected_loops

pytestmark = pytest.mark.component  # KFP's local runner, one subprocess per step
IMAGE = "python:3.11"  # named, not used: the subprocess runner runs this Python


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def offset() -> int:
    return 10


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def produce(item: int, base: int, fail_on: int, part: Output[Dataset]) -> int:
    from pathlib import Path

    if item == fail_on:
        raise RuntimeError(f"iteration {item} fails, as asked")
    Path(part.path).write_text(str(item))
    return base + item


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def collect(values: list[int], parts: Input[list[Dataset]]) -> str:
    import json
    from pathlib import Path

    return json.dumps({"values": values, "parts": [Path(p.path).read_text() for p in parts]})


@dsl.pipeline(name="collected-loop")
def collected_loop(fail_on: int = -1) -> str:
    base = offset()
    with dsl.ParallelFor(items=[0, 1, 2]) as item:
        made = produce(item=item, base=base.output, fail_on=fail_on)
    return collect(
        values=dsl.Collected(made.outputs["Output"]), parts=dsl.Collected(made.outputs["part"])
    ).output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def listed() -> list:
    return [3, 4]


@dsl.pipeline(name="loop-over-an-output")
def loop_over_an_output() -> str:
    base = offset()
    with dsl.ParallelFor(items=listed().output) as item:
        made = produce(item=item, base=base.output, fail_on=-1)
    return collect(
        values=dsl.Collected(made.outputs["Output"]), parts=dsl.Collected(made.outputs["part"])
    ).output


@pytest.fixture
def runner(tmp_path) -> None:
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path),
        raise_on_error=True,
    )


def test_kfp_runs_the_collector_before_the_loop(runner) -> None:
    """Why the patch exists; once KFP runs this pipeline, the patch can go."""
    with pytest.raises(KeyError, match="for-loop"):
        collected_loop()


def test_with_the_patch_the_collector_gets_every_iteration_in_order(runner, tmp_path) -> None:
    with collected_loops():
        task = collected_loop()
    # each iteration read the upstream output, not its item in its place
    assert json.loads(task.output) == {"values": [10, 11, 12], "parts": ["0", "1", "2"]}
    ran = sorted(p.parent.parent.name for p in tmp_path.glob("collected-loop-*/*/produce/part"))
    assert ran == [f"for-loop-2-iteration-{i}" for i in range(3)]


def test_with_the_patch_a_loop_over_an_upstream_list(runner) -> None:
    with collected_loops():
        task = loop_over_an_output()
    assert json.loads(task.output) == {"values": [13, 14], "parts": ["3", "4"]}


def test_with_the_patch_a_failing_iteration_fails_the_run_naming_it(runner) -> None:
    with collected_loops(), pytest.raises(RuntimeError, match="for-loop-2-iteration-1"):
        collected_loop(fail_on=1)


def test_the_patch_is_undone_on_leaving(runner) -> None:
    with collected_loops():
        pass
    with pytest.raises(KeyError, match="for-loop"):
        collected_loop()
