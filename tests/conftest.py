"""Shared fixtures: a throwaway copy of the project around a small sample of the data."""

from __future__ import annotations

import gzip
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from mlstack.config import Settings, load_settings

PROJECT = Path(__file__).resolve().parents[1]
BUNDLED = PROJECT / "data" / "cdnow_master.txt.gz"


def free_port() -> int:
    """A loopback port nothing listens on now (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_cdnow_sample(path: Path, max_customer: int) -> Path:
    """The bundled log cut to customers with id <= `max_customer`, same format."""
    with gzip.open(BUNDLED, "rt") as src, gzip.open(path, "wt") as dst:
        for i, line in enumerate(src):
            if i == 0 or int(line.split()[0]) <= max_customer:
                dst.write(line)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Settings]:
    """Make settings for a project copy in tmp_path: its own feature repo, artifacts and data.

    Call it with extra `--set`-style overrides; `source.uri` defaults to a 1,000-customer
    sample of the bundled data, and tuning to two trials.
    """
    shutil.copytree(PROJECT / "configs", tmp_path / "configs")
    shutil.copytree(
        PROJECT / "feature_repo",
        tmp_path / "feature_repo",
        ignore=shutil.ignore_patterns("data", "__pycache__"),
    )
    sample = write_cdnow_sample(tmp_path / "sample.txt.gz", max_customer=1000)

    def make(*overrides: str) -> Settings:
        return load_settings(
            tmp_path / "configs" / "cdnow.yaml",
            [
                f"root={tmp_path}",
                f"source.uri={sample}",
                "validation.min_rows=100",
                "tuning.max_trials=2",
                *overrides,
            ],
        )

    return make
