"""Scale data, the files: `mlstack synth` writes a resampled CDNOW log (see
`mlstack.data.resample` for the draw) in the gallery's layouts.

What is written to the out folder (the same seed writes the same bytes):

- ``cdnow_synth.txt.gz``: CDNOW's text layout (its header, fixed-width columns, CRLF line
  ends, gzip); ``configs/cdnow.yaml`` reads it with only ``source.uri`` changed.
- ``line_items.csv.gz`` (unless ``line_items=False``): the same purchases as invoice
  lines, in ``configs/line_items.yaml``'s columns (Invoice, StockCode, Description,
  Quantity, InvoiceDate, Price, Customer ID, Country). A purchase of q CDs for V cents
  becomes one invoice of min(q, 3) lines: q - 1 CDs at the unit price p = floor(V / q)
  cents, spread over one or two lines, and one CD at V - p(q - 1) cents, so the lines sum
  to the purchase's value to the cent and its CD count exactly. An invoice's lines are
  different products from a catalogue of 1,000 (StockCode 20000-20999; the first drawn
  uniformly, the others 337 and 674 codes on, so that no line repeats another, which
  validation would drop as a duplicate). Each customer has one country (the United
  Kingdom for about three in four, else one of five others). Invoices are numbered 1, 2,
  ... in date order, and dated at midnight (``00:00:00``), so a line-item run sees each
  customer's purchases on the same days as the CDNOW-layout run. Customer ids are those
  of the CDNOW-layout file. Zero-value purchases (80 of CDNOW's 69,659) become zero-price
  lines, which line_items.yaml's ``zero_amount: drop`` removes; repeated purchases (same
  customer, day, CDs and value: 255 in CDNOW), which cdnow.yaml's ``exact_duplicate:
  drop`` removes, are invoices of their own here and stay.
- ``synth_customers.parquet``: each synthetic customer's source customer and shift.

No Parquet copy of the logs: ingest's normalising (ids as text, stripped) takes most of an
ingest, so a Parquet copy saves little. At 10x it ingested in 2.5 s against the text's
3.2 s (CDNOW layout), and in the same 12.8 s (line items).
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlstack.data.resample import Synthetic, number_text, read_cdnow, resample

logger = logging.getLogger(__name__)

CDNOW_FILE = "cdnow_synth.txt.gz"
LINE_ITEMS_FILE = "line_items.csv.gz"
CUSTOMERS_FILE = "synth_customers.parquet"
CDNOW_HEADER = " customer_id  date number_of_cds  dollar_value"
CATALOGUE = 1000
COUNTRIES = ["United Kingdom"] * 14 + ["Germany", "France", "EIRE", "Spain", "Netherlands"]
CHUNK = 1 << 20  # purchases formatted and compressed at a time


@contextmanager
def stage(name: str, log: logging.Logger = logger) -> Iterator[None]:
    """Log a stage of the generator and how long it took."""
    started = time.perf_counter()
    yield
    log.info("%s: %.1fs", name, time.perf_counter() - started)


# -- writing ---------------------------------------------------------------------------------


def _money(cents: np.ndarray, width: int = 0) -> pa.Array:
    """Cents (not negative) as dollars with two decimals (``%.2f``), left-padded with
    spaces to `width`."""
    dollars = pc.binary_join_element_wise(
        number_text(cents // 100), number_text(cents % 100, 2, "0"), pa.scalar(".")
    )
    return pc.utf8_lpad(dollars, width=width, padding=" ") if width else dollars


def _days(day: np.ndarray, fmt: str) -> pa.Array:
    """Day numbers as `fmt` dates, formatted once per distinct day."""
    low = int(day.min())
    calendar = np.arange(low, int(day.max()) + 1).astype("datetime64[D]").astype(object)
    names = pa.array([d.strftime(fmt) for d in calendar])
    return names.take(pa.array(day - low))


def _lines(fields: list[pa.Array | pa.Scalar], sep: str, end: str) -> memoryview:
    """The bytes of the text lines joining `fields` with `sep`, each ended by `end`."""
    line = pc.binary_join_element_wise(*fields, pa.scalar(sep))
    line = pc.binary_join_element_wise(line, pa.scalar(end), pa.scalar(""))
    offsets = np.frombuffer(line.buffers()[1], np.int32, len(line) + 1, line.offset * 4)
    return memoryview(line.buffers()[2])[offsets[0] : offsets[-1]]


@contextmanager
def _gzip(path: Path) -> Iterator[Callable[[bytes | memoryview], None]]:
    """A writer of a gzip file that compresses one chunk on a second thread while the
    caller formats the next. Level 1: at 10x, level 6 took about four times as long for
    files a fifth smaller. No name or time in the header: equal data, equal bytes."""
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) as stream,
        ThreadPoolExecutor(1) as compressor,
    ):
        pending: list[Future[int]] = []

        def write(data: bytes | memoryview) -> None:
            if pending:
                pending.pop().result()
            pending.append(compressor.submit(stream.write, data))

        yield write
        if pending:
            pending.pop().result()


def write_cdnow(synthetic: Synthetic, out: Path) -> Path:
    """The log in CDNOW's text layout (gzip)."""
    p = synthetic.purchases
    text = out / CDNOW_FILE
    with _gzip(text) as write:
        write(f"{CDNOW_HEADER}\r\n".encode())
        for lo in range(0, len(p.day), CHUNK):
            part = slice(lo, lo + CHUNK)
            fields = [
                pa.scalar(""),
                p.ids.take(pa.array(p.customer[part])),
                _days(p.day[part], "%Y%m%d"),
                number_text(p.quantity[part], 2),
                _money(p.cents[part], 7),
            ]
            write(_lines(fields, " ", "\r\n"))
    return text


def split_lines(quantity: np.ndarray, cents: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each purchase's invoice lines (see the module docstring), ordered by purchase: the
    purchase's position, the line's number in it, its quantity and unit price in cents."""
    q = np.maximum(quantity.astype(np.int64), 1)  # CDNOW has no purchase of 0 CDs
    count = np.minimum(q, 3)
    purchase = np.repeat(np.arange(len(q)), count)
    line = np.arange(len(purchase)) - np.repeat(np.cumsum(count) - count, count)
    lines, rest = count[purchase], q[purchase] - 1  # rest: the CDs at the unit price
    unit = cents[purchase] // q[purchase]
    last = line == lines - 1
    first_share = np.where(lines == 3, rest - rest // 2, rest)
    line_quantity = np.where(last, 1, np.where(line == 0, first_share, rest // 2))
    price = np.where(last, cents[purchase] - unit * rest, unit)
    return purchase, line, line_quantity, price


LINE_ITEM_COLUMNS = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate"]
LINE_ITEM_COLUMNS += ["Price", "Customer ID", "Country"]


def write_line_items(synthetic: Synthetic, out: Path, seed: int) -> tuple[Path, int]:
    """The purchases as invoice lines, CSV (gzip); and the number of lines."""
    p = synthetic.purchases
    rng = np.random.default_rng([seed, 1])  # its own stream: the CDNOW layout stays as it is
    country = rng.integers(0, len(COUNTRIES), size=len(p.ids))
    by_date = np.lexsort((p.customer, p.day))  # invoices are numbered in date order
    purchase, line, quantity, price = split_lines(p.quantity[by_date], p.cents[by_date])
    first_product = rng.integers(0, CATALOGUE, size=len(by_date))
    product = (first_product[purchase] + 337 * line) % CATALOGUE
    codes = pa.array([str(20_000 + i) for i in range(CATALOGUE)])
    names = pa.array([f"CD {20_000 + i}" for i in range(CATALOGUE)])
    countries = pa.array(COUNTRIES)
    text = out / LINE_ITEMS_FILE
    with _gzip(text) as write:
        write((",".join(LINE_ITEM_COLUMNS) + "\n").encode())
        for lo in range(0, len(purchase), CHUNK):
            part = slice(lo, lo + CHUNK)
            row = by_date[purchase[part]]
            fields = [
                number_text(purchase[part] + 1),
                codes.take(pa.array(product[part])),
                names.take(pa.array(product[part])),
                number_text(quantity[part]),
                _days(p.day[row], "%Y-%m-%d 00:00:00"),
                _money(price[part]),
                p.ids.take(pa.array(p.customer[row])),
                countries.take(pa.array(country[p.customer[row]])),
            ]
            write(_lines(fields, ",", "\n"))
    return text, len(purchase)


def write_customers(synthetic: Synthetic, out: Path) -> Path:
    """Each synthetic customer's source customer and shift in days."""
    table = pa.table(
        {
            "customer_id": synthetic.purchases.ids,
            "source_customer_id": synthetic.cdnow.ids.take(pa.array(synthetic.source)),
            "shift_days": pa.array(synthetic.shift, pa.int32()),
        }
    )
    pq.write_table(table, out / CUSTOMERS_FILE, compression="zstd")
    return out / CUSTOMERS_FILE


@dataclass(frozen=True)
class Written:
    """What `generate` wrote."""

    customers: int
    purchases: int
    lines: int  # invoice lines (0 without the line-item layout)
    files: list[Path]


def generate(
    cdnow_path: str | Path, out: Path, customers: int, seed: int, *, line_items: bool = True
) -> tuple[Synthetic, Written]:
    """Resample CDNOW into `customers` customers and write the logs to `out`."""
    if customers < 1:
        raise ValueError(f"customers must be at least 1, got {customers}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"the out folder {out} is a file")
    with stage(f"read CDNOW from {cdnow_path}"):
        cdnow = read_cdnow(cdnow_path)
    with stage(f"resample {customers:,} customers (seed {seed})"):
        synthetic = resample(cdnow, customers, seed)
    out.mkdir(parents=True, exist_ok=True)
    n = len(synthetic.purchases.day)
    with stage(f"write {n:,} purchases in CDNOW's layout"):
        files = [write_cdnow(synthetic, out), write_customers(synthetic, out)]
    lines = 0
    if line_items:
        with stage("write the line-item layout"):
            written, lines = write_line_items(synthetic, out, seed)
        files.append(written)
    return synthetic, Written(customers=customers, purchases=n, lines=lines, files=files)
