"""Run independent fits side by side, each on its share of the cores.

One histogram gradient boosting fit spread over every core with OpenMP gains little on a
machine with few cores, and it collapses when anything else runs there: its threads meet
at a barrier for every histogram, and one descheduled thread stalls them all (measured
on 2 cores, 100 trees on 513k CDNOW rows: 14 s on one thread, 139 s on two threads while
another process used one core). Two fits side by side, one core each, finish in about the
time of one (measured with nothing else running: four tuning fits 47 s one after another
on two threads, 44 s two at a time). Single-threaded fits such as liblinear's gain most.
So tuning trials and the baselines' fit and refit run as jobs in threads, each limited to
``cores // workers`` native threads (OpenMP and BLAS, via threadpoolctl). The fits release
the GIL while they work, so threads are enough.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import joblib
from threadpoolctl import threadpool_limits

T = TypeVar("T")


def cpu_count() -> int:
    """The cores this process may use: the fewest of the machine's, its CPU affinity's and,
    in a container, its cgroup CPU limit's (rounded up). In a pod `os.cpu_count()` is the
    node's cores, so a step limited to one CPU would start a worker for each of them."""
    return joblib.cpu_count()


def threads_per_job(workers: int) -> int:
    """Native threads each of `workers` concurrent jobs gets (at least one)."""
    return max(1, cpu_count() // max(1, workers))


@contextmanager
def job_threads(workers: int) -> Iterator[None]:
    """Limit OpenMP and BLAS in the calling thread to its share of `workers` jobs."""
    with threadpool_limits(limits=threads_per_job(workers)):
        yield


def run_jobs(jobs: Sequence[Callable[[], T]], workers: int | None = None) -> list[T]:
    """Run `jobs` (no arguments each) at most `workers` at a time (default: one per core)
    and return their results in order. A job's exception is raised once all have ended."""
    workers = min(len(jobs), workers or cpu_count())
    if workers <= 1:
        return [job() for job in jobs]

    def run(job: Callable[[], T]) -> T:
        with job_threads(workers):
            return job()

    # limits set here too cover the BLAS pools, which are per process, not per thread
    with job_threads(workers), ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(run, job) for job in jobs]
    return [future.result() for future in futures]
