"""Batch scoring by customer shard (`features.shards` > 1).

Each shard scores its own customers (`score_shard`): the active ones come from its partition
of the offline source (`customer_features/shard=K/part-0.parquet`, reading only the id and
timestamp columns), their features through Feast joined against that partition only
(`partitions.shard_store`), their probabilities from the served model's `LoadedModel.predict`;
the shard writes them as its part, a Parquet file of `SCORE_COLUMNS`. A shard holds one
shard's rows, never the table's. `collect_scores` puts the parts together in customer-id
order and writes the files one-shard scoring writes, with the same rows.

The date. With `--at` every shard scores at it. Without, each shard takes the latest
snapshot of its own partition: the snapshot grid is the whole log's, and every customer has
a row at every snapshot from their first purchase on, so every partition with rows ends at
the table's last snapshot. The collecting step checks that the shards agree.

The model. Locally the version is resolved once and handed to every shard; on a cluster
each shard's pod resolves the alias itself, and the collecting step checks that every shard
scored with one version (else the alias moved during the run: score again).

A shard with no active customers writes an empty part: with few customers or an early
date a shard can be empty. Only when every shard is empty is it the error of one-shard
scoring (nobody to score at that date).

The parts are not kept beside the scores as `shard=K` files: a reader that takes
`snapshot_date=D/` (or the scores folder) as a Parquet dataset would see every row twice,
and the layout users read would change with the shard count. The scores are one row per
customer (2.4 million rows, tens of MB, at 100x), which one file holds well; on a cluster
the parts also stay in the KFP artifact store as the shard tasks' outputs.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd

from mlstack.config import Settings
from mlstack.features import partitions
from mlstack.features import store as feature_store
from mlstack.features.shards import partition
from mlstack.serving import model as served
from mlstack.serving.batch import (
    ScoreResult,
    active_in,
    check_features,
    customer_features,
    nobody_active,
    score_table,
    snapshot_at,
    snapshot_range,
    write_scores,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardScores:
    """What a shard's scoring reports to the collecting step."""

    shard: int
    rows: int  # customers scored
    snapshot_date: str | None  # the UTC time it scored at, ISO; None: no rows, no --at
    first_snapshot: str | None  # its partition's snapshots, ISO; None: the partition is empty
    last_snapshot: str | None
    model_version: str | None  # None when it scored nobody

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ShardScores:
        return cls(**json.loads(text))


def shard_table(settings: Settings, shard: int) -> Path:
    """The local file of `shard`'s partition of the offline source (brought from the state
    store when that is remote)."""
    shards = settings.features.shards
    if shards < 2:
        raise ValueError("scoring by shard needs features.shards > 1")
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not one of 0..{shards - 1} (features.shards)")
    try:
        table = partition(feature_store.sync_offline_source(settings, shard=shard), shard)
    except feature_store.FeatureStoreUnavailable as err:
        raise ValueError(str(err)) from None
    if not table.exists():
        raise ValueError(
            f"no partition {shard} of the offline source at {table}: the features step "
            f"writes it with features.shards={shards}; run the pipeline (`make run`) first"
        )
    return table


def score_shard(
    settings: Settings,
    shard: int,
    at: str | pd.Timestamp | None,
    out: Path,
    ref: served.ModelRef | None = None,
) -> ShardScores:
    """Score `shard`'s active customers at `at` (default: its partition's latest snapshot)
    with the model at `ref` (default: the served alias's); write them to `out` (Parquet)."""
    table = shard_table(settings, shard)
    span = snapshot_range(table)
    when = snapshot_at(at)
    if when is None and span is not None:
        when = span[1]
    window = timedelta(days=settings.features.snapshot_frequency_days)
    customers = active_in(table, when, window) if when is not None and span else []
    version = None
    if customers:
        model = loaded(ref or served.resolve(settings), settings.mlflow.tracking_uri)
        check_features(settings, model)
        with tempfile.TemporaryDirectory() as tmp:
            feast = partitions.shard_store(settings, shard, Path(tmp))
            matrix = customer_features(settings, customers, when, feast)
        scores = score_table(model, customers, matrix, when)
        version = model.version
    else:
        scores = empty_scores()
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(out, index=False)
    log.info("shard %d: scored %d customers", shard, len(scores))
    return ShardScores(
        shard=shard,
        rows=len(scores),
        snapshot_date=None if when is None else when.isoformat(),
        first_snapshot=None if span is None else span[0].isoformat(),
        last_snapshot=None if span is None else span[1].isoformat(),
        model_version=version,
    )


@functools.lru_cache(maxsize=1)
def loaded(ref: served.ModelRef, tracking_uri: str) -> served.LoadedModel:
    """The model at `ref`, loaded once per process: a local worker scores several shards
    with one version, and loading it (download, checks of the fast path) takes seconds."""
    return served.load(ref, tracking_uri)


def empty_scores() -> pd.DataFrame:
    """A part with no rows, typed as a scored one."""
    return pd.DataFrame(
        {
            "customer_id": pd.Series(dtype=object),
            "probability": pd.Series(dtype="float64"),
            "model_version": pd.Series(dtype=object),
            "snapshot_date": pd.Series(dtype="datetime64[ns]"),
        }
    )


def collect_scores(
    settings: Settings, parts: list[Path], results: list[ShardScores], out_dir: Path | None
) -> ScoreResult:
    """The shards' parts (in any order) as the one-shard scoring's files, in customer-id
    order, under `out_dir` (default: `serving.batch_output_dir`)."""
    shards = settings.features.shards
    results = sorted(results, key=lambda r: r.shard)
    if [r.shard for r in results] != list(range(shards)):
        got = [r.shard for r in results]
        raise ValueError(f"expected the scores of shards 0..{shards - 1}, got those of {got}")
    spans = [
        (pd.Timestamp(r.first_snapshot), pd.Timestamp(r.last_snapshot))
        for r in results
        if r.first_snapshot and r.last_snapshot
    ]
    if not spans:
        raise ValueError("every partition of the offline source is empty: run the pipeline first")
    dates = sorted({r.snapshot_date for r in results if r.snapshot_date})
    if len(dates) != 1:
        raise ValueError(
            f"the shards scored at different dates ({', '.join(dates)}): their partitions of "
            "the offline source end at different snapshots; give the date (--at) or rebuild "
            "the features"
        )
    when = pd.Timestamp(dates[0])
    span = min(s[0] for s in spans), max(s[1] for s in spans)
    scored = [r for r in results if r.rows]
    if not scored:
        window = timedelta(days=settings.features.snapshot_frequency_days)
        raise ValueError(nobody_active(window, when, span))
    versions = sorted({str(r.model_version) for r in scored})
    if len(versions) > 1:
        raise ValueError(
            f"the shards scored with different model versions ({', '.join(versions)}): the "
            f"alias {settings.serving.model_alias!r} moved while they ran; score again"
        )
    frames = [frame for frame in map(pd.read_parquet, parts) if len(frame)]
    scores = pd.concat(frames, ignore_index=True)
    expected = sum(r.rows for r in results)
    if len(scores) != expected or scores["customer_id"].duplicated().any():
        raise ValueError(
            f"the parts hold {len(scores)} rows ({scores['customer_id'].nunique()} customers) "
            f"but the shards scored {expected}: a part is missing or given twice"
        )
    scores = scores.sort_values("customer_id", kind="stable", ignore_index=True)
    root = out_dir or settings.serving.scores_folder(settings.artifacts_dir)
    parquet, csv = write_scores(scores, root, when)
    return ScoreResult(parquet, csv, len(scores), versions[0], when)
