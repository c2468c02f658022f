"""What every pipeline task gets from the settings: resources, caching, credentials."""

from __future__ import annotations

from typing import Any

from kfp.dsl import PipelineTask

from components.configure import configure
from mlstack.config import Settings


def step_name(task: PipelineTask) -> str:
    """The component's name as in the settings (`training_set`, not `training-set`)."""
    return task.component_spec.name.replace("-", "_")


def place(
    task: PipelineTask, settings: Settings, *, display_name: str, cache: bool
) -> PipelineTask:
    """Name the task, give it its requests and limits (`pipeline.resources`, or
    `pipeline.step_resources[<component name>]`), state its KFP caching, and in cluster mode
    put the object store's credentials (`pipeline.object_store_secret`) in its environment."""
    resources = settings.pipeline.resources_for(step_name(task))
    task.set_display_name(display_name)
    task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
    task.set_caching_options(cache)
    secret = settings.pipeline.object_store_secret
    if settings.mode == "cluster" and secret:
        from kfp import kubernetes

        kubernetes.use_secret_as_env(
            task, secret_name=secret, secret_key_to_env=settings.pipeline.object_store_secret_keys
        )
    return task


def configure_step(settings: Settings, config_version: str, **parameters: Any) -> PipelineTask:
    """The `configure` task: `settings` as its constant profile, the pipeline's parameters
    given, and the profile's own values for the parameters this pipeline does not offer."""
    values = {
        "data_uri": settings.source.uri,
        "max_trials": settings.tuning.max_trials,
        "horizon_days": settings.features.horizon_days,
        "model_alias": settings.serving.model_alias,
        "window_days": settings.monitoring.window_days,
        "snapshot_date": "",
        **parameters,
    }
    task = configure(profile=settings.to_json(), config_version=config_version, **values)
    # cached: a pure function of the compiled profile and the parameters
    return place(task, settings, display_name="configure", cache=True)
