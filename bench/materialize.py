"""Online materialization by customer shard: 1 shard against N, on the bundled data or a
synthetic log (`mlstack synth`).

    python bench/materialize.py [--shards 4] [--source LOG] [--json PATH] [--logs DIR]

Ingests and validates the log once; then, for 1 shard and for N, in a project copy of its
own (its own registry and SQLite online store), builds the feature table (the features step)
and times the materialize step (`mlstack.steps.data.materialize_step`) in a fresh process.
Reports the step's wall time, its CPU time and, sampled every 50 ms (`foundation.PeakRss`),
the peak RSS of the step's process, of its largest shard worker and of the tree summed, and
checks that both online stores hold the same customers and answer the same features for
every one of them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "bench"))

import pandas as pd  # noqa: E402
from foundation import MEMORY_HEADER, copy_project, measure, memory_cells  # noqa: E402

from mlstack.config import Settings, load_settings  # noqa: E402

LOOKUP_BATCH = 10_000  # customers per online lookup


def settings_for(root: Path, source: Path, shards: int) -> Settings:
    return load_settings(
        PROJECT / "configs" / "cdnow.yaml",
        [
            f"root={root}",
            f"source.uri={source}",
            "cache=false",
            f"features.shards={shards}",
            "validation.min_rows=100",
        ],
    )


def child(root: Path, source: Path, shards: int, table: Path) -> dict:
    """In this process: the materialize step; its figures."""
    from mlstack.steps import data

    settings = settings_for(root, source, shards)
    started = time.perf_counter()
    data.materialize_step(settings, table)
    wall = time.perf_counter() - started
    cpu = sum(
        usage.ru_utime + usage.ru_stime
        for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )
    return {
        "wall_s": wall,
        "cpu_s": cpu,  # the step's and its workers', start-up included
    }


def served(settings: Settings, customers: list[str]) -> pd.DataFrame:
    from mlstack.features import store

    feast = store.open_store(settings)
    parts = [
        store.online_features(feast, customers[i : i + LOOKUP_BATCH], settings)
        for i in range(0, len(customers), LOOKUP_BATCH)
    ]
    return pd.concat(parts, ignore_index=True)


def online_rows(settings: Settings) -> int:
    from mlstack.features.definitions import FEATURE_VIEW

    database = settings.feast.repo_path / "data" / "online_store.db"
    with sqlite3.connect(database) as conn:
        query = f'SELECT COUNT(DISTINCT entity_key) FROM "mlstack_{FEATURE_VIEW}"'
        return conn.execute(query).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--source", type=Path, default=PROJECT / "data" / "cdnow_master.txt.gz")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path, help="keep each run's step log in this folder")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # root, source, shards, table
    args = parser.parse_args()
    if args.child:
        root, source, shards, table = args.child
        print(json.dumps(child(Path(root), Path(source), int(shards), Path(table))))
        return

    from mlstack.features.definitions import ENTITY
    from mlstack.steps import data
    from mlstack.steps.online import last_snapshot

    source = args.source.resolve()
    figures, answers = {}, {}
    with tempfile.TemporaryDirectory(prefix="mlstack-bench-") as tmp:
        out = Path(tmp) / "out"
        first = settings_for(Path(tmp), source, 1)
        ingested = data.ingest_step(first, out / "tx.parquet")
        clean = out / "clean.parquet"
        data.validate_step(first, out / "tx.parquet", ingested, out / "v.html", clean)
        for shards in (1, args.shards):
            root = Path(tmp) / f"shards-{shards}"
            copy_project(root)
            settings, table = settings_for(root, source, shards), out / f"features-{shards}"
            data.features_step(settings, clean, "v", table, out / f"p-{shards}.html")
            command = [sys.executable, __file__, "--child", str(root), str(source)]
            logs = args.logs or out
            logs.mkdir(parents=True, exist_ok=True)
            with (logs / f"materialize-{shards}.log").open("w") as log:
                run = measure(
                    [*command, str(shards), str(table)], stdout=subprocess.PIPE, stderr=log
                )
            if run.returncode:
                raise SystemExit(f"materialize with {shards} shards failed: see {log.name}")
            figures[shards] = run.result()
            figures[shards]["online_rows"] = online_rows(settings)
            if shards == 1:  # every customer of the feature table, and one unknown
                ids = pd.read_parquet(table, columns=[ENTITY])[ENTITY].unique()
                customers = [*sorted(str(c) for c in ids), "nobody"]
            answers[shards] = served(settings, customers)
        pd.testing.assert_frame_equal(answers[args.shards], answers[1])
        snapshot = last_snapshot(out / "features-1")
    print(f"last snapshot {snapshot.date()}, {len(answers[1])} customers looked up")
    print(f"{'shards':>6}{'wall s':>9}{'CPU s':>8}{MEMORY_HEADER}{'online':>9}")
    for shards, f in figures.items():
        print(
            f"{shards:>6}{f['wall_s']:>9.1f}{f['cpu_s']:>8.1f}{memory_cells(f)}"
            f"{f['online_rows']:>9}"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    print("every customer's online features: equal")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
