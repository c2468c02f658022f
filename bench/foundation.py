"""`make bench`, the foundation part: ingest, validate, features and the Feast training set.

    python bench/foundation.py [--json PATH]

Runs each stage on the full bundled data in one process, in pipeline order, and records its
wall time and the peak RSS of the process, with any it starts, while it ran (sampled every
5 ms). Then times Feast's point-in-time join against a plain pandas `merge_asof` of the same
entity rows, each in its own subprocess (bench/feast_join.py). Targets: the whole part
within 60 s and 4 GB; the Feast build within 5x of merge_asof.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "bench"))

from feast_join import bench_join, format_report  # noqa: E402

from mlstack.config import Settings, load_settings  # noqa: E402

TIME_BUDGET_S = 60.0
MEMORY_BUDGET_MB = 4096.0
FEAST_RATIO_BUDGET = 5.0
MIB = 2**20


class PeakRss:
    """Samples, in a thread every `interval` seconds, the RSS of process `pid` (default: this
    one) and of each of its descendants: each process's own peak (by pid, with its role) and
    the peak of the tree's sum, since the start or the last `reset()`.

    Sampled with psutil, not `ru_maxrss`: Linux carries a process's high-water mark across
    exec, so a worker spawned from a large process would report at least that size. A peak
    shorter than the interval can be missed: the figures are lower bounds, of what was seen.
    """

    def __init__(
        self, pid: int | None = None, interval: float = 0.05, limit: int | None = None
    ) -> None:
        self.pid = pid or os.getpid()
        self._interval = interval
        self.limit = limit  # bytes: a tree seen past it is killed (`over_limit` says so)
        self.over_limit = False
        self._lock = threading.Lock()
        self._own: dict[int, int] = {}  # pid -> its peak RSS (bytes)
        self._roles: dict[int, str] = {}
        self._tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:  # the root has ended
            return []

    def sample(self) -> None:
        """Read every process of the tree once and raise the peaks."""
        seen: dict[int, int] = {}
        processes = self._processes()
        for proc in processes:
            with contextlib.suppress(psutil.Error):  # ended between listing and reading
                seen[proc.pid] = proc.memory_info().rss
                if seen[proc.pid] > self._own.get(proc.pid, 0):
                    self._roles[proc.pid] = role_of(proc)
        with self._lock:
            for pid, rss in seen.items():
                self._own[pid] = max(self._own.get(pid, 0), rss)
            self._tree = max(self._tree, sum(seen.values()))
        if self.limit is not None and sum(seen.values()) > self.limit and not self.over_limit:
            self.over_limit = True
            for proc in reversed(processes):  # the workers first, then the root
                with contextlib.suppress(psutil.Error):
                    proc.kill()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def reset(self) -> None:
        with self._lock:
            self._own, self._tree = {}, 0
        self.sample()

    def own_mb(self) -> float:
        """The root process's own peak."""
        return self._own.get(self.pid, 0) / MIB

    def worker_mb(self) -> float | None:
        """The largest peak of any one descendant (a shard worker, say); None without any."""
        others = [rss for pid, rss in self._own.items() if pid != self.pid]
        return max(others) / MIB if others else None

    def tree_mb(self) -> float:
        """The peak of the tree's RSS summed over its processes at one sample."""
        return self._tree / MIB

    def processes(self) -> list[dict[str, Any]]:
        """Every process seen, largest peak first: pid, role and peak (MiB)."""
        with self._lock:
            found = sorted(self._own.items(), key=lambda item: -item[1])
        return [
            {"pid": pid, "role": self._roles.get(pid, "?"), "peak_rss_mb": rss / MIB}
            for pid, rss in found
        ]

    def figures(self) -> dict[str, Any]:
        """The root's own peak, the largest descendant's, the tree's, and every process's."""
        return {
            "peak_rss_mb": self.own_mb(),
            "worker_peak_rss_mb": self.worker_mb(),
            "tree_peak_rss_mb": self.tree_mb(),
            "processes": self.processes(),
        }


def role_of(proc: psutil.Process) -> str:
    """What a process is, from its command line: a multiprocessing worker or resource tracker,
    else its program and first argument."""
    line = proc.cmdline()
    text = " ".join(line)
    if "--multiprocessing-fork" in text or "spawn_main" in text:
        return "worker"
    if "resource_tracker" in text:
        return "resource tracker"
    if "forkserver" in text:
        return "forkserver"
    return " ".join(Path(part).name if n == 0 else part for n, part in enumerate(line[:3]))


MEMORY_HEADER = f"{'own MB':>8}{'worker MB':>11}{'tree MB':>9}"


def memory_cells(figures: dict[str, Any]) -> str:
    """A process's own peak, its largest worker's and its tree's, under `MEMORY_HEADER`."""
    worker = figures.get("worker_peak_rss_mb")
    cell = "-" if worker is None else f"{worker:.0f}"
    return f"{figures['peak_rss_mb']:>8.0f}{cell:>11}{figures['tree_peak_rss_mb']:>9.0f}"


@dataclass
class Measured:
    """A child process that ran to its end while its tree was sampled."""

    returncode: int
    stdout: str | None
    stderr: str | None
    seconds: float
    peaks: PeakRss

    def result(self) -> dict[str, Any]:
        """The JSON object the child printed last, with the sampled peaks."""
        return {**json.loads(self.stdout.strip().splitlines()[-1]), **self.peaks.figures()}


def measure(
    command: list[str], interval: float = 0.05, limit: int | None = None, **popen: Any
) -> Measured:
    """Run `command` to its end (`popen`: `subprocess.Popen`'s keywords; text mode), sampling
    the RSS of its process and its descendants every `interval` seconds; with `limit`
    (bytes), the tree is killed when its sum is seen past it (`peaks.over_limit`)."""
    started = time.perf_counter()
    with (
        subprocess.Popen(command, text=True, **popen) as proc,
        PeakRss(proc.pid, interval, limit) as peaks,
    ):
        stdout, stderr = proc.communicate()
    return Measured(proc.returncode, stdout, stderr, time.perf_counter() - started, peaks)


class Foundation:
    """The foundation's stages on one data set; each stage keeps what the next one needs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def ingest(self) -> str:
        from mlstack.data.ingest import ingest

        self.ingested = ingest(self.settings)
        self.transactions = pd.read_parquet(self.ingested.path)
        return f"{self.ingested.rows:,} rows, version {self.ingested.data_version}"

    def validate(self) -> str:
        from mlstack.data.validate import validate

        report, self.transactions = validate(
            self.transactions, self.settings, self.ingested.data_version
        )
        report.raise_for_errors()
        return f"{len(report.rules)} rules, {report.rows_out:,} rows kept"

    def features(self) -> str:
        from mlstack.features.build import build_features

        self.feature_table = build_features(self.transactions, self.settings)
        return f"{len(self.feature_table):,} customer x snapshot rows"

    def feast_source(self) -> str:
        from mlstack.features import store

        store.write_source(self.feature_table, self.settings)
        store.apply(self.settings)
        return "source written, repo applied"

    def labels(self) -> str:
        from mlstack.features.build import build_labels
        from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP

        keys = self.feature_table[[ENTITY, EVENT_TIMESTAMP]]
        self.entity_rows = build_labels(self.transactions, keys, self.settings)
        return f"{len(self.entity_rows):,} labelled entity rows"

    def training_set(self) -> str:
        from mlstack.features import store

        frame = store.training_set(store.open_store(self.settings), self.entity_rows, self.settings)
        return f"{len(frame):,} x {frame.shape[1]} training set via Feast"

    def stages(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("ingest", self.ingest),
            ("validate", self.validate),
            ("features", self.features),
            ("feast source + apply", self.feast_source),
            ("labels", self.labels),
            ("feast training set", self.training_set),
        ]


def make_champion(
    settings: Settings, model: Any, example: pd.DataFrame, run_id: str | None = None
) -> str:
    """Log `model` to MLflow (in run `run_id`, else a new run), register it and make it the
    champion, as the register step does for a model the gate passed, without the gate; the
    registered version. `example`: a few rows of its feature columns (its signature)."""
    import mlflow

    from mlstack.registry import models, tracking

    client = tracking.configure(settings.mlflow)
    name = settings.mlflow.registered_model
    try:
        with tracking.training_run(settings.mlflow, "bench", run_id=run_id):
            info = tracking.log_model(model, tracking.MODEL_NAME, example, registered_model=name)
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
    version = str(models.register(client, settings.mlflow, info.model_uri).version)
    models.promote(client, settings.mlflow, version, "bench: no gate", "bench")
    return version


def copy_project(root: Path) -> None:
    """The project's configs and feature repo (without its data) copied under `root`."""
    shutil.copytree(PROJECT / "configs", root / "configs")
    shutil.copytree(
        PROJECT / "feature_repo",
        root / "feature_repo",
        ignore=shutil.ignore_patterns("data", "__pycache__"),
    )


@contextmanager
def project_copy() -> Iterator[Settings]:
    """Settings for a scratch copy of the project, so the bench leaves feature_repo/ alone."""
    with tempfile.TemporaryDirectory(prefix="mlstack-bench-") as tmp:
        root = Path(tmp)
        copy_project(root)
        yield load_settings(
            root / "configs" / "cdnow.yaml",
            {"root": str(root), "source": {"uri": str(PROJECT / "data" / "cdnow_master.txt.gz")}},
        )


def run_stages(run: Foundation) -> list[dict[str, Any]]:
    """Time each stage and record the peak RSS of this process (and any it starts) while it
    ran."""
    rows: list[dict[str, Any]] = []
    with PeakRss(interval=0.005) as rss:
        for name, stage in run.stages():
            rss.reset()
            started = time.perf_counter()
            detail = stage()
            seconds = time.perf_counter() - started
            peak = rss.tree_mb()
            rows.append({"stage": name, "seconds": seconds, "peak_mb": peak, "detail": detail})
            print(f"  {name:<22} {seconds:7.2f} s {peak:8.0f} MiB  {detail}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    print("foundation stages on the full bundled data (one process, pipeline order):")
    with project_copy() as settings:
        run = Foundation(settings)
        rows = run_stages(run)
        total = sum(r["seconds"] for r in rows)
        peak = max(r["peak_mb"] for r in rows)
        print(f"  {'total':<22} {total:7.2f} s {peak:8.0f} MiB (process peak)")
        print("\nFeast point-in-time join vs pandas merge_asof (same entity rows, own processes):")
        join = bench_join(run.feature_table, run.entity_rows, settings)
    print(format_report(join))
    ratio = join["feast_vs_merge_asof"]
    checks = {
        f"whole part <= {TIME_BUDGET_S:.0f} s": total <= TIME_BUDGET_S,
        f"process peak <= {MEMORY_BUDGET_MB:.0f} MiB": peak <= MEMORY_BUDGET_MB,
        f"Feast build <= {FEAST_RATIO_BUDGET:.0f}x merge_asof": ratio is not None
        and ratio <= FEAST_RATIO_BUDGET,
    }
    print("\ntargets:")
    for name, ok in checks.items():
        print(f"  {'met ' if ok else 'MISSED'} {name}")
    if args.json:
        report = {"stages": rows, "total_seconds": total, "peak_mb": peak, "join": join}
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
