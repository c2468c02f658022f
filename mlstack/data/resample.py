"""Scale data, the draw: N customers resampled from CDNOW (`mlstack synth`; the files it
writes are in `mlstack.data.synth`).

How a synthetic log is made:

- **Customers.** N customers are drawn with replacement from CDNOW's 23,570
  (``numpy.random.default_rng``, seeded). Synthetic customer i (ids 1..N, zero-padded to
  at least CDNOW's five digits) takes its source customer's whole purchase history: every
  row, in order, with its number of CDs and dollar value unchanged.
- **Dates.** Each history moves by one whole number of days, drawn uniformly among the
  shifts that keep the first purchase in its cohort (the month of the first purchase; all
  CDNOW cohorts are in Q1 1997) and no purchase after the log's last day (1998-06-30). Gaps
  between purchases are kept exactly, so recency, frequency and inter-purchase times keep
  their distributions, while dates spread within the month.
- **Order.** Rows are written by customer id, then as in the source history: CDNOW's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlstack.config import SourceSettings
from mlstack.data.ingest import normalise, read_source

CDNOW_ID_WIDTH = 5
EPOCH_DAY = np.datetime64(0, "D")


def number_text(values: np.ndarray, width: int = 0, fill: str = " ") -> pa.Array:
    """Integers as text, left-padded with `fill` to `width`."""
    text = pc.cast(pa.array(values), pa.string())
    return pc.utf8_lpad(text, width=width, padding=fill) if width else text


def cdnow_source(uri: str | Path) -> SourceSettings:
    """The source settings of a log in CDNOW's layout (as in ``configs/cdnow.yaml``)."""
    return SourceSettings(uri=str(uri), delimiter=r"\s+", timestamp_format="%Y%m%d")


@dataclass(frozen=True)
class Purchases:
    """A log's purchases as arrays sorted by customer (stable: a history keeps its order)."""

    customer: np.ndarray  # int32 code per row: an index into ``ids``
    day: np.ndarray  # int32 days since 1970-01-01
    quantity: np.ndarray  # int32 number of CDs
    cents: np.ndarray  # int64 dollar value in cents
    ids: pa.Array  # customer id (text) per code

    def frame(self) -> pd.DataFrame:
        """The rows as ingest's canonical table (customer_id, timestamp, amount, quantity)."""
        ids = self.ids.take(pa.array(self.customer)).to_numpy(zero_copy_only=False)
        return pd.DataFrame(
            {
                "customer_id": pd.array(ids, dtype="string"),
                "timestamp": self.day.astype("datetime64[D]").astype("datetime64[ns]"),
                "amount": self.cents / 100,
                "quantity": self.quantity.astype("float64"),
            }
        )

    def subset(self, codes: np.ndarray) -> Purchases:
        """The histories of these customer codes (sorted), renumbered 0.. in that order."""
        codes = np.sort(codes)
        rows = np.flatnonzero(np.isin(self.customer, codes))
        return Purchases(
            customer=np.searchsorted(codes, self.customer[rows]).astype(np.int32),
            day=self.day[rows],
            quantity=self.quantity[rows],
            cents=self.cents[rows],
            ids=self.ids.take(pa.array(codes)),
        )


def read_cdnow(path: str | Path) -> Purchases:
    """CDNOW's purchases, read with the project's ingest (``configs/cdnow.yaml``'s mapping)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"the CDNOW log is missing: {path} (the bundled one is in data/)")
    source = cdnow_source(path)
    frame = normalise(read_source(source), source)
    unreadable = frame[["customer_id", "timestamp", "amount", "quantity"]].isna().any(axis=1)
    if unreadable.any():
        raise ValueError(f"{path}: {int(unreadable.sum())} rows do not parse in CDNOW's layout")
    codes, ids = pd.factorize(frame["customer_id"], sort=True)
    day = (frame["timestamp"].to_numpy().astype("datetime64[D]") - EPOCH_DAY).astype(np.int32)
    order = np.argsort(codes, kind="stable")
    return Purchases(
        customer=codes[order].astype(np.int32),
        day=day[order],
        quantity=frame["quantity"].to_numpy()[order].astype(np.int32),
        cents=np.round(frame["amount"].to_numpy()[order] * 100).astype(np.int64),
        ids=pa.array(np.asarray(ids, dtype=object), pa.string()),
    )


@dataclass(frozen=True)
class Synthetic:
    """A synthetic log: its purchases (codes 0..N-1 are ids 1..N) and where each came from."""

    purchases: Purchases
    source: np.ndarray  # per synthetic customer, its source customer's code in ``cdnow``
    shift: np.ndarray  # per synthetic customer, the days its history moved
    cdnow: Purchases


def id_width(customers: int) -> int:
    """Digits of a synthetic customer id: CDNOW's five, or as many as N needs."""
    return max(CDNOW_ID_WIDTH, len(str(customers)))


def resample(cdnow: Purchases, customers: int, seed: int) -> Synthetic:
    """Draw `customers` histories from `cdnow` with replacement, each shifted within its
    cohort month and the log's period (see the module docstring)."""
    if customers < 1:
        raise ValueError(f"customers must be at least 1, got {customers}")
    rng = np.random.default_rng(seed)
    start = np.searchsorted(cdnow.customer, np.arange(len(cdnow.ids) + 1))
    first = np.minimum.reduceat(cdnow.day, start[:-1]).astype(np.int64)
    last = np.maximum.reduceat(cdnow.day, start[:-1]).astype(np.int64)
    month = first.astype("datetime64[D]").astype("datetime64[M]")
    month_start = (month.astype("datetime64[D]") - EPOCH_DAY).astype(np.int64)
    month_end = ((month + 1).astype("datetime64[D]") - EPOCH_DAY).astype(np.int64) - 1
    end = int(cdnow.day.max())

    source = rng.integers(0, len(cdnow.ids), size=customers)
    low = month_start[source] - first[source]
    high = np.minimum(month_end[source] - first[source], end - last[source])
    shift = rng.integers(low, high, endpoint=True)

    counts = np.diff(start)[source]
    owner = np.repeat(np.arange(customers, dtype=np.int32), counts)
    rows = np.repeat(start[source] - (np.cumsum(counts) - counts), counts)
    rows += np.arange(len(owner))
    purchases = Purchases(
        customer=owner,
        day=(cdnow.day[rows] + shift[owner]).astype(np.int32),
        quantity=cdnow.quantity[rows],
        cents=cdnow.cents[rows],
        ids=number_text(np.arange(1, customers + 1), id_width(customers), "0"),
    )
    return Synthetic(purchases=purchases, source=source, shift=shift, cdnow=cdnow)
