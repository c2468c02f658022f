"""Shared fixtures: a throwaway copy of the project around a small sample of the data, and
the rule that every test has exactly one level (a marker: unit, component, integration,
rehearsal; their meaning is in pyproject.toml)."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlstack.config import Settings, load_settings
from tests.support.kfp_double import KfpApi, serve_kfp
from tests.support.paths import BUNDLED, PROJECT

LEVELS = ("unit", "component", "integration", "rehearsal")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the rule holds for every test
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail collection when a test has no level or more than one."""
    wrong = []
    for item in items:
        levels = sorted({mark.name for mark in item.iter_markers() if mark.name in LEVELS})
        if len(levels) != 1:
            wrong.append(f"  {item.nodeid}: {', '.join(levels) or 'no level'}")
    if wrong:
        raise pytest.UsageError(
            f"every test needs exactly one level marker ({', '.join(LEVELS)}): "
            "`pytestmark = pytest.mark.<level>` for a file of one level, "
            "`@pytest.mark.<level>` on each test of a mixed file; these have not:\n"
            + "\n".join(wrong)
        )


def free_port() -> int:
    """A loopback port nothing listens on now (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow_server(backend: str, port: int, log: Path, *extra: str) -> subprocess.Popen:
    """`mlflow server` on a loopback port (one worker, no job runner), leading its own
    process group so its workers stop with it; `extra`: more of its options."""
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        backend,
        *extra,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # no background job runner: it only serves GenAI jobs and doubles the start-up time
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def write_cdnow_sample(path: Path, max_customer: int) -> Path:
    """The bundled log cut to customers with id <= `max_customer`, same format."""
    with gzip.open(BUNDLED, "rt") as src, gzip.open(path, "wt") as dst:
        for i, line in enumerate(src):
            if i == 0 or int(line.split()[0]) <= max_customer:
                dst.write(line)
    return path


def copy_project(root: Path) -> list[str]:
    """Copy the configs and the feature repo (without its data) into `root`, with a
    1,000-customer sample of the bundled data; returns the overrides that point settings at
    the copy (root, source, the sample's row floor)."""
    shutil.copytree(PROJECT / "configs", root / "configs")
    shutil.copytree(
        PROJECT / "feature_repo",
        root / "feature_repo",
        ignore=shutil.ignore_patterns("data", "__pycache__"),
    )
    sample = write_cdnow_sample(root / "sample.txt.gz", max_customer=1000)
    return [f"root={root}", f"source.uri={sample}", "validation.min_rows=100"]


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Settings]:
    """Make settings for a project copy in tmp_path: its own feature repo, artifacts and data.

    Call it with extra `--set`-style overrides; `source.uri` defaults to a 1,000-customer
    sample of the bundled data, and tuning to two trials.
    """
    copied = copy_project(tmp_path)

    def make(*overrides: str) -> Settings:
        return load_settings(
            tmp_path / "configs" / "cdnow.yaml",
            [*copied, "tuning.max_trials=2", *overrides],
        )

    return make


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow SQLite database: copying it is much faster than migrating."""
    from mlflow import MlflowClient  # lazy: a unit test run does not import MLflow

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def kfp_api() -> Iterator[KfpApi]:
    """The KFP API double on a free loopback port, for one test."""
    with serve_kfp() as api:
        yield api
