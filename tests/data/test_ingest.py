"""Ingest: any URI and format in, canonical deduplicated Parquet with a content version out."""

from __future__ import annotations

import functools
import gzip
import json
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from mlstack.config import Settings, load_settings
from mlstack.data.ingest import (
    INGEST_STATS_FILE,
    TRANSACTIONS_FILE,
    IngestError,
    IngestResult,
    ingest,
    normalise,
    read_source,
)
from tests.support.paths import CONFIG, PROJECT

BUNDLED = PROJECT / "data" / "cdnow_master.txt.gz"

CDNOW_TEXT = """\
 customer_id  date number_of_cds  dollar_value
 00001 19970101  1   11.77
 00002 19970112  1   12.00
 00002 19970112  5   77.00
 00003 19970102  2   20.76
 00003 19970330  2   20.76
 00003 19970102  2   20.76
 00010 19970221  1    0.00
"""

RETAIL_CSV = """\
Invoice,StockCode,Quantity,InvoiceDate,Price,Customer ID,Country
489434,85048,12,2009-12-01 07:45:00,6.95,013085,United Kingdom
489434,79323P,-2,2009-12-01 07:45:00,6.75,013085,United Kingdom
489435,22350,3,2009-12-02 09:00:00,2.5,000042,France
489436,22351,x,not a date,2.5,000042,France
"""


def make_settings(tmp_path: Path, uri: Path | str, *overrides: str) -> Settings:
    """Settings rooted in ``tmp_path`` reading ``uri``."""
    return load_settings(CONFIG, overrides=[f"root={tmp_path}", f"source.uri={uri}", *overrides])


def write_text(path: Path, text: str) -> Path:
    """Write ``text``, gzip-compressed when the name ends in .gz."""
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


RETAIL_OVERRIDES = (
    "source.delimiter=','",
    "source.timestamp_format=null",
    "source.columns={customer_id: Customer ID, timestamp: InvoiceDate, amount: null,"
    " quantity: Quantity, unit_price: Price, invoice_id: Invoice, product_id: StockCode,"
    " country: Country}",
)


@pytest.mark.unit
def test_ids_written_as_whole_floats_lose_the_point_zero(tmp_path: Path) -> None:
    text = RETAIL_CSV.replace(",013085,", ",13085.0,").replace("489435,", "489435.0,")
    source = write_text(tmp_path / "retail.csv", text)

    written = pd.read_parquet(ingest(make_settings(tmp_path, source, *RETAIL_OVERRIDES)).path)

    assert written["customer_id"].tolist() == ["13085", "13085", "000042", "000042"]
    assert written["invoice_id"].tolist()[2] == "489435"


@pytest.mark.unit
@pytest.mark.parametrize("name", ["cdnow.txt", "cdnow.txt.gz"])
def test_whitespace_text_keeps_leading_zeros(tmp_path: Path, name: str) -> None:
    source = write_text(tmp_path / name, CDNOW_TEXT)
    settings = make_settings(tmp_path, source)

    frame = normalise(read_source(settings.source), settings.source)

    assert list(frame.columns) == ["customer_id", "timestamp", "amount", "quantity"]
    assert frame["customer_id"].tolist()[:3] == ["00001", "00002", "00002"]
    assert frame["customer_id"].dtype == "string"
    assert frame["timestamp"].dtype == "datetime64[ns]"
    assert frame["timestamp"].iloc[1] == pd.Timestamp("1997-01-12")
    assert frame["amount"].dtype == "float64"
    assert frame["quantity"].dtype == "float64"


@pytest.mark.unit
def test_comma_csv_with_other_names_computes_amount(tmp_path: Path) -> None:
    source = write_text(tmp_path / "retail.csv", RETAIL_CSV)
    settings = make_settings(tmp_path, source, *RETAIL_OVERRIDES)

    frame = normalise(read_source(settings.source), settings.source)

    assert list(frame.columns) == [
        "customer_id",
        "timestamp",
        "amount",
        "quantity",
        "invoice_id",
        "product_id",
        "country",
    ]
    assert frame["customer_id"].tolist() == ["013085", "013085", "000042", "000042"]
    assert frame["amount"].iloc[:3].tolist() == pytest.approx([83.4, -13.5, 7.5])
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2009-12-01 07:45:00")
    assert frame["product_id"].iloc[1] == "79323P"
    assert frame["invoice_id"].dtype == "string"
    # unparseable values are kept as missing, for validation to report
    assert pd.isna(frame["quantity"].iloc[3])
    assert pd.isna(frame["amount"].iloc[3])
    assert pd.isna(frame["timestamp"].iloc[3])


@pytest.mark.unit
def test_timezone_aware_timestamps_become_naive_utc(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {"c": ["1", "2"], "t": ["2020-01-01T10:00:00+02:00", "2020-01-01T10:00:00Z"], "a": [1, 2]}
    )
    settings = make_settings(
        tmp_path,
        tmp_path / "unused.csv",
        "source.timestamp_format=null",
        "source.columns={customer_id: c, timestamp: t, amount: a, quantity: null}",
    )

    frame = normalise(raw, settings.source)

    assert frame["timestamp"].tolist() == [
        pd.Timestamp("2020-01-01 08:00:00"),
        pd.Timestamp("2020-01-01 10:00:00"),
    ]


@pytest.mark.unit
def test_parquet_input(tmp_path: Path) -> None:
    source = tmp_path / "tx.parquet"
    pd.DataFrame(
        {
            "cust": ["007", "007", "010"],
            "when": pd.to_datetime(["1997-02-01", "1997-01-01", "1997-03-01"]),
            "value": [5.0, 7.5, 1.25],
        }
    ).to_parquet(source)
    settings = make_settings(
        tmp_path,
        source,
        "source.format=parquet",
        "source.columns={customer_id: cust, timestamp: when, amount: value, quantity: null}",
    )

    result = ingest(settings)

    written = pd.read_parquet(result.path)
    assert written["customer_id"].tolist() == ["007", "007", "010"]
    assert written["timestamp"].tolist() == list(
        pd.to_datetime(["1997-02-01", "1997-01-01", "1997-03-01"])
    )
    assert written["amount"].tolist() == [5.0, 7.5, 1.25]  # the log's order: rows match it


@pytest.mark.unit
def test_every_line_is_kept_in_the_logs_order(tmp_path: Path) -> None:
    # duplicates and the rest are validation's cleaning rules' to judge, not ingest's
    source = write_text(tmp_path / "cdnow.txt", CDNOW_TEXT)
    out = tmp_path / "out" / TRANSACTIONS_FILE

    result = ingest(make_settings(tmp_path, source), out_path=out)

    assert result.rows == 7
    assert result.path == out
    written = pd.read_parquet(out)
    assert len(written) == 7
    assert written.duplicated().sum() == 1
    assert written["customer_id"].tolist() == ["00001", "00002", "00002"] + ["00003"] * 3 + [
        "00010"
    ]
    sidecar = json.loads((out.parent / INGEST_STATS_FILE).read_text())
    assert sidecar == result.to_dict()
    assert IngestResult.read_json(out.parent / INGEST_STATS_FILE) == result


@pytest.mark.unit
def test_default_location_is_the_versioned_data_dir(tmp_path: Path) -> None:
    source = write_text(tmp_path / "cdnow.txt", CDNOW_TEXT)
    settings = make_settings(tmp_path, source)

    result = ingest(settings)

    assert result.path == settings.data_dir(result.data_version) / TRANSACTIONS_FILE
    assert result.path.is_file()
    assert (result.path.parent / INGEST_STATS_FILE).is_file()
    assert len(result.data_version) == 16
    int(result.data_version, 16)


@pytest.mark.unit
def test_version_follows_content_not_location(tmp_path: Path) -> None:
    first = write_text(tmp_path / "a.txt", CDNOW_TEXT)
    copy = write_text(tmp_path / "b.txt.gz", CDNOW_TEXT)
    changed = write_text(tmp_path / "c.txt", CDNOW_TEXT.replace("11.77", "11.78"))

    def version(uri: Path, out: str) -> str:
        settings = make_settings(tmp_path, uri)
        return ingest(settings, out_path=tmp_path / out / TRANSACTIONS_FILE).data_version

    assert version(first, "1") == version(first, "2") == version(copy, "3")
    assert version(changed, "4") != version(first, "5")


@pytest.mark.unit
def test_missing_mapped_column_names_it(tmp_path: Path) -> None:
    source = write_text(tmp_path / "cdnow.txt", CDNOW_TEXT)
    settings = make_settings(tmp_path, source, "source.columns.amount=revenue")

    with pytest.raises(IngestError) as caught:
        ingest(settings)

    message = str(caught.value)
    assert "'amount'" in message
    assert "'revenue'" in message
    assert "['customer_id', 'date', 'number_of_cds', 'dollar_value']" in message
    assert isinstance(caught.value, ValueError)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean."""


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on loopback, and its base URL; stopped afterwards."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.integration
def test_reads_gzipped_text_over_http(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    folder, base_url = http_root
    write_text(folder / "cdnow.txt.gz", CDNOW_TEXT)
    uri = f"{base_url}/cdnow.txt.gz"
    settings = make_settings(tmp_path, uri)

    result = ingest(settings, out_path=tmp_path / "out" / TRANSACTIONS_FILE)

    assert result.source_uri == uri
    assert result.rows == 7
    local = ingest(
        make_settings(tmp_path, write_text(tmp_path / "same.txt", CDNOW_TEXT)),
        out_path=tmp_path / "local" / TRANSACTIONS_FILE,
    )
    assert result.data_version == local.data_version
    assert pd.read_parquet(result.path)["customer_id"].iloc[0] == "00001"


@pytest.mark.unit
def test_bundled_data_is_fast(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, BUNDLED)

    started = time.perf_counter()
    result = ingest(settings)
    elapsed = time.perf_counter() - started

    assert result.rows == 69_659
    assert elapsed < 2.0, f"ingest took {elapsed:.2f}s"
