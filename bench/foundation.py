"""`make bench`, the foundation part: ingest, validate, features and the Feast training set.

    python bench/foundation.py [--json PATH]

Runs each stage on the full bundled data in one process, in pipeline order, and records its
wall time and the process's peak RSS while it ran (sampled every 5 ms). Then times Feast's
point-in-time join against a plain pandas `merge_asof` of the same entity rows, each in its
own subprocess (bench/feast_join.py). Targets: the whole part within 60 s and 4 GB; the Feast
build within 5x of merge_asof.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


class PeakRss:
    """Samples RSS in a thread; `peak_mb()` since the last `reset()`. Of this process by
    default; of process `pid`, plus all its descendants summed when `tree` is set."""

    def __init__(self, pid: int | None = None, interval: float = 0.005, tree: bool = False) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval
        self._tree = tree
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        procs = [self._proc]
        if self._tree:
            try:
                procs += self._proc.children(recursive=True)
            except psutil.Error:  # the process has ended
                return 0
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):  # ended between listing and reading
                total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self.rss())
            time.sleep(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def reset(self) -> None:
        self._peak = self.rss()

    def peak_mb(self) -> float:
        return max(self._peak, self.rss()) / 2**20


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
    """Time each stage and record the process's peak RSS while it ran."""
    rows: list[dict[str, Any]] = []
    with PeakRss() as rss:
        for name, stage in run.stages():
            rss.reset()
            started = time.perf_counter()
            detail = stage()
            seconds = time.perf_counter() - started
            peak = rss.peak_mb()
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
