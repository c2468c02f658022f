"""Ingest: raw transaction log (any fsspec URI) → canonical, versioned Parquet.

The canonical table has one row per line of the log (a purchase or a return) and these
columns:

- ``customer_id`` (pandas ``string``), ``timestamp`` (``datetime64[ns]``, naive UTC, time
  of day kept), ``amount`` (``float64``) — always present;
- ``quantity`` (``float64``), ``invoice_id``, ``product_id``, ``country`` and the mapped
  ``categoricals`` (``string``) — only when the column mapping names them.

Nothing is dropped here: unparseable values become NaN / NaT, and validation's cleaning
rules decide what happens to them, to duplicates and to the rest.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from mlstack.config import Settings, SourceSettings
from mlstack.versioning import content_version

logger = logging.getLogger(__name__)

TRANSACTIONS_FILE = "transactions.parquet"
INGEST_STATS_FILE = "ingest.json"

ID_COLUMNS = ("customer_id", "invoice_id", "product_id")
_WHOLE_FLOAT = r"^(\d+)\.0+$"
CANONICAL_ORDER = ("customer_id", "timestamp", "amount", "quantity", *ID_COLUMNS[1:])


class IngestError(ValueError):
    """The source cannot be mapped onto the canonical columns."""


@dataclass(frozen=True)
class IngestResult:
    """What one ingest run read, dropped and wrote."""

    data_version: str
    path: Path
    rows: int
    source_uri: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the content of ``ingest.json``)."""
        out = asdict(self)
        out["path"] = str(self.path)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IngestResult:
        """Rebuild a result from `to_dict` output."""
        return cls(
            data_version=str(data["data_version"]),
            path=Path(data["path"]),
            rows=int(data["rows"]),
            source_uri=str(data.get("source_uri", "")),
        )

    @classmethod
    def read_json(cls, path: Path | str) -> IngestResult:
        """Load a result from an ``ingest.json`` sidecar."""
        return cls.from_dict(json.loads(Path(path).read_text()))


# -- reading -------------------------------------------------------------------------------


def _csv_engine(delimiter: str) -> str:
    """The pandas parser that supports this delimiter (regexes need the python engine)."""
    if delimiter == r"\s+" or len(delimiter) == 1:
        return "c"
    return "python"


def _text_source_columns(source: SourceSettings) -> list[str]:
    """Source columns to read as text: ids and the timestamp (parsed later, with its format)."""
    mapping = source.columns
    names = [getattr(mapping, canonical) for canonical in ID_COLUMNS]
    names += [*mapping.attributes().values(), mapping.timestamp]
    return [name for name in names if name]


def read_source(source: SourceSettings) -> pd.DataFrame:
    """Read the raw log at ``source.uri``: CSV (optionally compressed) or Parquet."""
    options = dict(source.storage_options)
    if source.format == "parquet":
        # Parquet needs random access; reading the bytes once works on any server.
        with fsspec.open(source.uri, "rb", **options) as handle:
            payload = handle.read()
        raw = pd.read_parquet(io.BytesIO(payload))
    else:
        text_columns = dict.fromkeys(_text_source_columns(source), str)
        with fsspec.open(source.uri, "rb", compression="infer", **options) as handle:
            raw = pd.read_csv(
                handle,
                sep=source.delimiter,
                engine=_csv_engine(source.delimiter),
                dtype=text_columns,
            )
    logger.info("read %d rows, columns %s from %s", len(raw), list(raw.columns), source.uri)
    return raw


# -- normalising ---------------------------------------------------------------------------


def _as_text(values: pd.Series) -> pd.Series:
    """Values as stripped pandas strings; whole floats lose their ``.0``."""
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        if np.all(np.mod(finite, 1) == 0):
            values = values.astype("Int64")
    return values.astype("string").str.strip()


def _as_id(values: pd.Series) -> pd.Series:
    """Ids as text; an id a spreadsheet wrote as a whole float (``13607.0``) loses the
    ``.0``, while leading zeros (``00042``) stay."""
    return _as_text(values).str.replace(_WHOLE_FLOAT, r"\1", regex=True)


def _as_timestamp(values: pd.Series, fmt: str | None) -> pd.Series:
    """Values as naive-UTC ``datetime64[ns]``; unparseable values become NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    elif not pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(_as_text(values), format=fmt, errors="coerce", utc=True)
        values = parsed.dt.tz_localize(None)
    return values.astype("datetime64[ns]")


def _as_number(values: pd.Series) -> pd.Series:
    """Values as float64; unparseable values become NaN."""
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _mapped_columns(raw: pd.DataFrame, source: SourceSettings) -> dict[str, str]:
    """Canonical name → source column for every mapped column; raise if one is absent."""
    columns = source.columns
    mapped = {name: getattr(columns, name) for name in CANONICAL_ORDER if getattr(columns, name)}
    mapped |= {"unit_price": columns.unit_price} if columns.unit_price else {}
    mapped |= columns.attributes()
    for canonical, column in mapped.items():
        if column not in raw.columns:
            raise IngestError(
                f"canonical column {canonical!r} is mapped to source column {column!r}, "
                f"which is missing; the source has columns {list(map(str, raw.columns))}"
            )
    return mapped


def normalise(raw: pd.DataFrame, source: SourceSettings) -> pd.DataFrame:
    """Map the source columns onto the canonical columns and types."""
    mapped = _mapped_columns(raw, source)
    out: dict[str, pd.Series] = {
        "customer_id": _as_id(raw[mapped["customer_id"]]),
        "timestamp": _as_timestamp(raw[mapped["timestamp"]], source.timestamp_format),
    }
    if "quantity" in mapped:
        out["quantity"] = _as_number(raw[mapped["quantity"]])
    if "amount" in mapped:
        out["amount"] = _as_number(raw[mapped["amount"]])
    else:
        # ColumnMapping guarantees quantity and unit_price are mapped when amount is not.
        out["amount"] = out["quantity"] * _as_number(raw[mapped["unit_price"]])
    for canonical in ID_COLUMNS[1:]:
        if canonical in mapped:
            out[canonical] = _as_id(raw[mapped[canonical]])
    for canonical in source.columns.attributes():
        out[canonical] = _as_text(raw[mapped[canonical]])
    order = [*CANONICAL_ORDER, *source.columns.attributes()]
    frame = pd.DataFrame(out, index=raw.index)
    return frame[[name for name in order if name in frame.columns]].reset_index(drop=True)


# -- versioning and writing ----------------------------------------------------------------


def ingest(settings: Settings, out_path: Path | None = None) -> IngestResult:
    """Read and normalise the source, in the log's own order (so a row number in a
    validation example is the row of the log); write Parquet plus an ``ingest.json``."""
    source = settings.source
    ordered = normalise(read_source(source), source)
    version = content_version(ordered)
    path = Path(out_path) if out_path else settings.data_dir(version) / TRANSACTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered.to_parquet(path, index=False)
    result = IngestResult(data_version=version, path=path, rows=len(ordered), source_uri=source.uri)
    (path.parent / INGEST_STATS_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    logger.info("wrote %d rows, data version %s, to %s", len(ordered), version, path)
    return result
