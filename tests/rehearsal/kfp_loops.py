"""KFP's local runner (kfp 2.16) made to run a `dsl.ParallelFor` before the tasks that
collect its outputs (`dsl.Collected`), for the rehearsal's sharded training pipeline.

Why a patch: `kfp.local` runs a DAG with control flow through
`kfp/local/orchestrator/enhanced_dag_orchestrator.py`, `run_enhanced_dag`, in three passes:
every plain task first (topologically sorted among themselves), then the conditions, then
the loops. A task that reads a loop's collected outputs is a plain task, so it is sorted
before the loop has run, and the sort fails on the loop it depends on
(`KeyError: 'for-loop-2'`). Two more gaps then stop a collected pipeline:
- each iteration is built by `_create_loop_iteration_task_spec`, which replaces every
  input the loop takes from an upstream task's output parameter with the loop item: a
  shard step would receive its shard number as its settings;
- an input that is a list of artifacts (`Input[list[Dataset]]`, what `dsl.Collected` of an
  artifact gives) is taken for a parameter, and then converted as if it were one artifact
  (`executor_input_utils.construct_executor_input`).

What `collected_loops()` changes, while it is active: a DAG runs in one pass over all its
tasks in dependency order, loops and conditions included; a loop's iteration is the loop
task with its inputs resolved as any task's are, plus its item, and each loop output is
the list of the iterations' outputs in item order; a list of artifacts reaches the step as
its input's artifact list. The rest stays KFP's: iterations run through its
`ParallelExecutor` (two at a time), a task through its `execute_task` (the task handler,
the container, placeholders, outputs, each iteration's own folder under the pipeline
root), conditions through its `ConditionEvaluator`. The compiled IR is not touched: it is
the one a cluster runs.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from kfp import dsl
from kfp.compiler import pipeline_spec_builder
from kfp.local import executor_input_utils, graph_utils, io, status
from kfp.local.orchestrator import enhanced_dag_orchestrator as kfp_dag
from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils
from kfp.pipeline_spec import pipeline_spec_pb2

log = logging.getLogger(__name__)

_kfp_executor_input = executor_input_utils.construct_executor_input


def executor_input(
    component_spec: pipeline_spec_pb2.ComponentSpec,
    arguments: dict[str, Any],
    task_root: str,
    block_input_artifact: bool,
) -> pipeline_spec_pb2.ExecutorInput:
    """KFP's executor input for a step, with each collected list of artifacts as its input's
    artifact list: KFP is handed one artifact in the list's place, then the list replaces it."""
    declared = component_spec.input_definitions.artifacts
    lists = {k: v for k, v in arguments.items() if k in declared and isinstance(v, list)}
    stand_ins = {k: v[0] if v else dsl.Artifact(name=k) for k, v in lists.items()}
    built = _kfp_executor_input(
        component_spec, {**arguments, **stand_ins}, task_root, block_input_artifact
    )
    for name, artifacts in lists.items():
        converted = [executor_input_utils.dsl_artifact_to_artifact_list(a) for a in artifacts]
        built.inputs.artifacts[name].CopyFrom(
            pipeline_spec_pb2.ArtifactList(
                artifacts=[a for one in converted for a in one.artifacts]
            )
        )
    return built


def _iteration(loop: pipeline_spec_pb2.PipelineTaskSpec, item: Any):
    """The loop task as a plain task for one item: its own inputs, plus the item."""
    task = pipeline_spec_pb2.PipelineTaskSpec()
    task.CopyFrom(loop)
    task.ClearField("parameter_iterator")
    item_input = task.inputs.parameters[loop.parameter_iterator.item_input]
    item_input.runtime_value.constant.CopyFrom(pipeline_spec_builder.to_protobuf_value(item))
    return task


def _items(loop: pipeline_spec_pb2.PipelineTaskSpec, io_store: io.IOStore) -> list[Any]:
    """What a parameter loop iterates over: its raw list, or one of its inputs."""
    if loop.WhichOneof("iterator") != "parameter_iterator":
        raise NotImplementedError("only parameter loops (ParallelFor over values) are patched")
    items = loop.parameter_iterator.items
    if items.HasField("raw"):
        return json.loads(items.raw)
    value = OrchestratorUtils.make_task_arguments(loop.inputs, io_store)[items.input_parameter]
    return json.loads(value) if isinstance(value, str) else list(value)


def _run_loop(name: str, loop, io_store: io.IOStore, components, **context):
    """Every iteration of a loop; its outputs: per output, the iterations' values in order."""
    items = _items(loop, io_store)
    iterations = [(f"{name}-iteration-{i}", _iteration(loop, item)) for i, item in enumerate(items)]
    # KFP's executor indents each task's log by swapping builtins.print in and out; from two
    # threads the swaps interleave and can leave the indenting print in place for good.
    printing = builtins.print
    try:
        outputs, state = kfp_dag.ParallelExecutor().execute_parallel_tasks(
            tasks=iterations,
            components=components,
            io_store=io_store,
            parallelism_limit=loop.iterator_policy.parallelism_limit,
            **context,
        )
    finally:
        builtins.print = printing
    if state == status.Status.FAILURE:
        return {}, state
    declared = components[loop.component_ref.name].output_definitions
    keys = [*declared.parameters, *declared.artifacts]
    return {key: [outputs[task][key] for task, _ in iterations] for key in keys}, state


def run_dag(
    pipeline_resource_name: str,
    dag_component_spec: pipeline_spec_pb2.ComponentSpec,
    executors: dict,
    components: dict,
    dag_arguments: dict[str, Any],
    pipeline_root: str,
    runner: Any,
    unique_pipeline_id: str,
    fail_stack: list[str],
):
    """`run_enhanced_dag` (same signature and result), in one pass in dependency order."""
    io_store = io.IOStore()
    arguments = OrchestratorUtils.join_user_inputs_and_defaults(
        dag_arguments=dag_arguments, dag_inputs_spec=dag_component_spec.input_definitions
    )
    for key, value in arguments.items():
        io_store.put_parent_input(key, value)
    context = {
        "pipeline_resource_name": pipeline_resource_name,
        "executors": executors,
        "pipeline_root": pipeline_root,
        "runner": runner,
        "unique_pipeline_id": unique_pipeline_id,
        "fail_stack": fail_stack,
    }
    tasks = dag_component_spec.dag.tasks
    order = graph_utils.topological_sort_tasks(dict(tasks))
    while order:
        name = order.pop()
        task = tasks[name]
        condition = task.trigger_policy.condition
        if condition and not kfp_dag.ConditionEvaluator.evaluate_condition(condition, io_store):
            log.info("skipping %s: its condition is false", name)
            continue
        if task.WhichOneof("iterator"):
            outputs, state = _run_loop(name, task, io_store, components, **context)
        else:
            outputs, state = kfp_dag.execute_task(
                task_name=name,
                task_spec=task,
                components=components,
                io_store=io_store,
                **context,
            )
        if state == status.Status.FAILURE:
            fail_stack.append(name)
            return {}, state
        for key, value in outputs.items():
            io_store.put_task_output(name, key, value)
    outputs = OrchestratorUtils.get_dag_outputs(
        dag_outputs_spec=dag_component_spec.dag.outputs, io_store=io_store
    )
    return outputs, status.Status.SUCCESS


@contextlib.contextmanager
def collected_loops() -> Iterator[None]:
    """KFP's local runner, while active, runs loops before their collectors (see above)."""
    originals = (kfp_dag.run_enhanced_dag, executor_input_utils.construct_executor_input)
    kfp_dag.run_enhanced_dag = run_dag
    executor_input_utils.construct_executor_input = executor_input
    try:
        yield
    finally:
        kfp_dag.run_enhanced_dag, executor_input_utils.construct_executor_input = originals
