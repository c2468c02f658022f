"""Locally, each shard runs in a process of its own, as each shard is a pod on a cluster."""

from __future__ import annotations

import os

import pytest

from mlstack.steps.sharded import in_processes

pytestmark = pytest.mark.unit


def process_of(shard: int, offset: int) -> tuple[int, int]:
    return shard + offset, os.getpid()


def test_every_shard_gets_a_fresh_process_and_results_come_in_shard_order() -> None:
    results = in_processes(process_of, 5, 100)
    assert [value for value, _ in results] == [100, 101, 102, 103, 104]
    pids = [pid for _, pid in results]
    assert len(set(pids)) == 5  # no process is reused for a second shard
    assert os.getpid() not in pids
