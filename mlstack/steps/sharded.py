"""The features and training-set steps by customer shard (`features.shards` > 1).

The clean log is split by shard (`split_log`: one Parquet file per shard, and the facts
every shard takes from the whole log, `LogFacts`). Each shard then builds its features and
labels (`shard_features`) and, once the offline source is published and the repo applied,
its training set through Feast, joined against its own partition (`shard_training_set`).
Each reads only its shard's files and writes only its own. The collecting functions put
the shards together without holding their rows: the feature table and the training set
stay datasets partitioned by shard (the feature table written shard by shard as the Feast
source); the training set's figures are streamed from its key columns and its feature
report drawn from a bounded, order-independent sample (`mlstack.features.partitioned`).
Its readers read the parts in shard order (`mlstack.models.split_file`).

Where the shards run. On a cluster each shard is a pod: the compiled training pipeline
fans out with `dsl.ParallelFor` over the shards, one task per shard calling the functions
here (`pipelines/training.py`). Locally the shards are processes inside the features and
training-set steps (`in_processes`: ``min(shards, cores)`` at a time, each shard a fresh
process, forked from a server that has done the imports), because the KFP local runner runs a
`ParallelFor`'s iterations only after every task outside the loop, so the step that
collects them would run before them (see the README).

With one shard none of this runs: the steps are the single-table ones in `data`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from mlstack.config import FeatureSettings, Settings
from mlstack.features import partitioned
from mlstack.features.build import build_features, build_labels
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    attribute_names,
    feature_names,
    label_name,
)
from mlstack.features.reports import feature_report, label_counts, profile_report
from mlstack.features.shards import LogFacts, partition, shard_of, split_by_shard
from mlstack.models.parallel import cpu_count
from mlstack.steps import configure_logging
from mlstack.steps.results import FeatureTable, TrainingSet
from mlstack.versioning import VERSION_LENGTH, content_version

log = logging.getLogger(__name__)

FACTS_FILE = "facts.json"  # beside the log's partitions: the LogFacts
# what a shard's Feast store imports when it runs: once for every shard (`in_processes`)
FEAST_MODULES = ("mlstack.features.partitions", "mlstack.features.materialization")


@dataclass
class ShardFeatures:
    """What a shard's features step reports to the collecting step."""

    shard: int
    rows: int
    customers: int
    version: str  # content_version of the shard's table
    snapshots: list[str]  # the snapshot dates with a row, ISO
    labels: list[list[Any]]  # per labelled snapshot: [ISO date, rows, positives]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ShardFeatures:
        return cls(**json.loads(text))


def split_log(transactions: Path, features: FeatureSettings, out_dir: Path) -> LogFacts:
    """Write each shard's lines of the log at `transactions` to `out_dir` (partitioned by
    shard) with the whole log's facts (`FACTS_FILE`); return the facts."""
    frame = pd.read_parquet(transactions)
    facts = LogFacts.of(frame, features)
    for shard, lines in enumerate(split_by_shard(frame, features.shards)):
        path = partition(out_dir, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines.to_parquet(path, index=False)
    (out_dir / FACTS_FILE).write_text(json.dumps(facts.to_json()))
    return facts


def read_facts(log_dir: Path) -> LogFacts:
    return LogFacts.from_json(json.loads((log_dir / FACTS_FILE).read_text()))


def shard_features(settings: Settings, log_dir: Path, shard: int, out: Path) -> ShardFeatures:
    """Build the features and labels of `shard` from its lines in `log_dir`; write its
    feature table to `out` (a Parquet file)."""
    facts = read_facts(log_dir)
    frame = pd.read_parquet(partition(log_dir, shard))
    if frame.empty:
        raise ValueError(f"shard {shard} has no customers: use fewer features.shards")
    features = build_features(frame, settings, facts.snapshots)
    out.parent.mkdir(parents=True, exist_ok=True)
    features.to_parquet(out, index=False)
    keys = features[[ENTITY, EVENT_TIMESTAMP]]
    counts = label_counts(build_labels(frame, keys, settings, facts.last_timestamp))
    return ShardFeatures(
        shard=shard,
        rows=len(features),
        customers=int(features[ENTITY].nunique()),
        version=content_version(features),
        snapshots=[t.isoformat() for t in keys[EVENT_TIMESTAMP].unique()],
        labels=[[t.isoformat(), int(n), int(p)] for t, (n, p) in counts.iterrows()],
    )


def collect_features(
    features: FeatureSettings,
    transactions: Path,
    data_version: str,
    parts: list[ShardFeatures],
    report_html: Path,
) -> FeatureTable:
    """The feature table's result from its shards' (in any order), and the data profile."""
    parts = sorted(parts, key=lambda p: p.shard)
    if [p.shard for p in parts] != list(range(features.shards)):
        raise ValueError(f"expected shards 0..{features.shards - 1}, got {parts}")
    digest = hashlib.sha256(json.dumps([p.version for p in parts]).encode())
    snapshots = pd.to_datetime(sorted({t for p in parts for t in p.snapshots}))
    label = label_name(features)
    rows = [row for p in parts for row in p.labels]
    counts = pd.DataFrame(rows, columns=[EVENT_TIMESTAMP, "size", label])
    counts[EVENT_TIMESTAMP] = pd.to_datetime(counts[EVENT_TIMESTAMP])
    counts = counts.groupby(EVENT_TIMESTAMP).sum()
    frame = pd.read_parquet(transactions)
    with tempfile.TemporaryDirectory() as tmp:
        page = profile_report(frame, None, Path(tmp), data_version, counts=counts)
        shutil.copyfile(page, report_html)
    return FeatureTable(
        metrics={
            "feature_rows": sum(p.rows for p in parts),
            "customers": sum(p.customers for p in parts),
            "snapshots": len(snapshots),
        },
        feature_version=digest.hexdigest()[:VERSION_LENGTH],
        data_version=data_version,
        first_snapshot=snapshots.min().isoformat(),
        last_snapshot=snapshots.max().isoformat(),
    )


def labelled_entity_rows(
    frame: pd.DataFrame, features: Path, settings: Settings, facts: LogFacts | None = None
) -> pd.DataFrame:
    """The labelled (customer, snapshot) rows of the feature table at `features`, with the
    categorical attributes: the training set's entity rows."""
    columns = [ENTITY, EVENT_TIMESTAMP, *attribute_names(settings.source)]
    entity = pd.read_parquet(features, columns=columns)
    last = facts.last_timestamp if facts else None
    return build_labels(frame, entity, settings, last)


def join_features(feast: Any, entity_rows: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The training set: the entity rows' labels and Feast's point-in-time features, then
    the categorical attributes (for the evaluation's slices), in the entity rows' order."""
    from mlstack.features import store  # lazy on purpose: Feast is slow to import

    training = store.training_set(feast, entity_rows, settings)
    for name in attribute_names(settings.source):
        training[name] = entity_rows[name].to_numpy()
    return training


def shard_training_set(
    settings: Settings, log_dir: Path, features: Path, shard: int, out: Path
) -> int:
    """The training set of `shard`, joined against its partition of the offline source,
    written to `out` (a Parquet file); returns its rows."""
    from mlstack.features import partitions  # lazy on purpose: Feast is slow to import

    frame = pd.read_parquet(partition(log_dir, shard))
    entity_rows = labelled_entity_rows(
        frame, partition(features, shard), settings, read_facts(log_dir)
    )
    with tempfile.TemporaryDirectory() as tmp:
        feast = partitions.shard_store(settings, shard, Path(tmp))
        training = join_features(feast, entity_rows, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    training.to_parquet(out, index=False)
    return len(training)


def finish_training_set(
    training: pd.DataFrame, settings: Settings, out_path: Path, report_html: Path
) -> TrainingSet:
    """Write the training set (one shard: a Parquet file); its report and result."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    training.to_parquet(out_path, index=False)
    return describe_training_set(settings, out_path, report_html)


def describe_training_set(settings: Settings, dataset: Path, report_html: Path) -> TrainingSet:
    """The result and feature report of the training set at `dataset` (a file or a dataset
    partitioned by shard), read a batch at a time: figures exact, report from a sample."""
    label = label_name(settings.features)
    described = partitioned.describe(dataset, label)
    metrics = described.figures
    with tempfile.TemporaryDirectory() as tmp:
        page = feature_report(described.sample, feature_names(settings), label, Path(tmp))
        shutil.copyfile(page, report_html)
    return TrainingSet(
        metrics=metrics,
        label=label,
        feature_service=settings.feast.feature_service,
        training_rows=int(metrics["training_rows"]),
    )


def collect_training_set(
    settings: Settings, parts: list[Path], out_path: Path, report_html: Path
) -> TrainingSet:
    """The shards' training sets (in any order) as a dataset partitioned by shard at
    `out_path`: each part copied as it is (already in `ORDER`), no rows put together."""
    _clear(out_path)
    for shard, part in enumerate(in_shard_order(parts, settings.features.shards)):
        target = partition(out_path, shard)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(part, target)
    return describe_training_set(settings, out_path, report_html)


def in_shard_order(parts: list[Path], shards: int) -> list[Path]:
    """The shards' parts ordered by shard, told by their customers' shard (an empty part,
    with no customer to tell, takes a shard no other part holds)."""
    if len(parts) != shards:
        raise ValueError(f"expected {shards} shards' training sets, got {len(parts)}")
    found: dict[int, Path] = {}
    empty: list[Path] = []
    for part in parts:
        ids = pq.ParquetFile(part).read_row_group(0, columns=[ENTITY]) if _rows(part) else None
        if ids is None:
            empty.append(part)
            continue
        shard = set(shard_of(ids.column(0).to_pandas(), shards).tolist())
        if len(shard) != 1 or (k := shard.pop()) in found:
            raise ValueError(f"{part} is not the training set of one shard of {shards}")
        found[k] = part
    free = iter(k for k in range(shards) if k not in found)
    found |= {next(free): part for part in empty}
    return [found[k] for k in range(shards)]


def _rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def _clear(path: Path) -> None:
    """Remove whatever is at `path` (a file, or a folder from an earlier run)."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# -- locally: the shards as processes --------------------------------------------------------


def in_processes(
    work: Callable[..., Any], shards: int, *args: Any, preload: Sequence[str] = ()
) -> list[Any]:
    """`work(shard, *args)` for every shard, each in a fresh process of its own, at most
    ``min(shards, cores)`` at a time (the cores this process may use: in a pod, its CPU
    limit); the results in shard order.

    A process ends with its shard, as a shard's pod does: a worker kept for many shards
    held on to what its allocators kept of each (at 100x, 40 shards a worker reached 5.3 GB;
    a shard of that size in a fresh process, 2.5 GB). The processes are forked from a
    "forkserver" that has imported `work`'s module once, so a shard does not pay the imports
    (Feast, MLflow, scikit-learn: 6-12 s a process when each was a fresh interpreter, most of
    a shard's time with 80 shards at 10x), nor those of `preload`, modules `work` imports
    only when it runs. The server holds no rows, so each shard starts from the same small
    process. (The server starts with the first call in a process; a later call's modules
    are imported by each of its shards.)"""
    workers = min(shards, cpu_count())
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", work.__module__, *preload])
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, max_tasks_per_child=1
    ) as pool:
        futures = [pool.submit(work, shard, *args) for shard in range(shards)]
        return [f.result() for f in futures]


def features_worker(shard: int, settings_json: str, log_dir: Path, out_dir: Path) -> str:
    configure_logging()
    settings = Settings.from_json(settings_json)
    return shard_features(settings, log_dir, shard, partition(out_dir, shard)).to_json()


def training_worker(
    shard: int, settings_json: str, log_dir: Path, features: Path, out_dir: Path
) -> int:
    configure_logging()
    settings = Settings.from_json(settings_json)
    return shard_training_set(settings, log_dir, features, shard, partition(out_dir, shard))


def feature_table(
    settings: Settings, transactions: Path, data_version: str, out_dir: Path, report_html: Path
) -> FeatureTable:
    """The feature table as a dataset partitioned by shard at `out_dir`, built in
    processes; its result and the data profile."""
    shards = settings.features.shards
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        split_log(transactions, settings.features, log_dir)
        shutil.rmtree(out_dir, ignore_errors=True)
        results = in_processes(features_worker, shards, settings.to_json(), log_dir, out_dir)
    parts = [ShardFeatures.from_json(r) for r in results]
    return collect_features(settings.features, transactions, data_version, parts, report_html)


def training_set(
    settings: Settings, transactions: Path, features: Path, out_path: Path, report_html: Path
) -> TrainingSet:
    """The training set as a dataset partitioned by shard at `out_path`, each shard joined
    in its own process and written as its partition."""
    shards = settings.features.shards
    _clear(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "log"
        split_log(transactions, settings.features, log_dir)
        in_processes(
            training_worker,
            shards,
            settings.to_json(),
            log_dir,
            features,
            out_path,
            preload=FEAST_MODULES,
        )
    return describe_training_set(settings, out_path, report_html)
