"""Compile the pipelines to KFP IR YAML, or run them here with the KFP local runner."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.image import BASE_IMAGE
from mlstack.config import Settings
from mlstack.failures import record_path, recording_failures
from mlstack.steps.summary import RunSummary
from pipelines.profile import IMAGE_ROOT, image_settings  # noqa: F401 (re-exported)
from pipelines.training import build_training_pipeline


def compile_training(settings: Settings, out_dir: Path) -> Path:
    """Write the training pipeline as KFP IR YAML (`training.yaml`), carrying `settings`."""
    return compile_pipeline(
        build_training_pipeline, settings.pipeline.name, settings, Path(out_dir) / "training.yaml"
    )


def compile_pipeline(
    build: Callable[[Settings], Any], name: str, settings: Settings, path: Path
) -> Path:
    """Compile the pipeline `build(settings)` makes to KFP IR YAML at `path`.

    The settings, with any path under this machine's project root moved under the image's
    working directory, are the profile the pipeline carries (its `configure` step's
    constant input); every component runs in `pipeline.base_image`.
    """
    from kfp import compiler

    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        build(image_settings(settings)), package_path=str(path), pipeline_name=name
    )
    # Components are declared with the default image; the configured one is a deploy choice.
    text = path.read_text()
    path.write_text(
        text.replace(f"image: {BASE_IMAGE}\n", f"image: {settings.pipeline.base_image}\n")
    )
    return path


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


def run_training_locally(settings: Settings, note: str = "", verbose: bool = False) -> RunSummary:
    """Run the training pipeline with the KFP local runner (one subprocess per step); the
    settings are its `configure` step's profile, the parameters keep their defaults.

    A step that fails leaves its record at `failures.record_path(settings.artifacts_dir)`
    (what `mlstack run` prints); its traceback is logged only when `verbose`.
    """
    init_local_runner(settings)
    with recording_failures(record_path(settings.artifacts_dir), verbose):
        # the shards run as processes inside the steps: see pipelines/training.py
        task = build_training_pipeline(settings, fan_out=False)(note=note)
    return RunSummary.from_json(task.output)
