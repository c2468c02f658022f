"""The pipelines' steps as plain functions: paths in, a typed result out.

KFP components are thin wrappers over these (typed artifacts in and out, then a call here),
and the same functions run without KFP, so each step is unit-testable on its own.
`data` holds ingest to training set, `model` baselines to training, `gate` evaluation and
registration, `summary` the run's one-page summary; `results` the result of each step.
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from mlstack.failures import recorded

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def configure_logging(level: int = logging.INFO) -> None:
    """Step logs on stderr, once per process (an entry point: the CLI or a component).

    Leaves logging alone when the process already has handlers (the KFP executor's).
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


def step(fn: Callable[P, R]) -> Callable[P, R]:
    """Log a step's start and its duration; steps are entry points inside components.

    A step that raises leaves the record a local run reads to say what failed
    (`mlstack.failures.recorded`), then raises as before.
    """

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        configure_logging()
        name = fn.__name__.removesuffix("_step")
        log.info("step %s: started", name)
        started = time.perf_counter()
        with recorded(name):
            result = fn(*args, **kwargs)
        log.info("step %s: done in %.1f s", name, time.perf_counter() - started)
        return result

    return run


def keep(src: Path, dest: Path) -> Path:
    """Copy a step output (a file, or a folder) into the versioned artifacts folder a
    person browses."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if Path(src).resolve() != dest.resolve():
        if Path(src).is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, dest)
    return dest
