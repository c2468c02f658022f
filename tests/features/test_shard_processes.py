"""Locally, each shard runs in a process of its own, as each shard is a pod on a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlstack.steps.sharded import in_processes
from tests.support.paths import PROJECT

pytestmark = pytest.mark.unit


def process_of(shard: int, offset: int) -> tuple[int, int]:
    return shard + offset, os.getpid()


def test_every_shard_gets_a_fresh_process_and_results_come_in_shard_order() -> None:
    results = in_processes(process_of, 5, 100)
    assert [value for value, _ in results] == [100, 101, 102, 103, 104]
    pids = [pid for _, pid in results]
    assert len(set(pids)) == 5  # no process is reused for a second shard
    assert os.getpid() not in pids


def importer_of(shard: int) -> tuple[int, int]:
    from tests.support import imported_at  # preloaded: imported before the shard starts

    return os.getpid(), imported_at.PID


def test_the_shards_share_one_import_of_what_they_need() -> None:
    """The modules a shard needs are imported once, in the process the shards are forked
    from, not by each shard (Feast and MLflow took 6-12 s of every shard). A fresh
    interpreter, so that no earlier test has started that process with other modules."""
    script = (
        "import json\n"
        "from mlstack.steps.sharded import in_processes\n"
        "from tests.features.test_shard_processes import importer_of\n"
        "preload = ('tests.support.imported_at',)\n"
        "print(json.dumps(in_processes(importer_of, 4, preload=preload)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.splitlines()[-1])
    shards = {pid for pid, _ in results}
    importers = {importer for _, importer in results}
    assert len(shards) == 4  # still a fresh process a shard
    assert len(importers) == 1 and not importers & shards
