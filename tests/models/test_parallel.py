"""Parallel fits: results in order, errors surface, each job on its share of the cores."""

from __future__ import annotations

import threading

import pytest
import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime sklearn's fits use)
from threadpoolctl import threadpool_info

from mlstack.models import parallel

pytestmark = pytest.mark.unit


def _openmp_threads() -> set[int]:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"}


def test_results_come_back_in_job_order() -> None:
    barrier = threading.Barrier(2, timeout=10)

    def job(value: int):
        def run() -> int:
            if value < 2:
                barrier.wait()  # the first two jobs must run at the same time
            return value * 10

        return run

    assert parallel.run_jobs([job(i) for i in range(5)], workers=2) == [0, 10, 20, 30, 40]


def test_a_failing_job_raises_after_the_others_ran() -> None:
    ran: list[str] = []

    def bad() -> None:
        raise RuntimeError("fit failed: singular matrix")

    def good() -> None:
        ran.append("good")

    with pytest.raises(RuntimeError, match="singular matrix"):
        parallel.run_jobs([bad, good], workers=2)
    assert ran == ["good"]


def test_each_job_is_limited_to_its_share_of_the_cores(monkeypatch) -> None:
    # 6 cores: 3 threads a job, a count no machine default here would give by chance
    monkeypatch.setattr(parallel, "cpu_count", lambda: 6)
    assert parallel.threads_per_job(2) == 3
    assert parallel.threads_per_job(8) == 1
    seen = parallel.run_jobs([_openmp_threads, _openmp_threads], workers=2)
    assert seen == [{3}, {3}]


def test_one_worker_runs_in_the_calling_thread() -> None:
    caller = threading.get_ident()
    assert parallel.run_jobs([threading.get_ident], workers=1) == [caller]
