"""The payload log: batched Parquet parts by UTC date, the column contract, reading back."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlstack.serving.payloads import (
    PayloadLogger,
    payload_files,
    payload_schema,
    read_payloads,
)

pytestmark = pytest.mark.unit

FEATURES = ("recency_days", "spend_total")


def log_rows(logger: PayloadLogger, request_id: str, rows: int, customer: bool) -> None:
    matrix = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2)
    ids = [f"c{i}" for i in range(rows)] if customer else [None] * rows
    found = [i % 2 == 0 for i in range(rows)] if customer else [None] * rows
    logger.log(request_id, "m", "7", ids, found, matrix, np.linspace(0, 1, rows))


def test_rows_are_buffered_and_written_as_one_part(tmp_path):
    logger = PayloadLogger(tmp_path, FEATURES, flush_rows=1000)
    log_rows(logger, "r1", 3, customer=True)
    log_rows(logger, "r2", 2, customer=False)
    assert not list(tmp_path.rglob("*.parquet")), "nothing is written per request"
    (written,) = logger.flush()
    path = Path(written)
    today = datetime.now(UTC).date().isoformat()
    assert path.parent.name == f"date={today}" and path.name.startswith("part-")
    table = pq.ParquetFile(path).read()
    assert table.schema.equals(payload_schema(FEATURES))
    assert table.num_rows == 5
    frame = read_payloads(tmp_path)
    assert frame["request_id"].tolist() == ["r1"] * 3 + ["r2"] * 2
    assert frame["customer_id"].tolist()[:3] == ["c0", "c1", "c2"]
    assert frame["features_found"].tolist()[:3] == [True, False, True]
    assert frame["customer_id"][3:].isna().all() and frame["features_found"][3:].isna().all()
    assert frame["spend_total"].tolist() == [1.0, 3.0, 5.0, 1.0, 3.0]
    assert frame["probability"].tolist() == pytest.approx([0, 0.5, 1, 0, 1])
    assert (frame["model_version"] == "7").all()
    assert logger.flush() == [], "a flush with nothing buffered writes nothing"


def test_the_background_thread_flushes_when_enough_rows_wait(tmp_path):
    logger = PayloadLogger(tmp_path, FEATURES, flush_rows=4, flush_seconds=60).start()
    try:
        log_rows(logger, "r1", 5, customer=False)
        deadline = datetime.now(UTC).timestamp() + 10
        while not list(tmp_path.rglob("part-*.parquet")):
            assert datetime.now(UTC).timestamp() < deadline, "no flush after the row threshold"
        log_rows(logger, "r2", 1, customer=False)
    finally:
        logger.close()
    assert len(read_payloads(tmp_path)) == 6, "close writes what is still buffered"


def test_read_payloads_filters_by_date_and_time(tmp_path):
    logger = PayloadLogger(tmp_path, FEATURES)
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        log_rows(logger, day, 1, customer=False)
        logger._chunks[-1].logged_at = datetime.fromisoformat(f"{day}T12:00:00+00:00")
    logger.flush()
    assert read_payloads(tmp_path, start=date(2026, 1, 2))["request_id"].tolist() == [
        "2026-01-02",
        "2026-01-03",
    ]
    assert read_payloads(tmp_path, end="2026-01-01")["request_id"].tolist() == ["2026-01-01"]
    noon = datetime(2026, 1, 2, 13, tzinfo=UTC)
    assert read_payloads(tmp_path, start=noon)["request_id"].tolist() == ["2026-01-03"]
    empty = read_payloads(tmp_path / "none")
    assert empty.empty and "probability" in empty.columns
    assert not math.isnan(read_payloads(tmp_path)["probability"].iloc[0])


def test_a_reader_keeps_its_part_of_each_file_and_lists_the_days_parts(tmp_path):
    logger = PayloadLogger(tmp_path, FEATURES)
    for day in ("2026-01-01", "2026-01-02"):
        log_rows(logger, day, 4, customer=True)
        logger._chunks[-1].logged_at = datetime.fromisoformat(f"{day}T12:00:00+00:00")
    logger.flush()
    files = payload_files(tmp_path, start=date(2026, 1, 2), end=date(2026, 1, 2))
    assert len(files) == 1 and "date=2026-01-02/part-" in files[0]
    assert payload_files(tmp_path / "none") == []

    def even(frame):
        return frame[frame["customer_id"].isin(["c0", "c2"])]

    kept = read_payloads(tmp_path, select=even)
    assert kept["customer_id"].tolist() == ["c0", "c2", "c0", "c2"]
    assert kept["request_id"].tolist() == ["2026-01-01"] * 2 + ["2026-01-02"] * 2


def test_a_sink_that_fails_keeps_the_rows_within_the_bound_and_counts_the_drops(tmp_path):
    """The sink down: a regular file where the log's folder should be (mkdir fails for real).
    Rows wait for the next flush up to the bound; rows that find it full are dropped and
    counted; logging never waits for the sink; once the sink is back, the kept rows land."""
    from mlstack.serving import metrics

    folder = tmp_path / "payloads"
    folder.write_text("in the way")
    logger = PayloadLogger(folder, FEATURES, flush_rows=10**6, max_buffer_rows=10)
    dropped = metrics.PAYLOAD_ROWS_DROPPED._value.get()
    log_rows(logger, "r1", 4, customer=True)
    log_rows(logger, "r2", 4, customer=True)
    with pytest.raises(OSError):
        logger.flush()
    assert logger.rows_dropped == 0  # the 8 rows wait
    log_rows(logger, "r3", 2, customer=True)  # 10: full
    log_rows(logger, "r4", 3, customer=True)  # no room: dropped, at once
    assert logger.rows_dropped == 3
    assert metrics.PAYLOAD_ROWS_DROPPED._value.get() - dropped == 3
    folder.unlink()  # the sink is back
    logger.flush()
    frame = read_payloads(folder)
    assert frame["request_id"].tolist() == ["r1"] * 4 + ["r2"] * 4 + ["r3"] * 2


def test_rows_that_cannot_be_written_at_shutdown_are_counted_not_raised(tmp_path):
    folder = tmp_path / "payloads"
    folder.write_text("in the way")
    logger = PayloadLogger(folder, FEATURES, flush_rows=10**6).start()
    log_rows(logger, "r1", 5, customer=False)
    logger.close()
    assert logger.rows_dropped == 5 and logger.rows_written == 0


def test_the_buffered_rows_gauge_reads_the_running_logger_when_scraped(tmp_path):
    from prometheus_client import REGISTRY

    def gauge() -> float | None:
        return REGISTRY.get_sample_value("mlstack_payload_buffered_rows")

    logger = PayloadLogger(tmp_path, FEATURES, flush_rows=1000, flush_seconds=60).start()
    try:
        log_rows(logger, "r1", 3, customer=False)
        log_rows(logger, "r2", 4, customer=True)
        assert gauge() == 7, "the rows waiting, with no update on the request path"
        logger.flush()
        assert gauge() == 0
    finally:
        logger.close()
