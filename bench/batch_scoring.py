"""Batch scoring by customer shard: 1 shard against N, on the bundled data or a bigger log.

    python bench/batch_scoring.py [--shards 4] [--source LOG] [--json PATH]

Prepares a scratch project once: ingest and validate the log (`--source`, default the
bundled CDNOW; e.g. `mlstack synth`'s `cdnow_synth.txt.gz`), the features step with N
shards (the partitioned Feast source, built in processes), the same rows as the one-shard
source file (written partition after partition, so no step holds the whole table), and a
small gradient-boosting model fitted on labelled rows of shard 0 and registered as
`champion` in a SQLite MLflow. Then it scores the latest snapshot with 1 shard and with N
(`mlstack.steps.scoring.score_step`, what `mlstack score` runs), each in a fresh process,
and reports the wall time of the step, and, sampled every 50 ms with psutil, the peak RSS
of the step's process, of its largest shard worker and of the whole process tree summed
(not `ru_maxrss`: a child forked from this bench would start from the bench's own peak);
and checks that the two score files are equal, row for row. The preparation is not timed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "bench"))

import pandas as pd  # noqa: E402
from foundation import (  # noqa: E402
    MEMORY_HEADER,
    copy_project,
    make_champion,
    measure,
    memory_cells,
)

from mlstack.config import Settings, load_settings  # noqa: E402

BUNDLED = PROJECT / "data" / "cdnow_master.txt.gz"
TRAIN_ROWS = 200_000  # labelled rows the model is fitted on: its quality is not the point


def settings_for(root: Path, shards: int, source: Path) -> Settings:
    return load_settings(
        root / "configs" / "cdnow.yaml",
        [f"root={root}", f"source.uri={source}", "cache=false", f"features.shards={shards}"],
    )


def prepare(root: Path, shards: int, source: Path) -> dict:
    """Features with `shards` shards and as one file, both as Feast sources, and a champion."""
    import pyarrow.parquet as pq

    from mlstack.features import store
    from mlstack.features.shards import partition
    from mlstack.steps import data

    one, many, out = settings_for(root, 1, source), settings_for(root, shards, source), root / "out"
    ingested = data.ingest_step(one, out / "tx.parquet")
    data.validate_step(one, out / "tx.parquet", ingested, out / "v.html", out / "clean.parquet")
    clean, table = out / "clean.parquet", out / "features"
    built = data.features_step(many, clean, ingested.data_version, table, out / "p.html")
    schema = store.source_schema(one)
    target = store.source_path(one)
    target.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(target, schema) as writer:
        for shard in range(shards):
            part = pq.read_table(partition(store.source_path(many), shard))
            writer.write_table(part.select(schema.names).cast(schema))
    store.apply(one)  # the project's registry: the one-shard file (the shards use their own)
    register_champion(one, clean, partition(table, 0))
    return {"feature_rows": built.metrics["feature_rows"], "customers": built.metrics["customers"]}


def register_champion(settings: Settings, clean: Path, features: Path) -> None:
    from threadpoolctl import threadpool_limits

    from mlstack.features.build import build_labels
    from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_names, label_name
    from mlstack.models.candidates import make_model

    names, keys = feature_names(settings), [ENTITY, EVENT_TIMESTAMP]
    rows = pd.read_parquet(features)
    labelled = build_labels(pd.read_parquet(clean), rows[keys], settings).merge(rows, on=keys)
    frame = labelled.sample(n=min(TRAIN_ROWS, len(labelled)), random_state=0)
    model = make_model("gradient_boosting", {"max_iter": 50}, names)
    with threadpool_limits(2):
        model.fit(frame[names], frame[label_name(settings.features)])
    make_champion(settings, model, frame[names].head(20))


def score(root: Path, shards: int, source: Path) -> dict:
    """In this process: score the latest snapshot with `shards` shards; its figures."""
    from mlstack.steps.scoring import score_step

    started = time.perf_counter()
    result = score_step(settings_for(root, shards, source), None, root / f"scores-{shards}")
    return {
        "wall_s": time.perf_counter() - started,
        "rows": result.rows,
        "parquet": str(result.parquet),
        "csv": str(result.csv),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--source", type=Path, default=BUNDLED)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # root, shards, source
    args = parser.parse_args()
    if args.child:
        root, shards, source = args.child
        print(json.dumps(score(Path(root), int(shards), Path(source))))
        return

    source = args.source.resolve()
    with tempfile.TemporaryDirectory(prefix="mlstack-bench-") as tmp:
        root = Path(tmp)
        copy_project(root)
        started = time.perf_counter()
        prepared = prepare(root, args.shards, source)
        prepared["prepare_s"] = time.perf_counter() - started
        figures = {}
        for shards in (1, args.shards):
            command = [sys.executable, __file__, "--child", str(root), str(shards), str(source)]
            run = measure(command, stdout=subprocess.PIPE)
            if run.returncode:
                raise SystemExit(f"scoring with {shards} shards failed ({run.returncode})")
            figures[shards] = run.result() | {"process_s": run.seconds}
        one, many = figures[1], figures[args.shards]
        pd.testing.assert_frame_equal(
            pd.read_parquet(many["parquet"]), pd.read_parquet(one["parquet"]), check_exact=True
        )
        equal = Path(many["csv"]).read_bytes() == Path(one["csv"]).read_bytes()
    print(f"source {source.name}: {prepared}")
    print(f"{'shards':>6}{'rows':>10}{'step s':>8}{'process s':>11}{MEMORY_HEADER}")
    for shards, f in figures.items():
        print(
            f"{shards:>6}{f['rows']:>10,}{f['wall_s']:>8.1f}{f['process_s']:>11.1f}"
            f"{memory_cells(f)}"
        )
    print(f"parquet equal row for row: True; csv byte for byte: {equal}")
    if args.json:
        result = {"prepared": prepared, "figures": figures, "csv_equal": equal}
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
