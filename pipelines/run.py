"""Compile the pipelines to KFP IR YAML, or run them here with the KFP local runner."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from mlstack.config import Settings
from mlstack.steps.summary import RunSummary

IMAGE_ROOT = "/app"  # the image's WORKDIR: where the bundled config and data live


def compile_training(settings: Settings, out_dir: Path) -> Path:
    """Write the training pipeline as KFP IR YAML, its default settings set for the image."""
    from pipelines.training import training_pipeline

    return compile_pipeline(
        training_pipeline, settings.pipeline.name, settings, Path(out_dir) / "training.yaml"
    )


def compile_pipeline(pipeline: Any, name: str, settings: Settings, path: Path) -> Path:
    """Compile `pipeline` to KFP IR YAML at `path`: the settings (moved under the image's
    working directory) are its default `settings_json`, and every component runs in
    `pipeline.base_image`."""
    from kfp import compiler

    from components.image import BASE_IMAGE

    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        pipeline,
        package_path=str(path),
        pipeline_name=name,
        pipeline_parameters={"settings_json": image_settings(settings).to_json()},
    )
    # Components are declared with the default image; the configured one is a deploy choice.
    text = path.read_text()
    path.write_text(
        text.replace(f"image: {BASE_IMAGE}\n", f"image: {settings.pipeline.base_image}\n")
    )
    return path


def image_settings(settings: Settings) -> Settings:
    """The same settings with local paths moved under the image's working directory."""
    data = settings.model_dump(mode="json")
    root = str(settings.root)

    def move(value: str) -> str:
        return IMAGE_ROOT + value[len(root) :] if value.startswith(root) else value

    data["root"] = IMAGE_ROOT
    data["artifacts_dir"] = move(data["artifacts_dir"])
    data["feast"]["repo_path"] = move(data["feast"]["repo_path"])
    data["source"]["uri"] = move(data["source"]["uri"])
    return Settings.model_validate(data)


def init_local_runner(settings: Settings) -> None:
    """Set up the KFP local runner: each step a subprocess of this Python, outputs under
    ``<artifacts_dir>/kfp``, the first failing step raises.

    The step processes run with ``PYTHONOPTIMIZE=1``: Feast decorates its classes with
    typeguard's ``@typechecked``, which re-parses their modules' source on import (about
    8 s in each step that imports Feast); optimised mode, typeguard's documented switch,
    turns that off. Nothing in mlstack relies on ``assert`` at run time.
    """
    from kfp import local

    os.environ.setdefault("PYTHONOPTIMIZE", "1")
    warnings.filterwarnings("ignore", message=".*non-Python base image.*")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(settings.artifacts_dir / "kfp"),
        raise_on_error=True,
    )


def run_training_locally(settings: Settings, note: str = "") -> RunSummary:
    """Run the training pipeline with the KFP local runner (one subprocess per step)."""
    from pipelines.training import training_pipeline

    init_local_runner(settings)
    task = training_pipeline(settings_json=settings.to_json(), note=note)
    return RunSummary.from_json(task.output)
