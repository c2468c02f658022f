"""Collecting the shards' scores: one table in customer-id order, the one-shard files, and
a clear error when the parts do not make one scoring (no one active, two dates, two model
versions, a shard missing or given twice)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlstack.config import Settings, load_settings
from mlstack.features.shards import partition
from mlstack.serving.batch_shards import ShardScores, collect_scores, empty_scores
from tests.support.paths import CONFIG

pytestmark = pytest.mark.unit

AT = "1998-06-28T00:00:00+00:00"
FIRST = "1997-01-05T00:00:00+00:00"


def settings(tmp_path: Path, shards: int) -> Settings:
    return load_settings(CONFIG, [f"root={tmp_path}", f"features.shards={shards}"])


def part(
    folder: Path, shard: int, ids: list[str], version: str = "3", at: str = AT
) -> tuple[Path, ShardScores]:
    """Shard `shard`'s part with `ids` scored (probability from the id), written for real."""
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "probability": [int(i) / 1000 for i in ids],
            "model_version": version,
            "snapshot_date": pd.Timestamp(pd.Timestamp(at).date()),
        }
    )
    frame = frame if ids else empty_scores()
    path = partition(folder, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    facts = ShardScores(shard, len(ids), at, FIRST, AT, version if ids else None)
    return path, facts


def collect(tmp_path: Path, parts: list[tuple[Path, ShardScores]], shards: int):
    paths, facts = [p for p, _ in parts], [f for _, f in parts]
    return collect_scores(settings(tmp_path, shards), paths, facts, tmp_path / "scores")


def test_parts_in_any_order_come_out_in_customer_id_order(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    given = [
        part(parts, 2, ["7", "70"]),
        part(parts, 0, ["10", "2", "300"]),
        part(parts, 1, []),  # a shard with no active customer: an empty part
    ]
    result = collect(tmp_path, given, shards=3)
    scores = pd.read_parquet(result.parquet)
    assert scores["customer_id"].tolist() == ["10", "2", "300", "7", "70"]  # as text, like ids
    assert scores["probability"].tolist() == [0.01, 0.002, 0.3, 0.007, 0.07]
    assert scores["probability"].dtype == "float64"
    assert (scores["model_version"] == "3").all()
    assert result.rows == 5 and result.model_version == "3"
    assert result.snapshot_date == pd.Timestamp(AT)
    assert result.parquet == tmp_path / "scores" / "snapshot_date=1998-06-28" / "scores.parquet"
    csv = pd.read_csv(result.csv, dtype={"customer_id": str})
    assert csv["customer_id"].tolist() == scores["customer_id"].tolist()
    assert set(csv["snapshot_date"]) == {"1998-06-28"}


def test_no_active_customer_in_any_shard_is_the_one_shard_error(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    early = "1990-01-01T00:00:00+00:00"
    given = [part(parts, k, [], at=early) for k in range(2)]
    with pytest.raises(ValueError, match="no customer has features within 7 days up to 1990-01-01"):
        collect(tmp_path, given, shards=2)


def test_shards_at_different_dates_are_refused(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    given = [part(parts, 0, ["1"]), part(parts, 1, ["2"], at="1998-06-21T00:00:00+00:00")]
    with pytest.raises(ValueError, match=r"scored at different dates.*--at"):
        collect(tmp_path, given, shards=2)


def test_shards_scored_by_different_versions_are_refused(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    given = [part(parts, 0, ["1"], version="3"), part(parts, 1, ["2"], version="4")]
    with pytest.raises(ValueError, match=r"different model versions \(3, 4\).*score again"):
        collect(tmp_path, given, shards=2)


def test_a_missing_shard_is_named(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    given = [part(parts, 0, ["1"]), part(parts, 2, ["3"])]
    with pytest.raises(ValueError, match=r"shards 0..2, got those of \[0, 2\]"):
        collect(tmp_path, given, shards=3)


def test_a_part_given_twice_is_refused(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    first, second = part(parts, 0, ["1"]), part(parts, 1, ["2"])
    with pytest.raises(ValueError, match="a part is missing or given twice"):
        collect_scores(
            settings(tmp_path, 2), [first[0], first[0]], [first[1], second[1]], tmp_path / "s"
        )
    assert not (tmp_path / "s").exists()  # nothing written
