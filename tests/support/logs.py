"""Small transaction logs in the gallery's layouts (`configs/`), generated from CDNOW.

Each keeps CDNOW customers' real purchase histories (so a run on it learns something) and
adds what shops' exports carry: lines without a customer id, cancellations, ids written as
floats, timestamps with a time of day, zero prices and repeated lines.

    python -m tests.support.logs line-items data/line_items.csv.gz --customers 3000
    python -m tests.support.logs cdnow data/cdnow_small.txt.gz --customers 3000
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from tests.support.paths import BUNDLED

COUNTRIES = ["United Kingdom"] * 14 + ["Germany", "France", "EIRE", "Spain", "Netherlands"]
LINE_ITEM_COLUMNS = [
    "Invoice",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
]


def _cdnow(customers: int) -> pd.DataFrame:
    frame = pd.read_csv(
        BUNDLED, sep=r"\s+", dtype={"customer_id": str, "date": str}, compression="gzip"
    )
    return frame[frame["customer_id"].astype(int) <= customers].reset_index(drop=True)


def line_item_log(customers: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A line-item export: one row per invoice line, as the retail exports shops publish.

    Every CDNOW purchase becomes an invoice of one to three lines (its CDs spread over
    products) at a random time of that day; about 5% of invoices are later cancelled by a
    'C' invoice with negative quantities; guest invoices without a customer id make about a
    quarter of the lines; customer ids are written as floats; about 0.5% of lines have a
    zero price and 0.2% are exact repeats.
    """
    rng = np.random.default_rng(seed)
    purchases = _cdnow(customers)
    country = {
        c: COUNTRIES[i]
        for c, i in zip(
            purchases["customer_id"].unique(),
            rng.integers(0, len(COUNTRIES), purchases["customer_id"].nunique()),
            strict=True,
        )
    }
    rows: list[dict[str, object]] = []
    invoice = 500_000
    for customer_id, day, cds, value in purchases.itertuples(index=False):
        invoice += 1
        when = pd.Timestamp(day) + pd.Timedelta(minutes=int(rng.integers(8 * 60, 20 * 60)))
        owner = f"{10_000 + int(customer_id)}.0"
        lines = _lines(rng, str(invoice), when, int(cds), float(value), owner, country[customer_id])
        rows += lines
        if rng.random() < 0.05:  # a cancellation of the invoice's first line, days later
            cancel = dict(lines[0])
            later = when + pd.Timedelta(days=int(rng.integers(1, 10)), hours=1)
            cancel.update(
                Invoice=f"C{invoice}", Quantity=-int(cancel["Quantity"]), InvoiceDate=later
            )
            rows.append(cancel)
    guests = purchases.sample(frac=1 / 3, random_state=seed)
    for _, day, cds, value in guests.itertuples(index=False):
        invoice += 1
        when = pd.Timestamp(day) + pd.Timedelta(minutes=int(rng.integers(8 * 60, 20 * 60)))
        rows += _lines(rng, str(invoice), when, int(cds), float(value), "", "United Kingdom")
    log = pd.DataFrame(rows, columns=LINE_ITEM_COLUMNS)
    zero = rng.random(len(log)) < 0.005
    log.loc[zero, "Price"] = 0.0
    repeats = log.sample(frac=0.002, random_state=seed)
    log = pd.concat([log, repeats]).sort_values("InvoiceDate", kind="stable")
    log["InvoiceDate"] = pd.to_datetime(log["InvoiceDate"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    return log.reset_index(drop=True)


def _lines(
    rng: np.random.Generator,
    invoice: str,
    when: pd.Timestamp,
    cds: int,
    value: float,
    customer: str,
    country: str,
) -> list[dict[str, object]]:
    """One invoice's lines: its CDs spread over up to three products at one unit price."""
    count = min(max(cds, 1), 3)
    quantities = np.full(count, max(cds, 1) // count)
    quantities[: max(cds, 1) % count] += 1
    price = round(value / max(cds, 1), 2)
    products = rng.choice(400, size=count, replace=False)
    return [
        {
            "Invoice": invoice,
            "StockCode": f"{20_000 + int(p)}",
            "Description": f"CD {int(p)}",
            "Quantity": int(q),
            "InvoiceDate": when,
            "Price": price,
            "Customer ID": customer,
            "Country": country,
        }
        for p, q in zip(products, quantities, strict=True)
    ]


def cdnow_log(customers: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The CDNOW layout with a shop's blemishes: some lines without a customer id, some
    returns (negative count and value), some repeated lines."""
    rng = np.random.default_rng(seed)
    log = _cdnow(customers)
    returns = log.sample(frac=0.02, random_state=seed).copy()
    later = pd.to_datetime(returns["date"]) + pd.to_timedelta(
        rng.integers(1, 20, len(returns)), "D"
    )
    returns["date"] = later.dt.strftime("%Y%m%d")
    returns[["number_of_cds", "dollar_value"]] *= -1
    anonymous = log.sample(frac=0.05, random_state=seed + 1).assign(customer_id="")
    log = pd.concat([log, returns, anonymous, log.sample(frac=0.002, random_state=seed)])
    return log.sort_values("date", kind="stable").reset_index(drop=True)


def write(log: pd.DataFrame, path: Path, sep: str) -> Path:
    """Write ``log`` as text (gzip when the name ends in .gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as handle:
        log.to_csv(handle, sep=sep, index=False)
    return path


def write_line_items(path: Path, customers: int = 2000, seed: int = 0) -> Path:
    return write(line_item_log(customers, seed), path, ",")


def write_cdnow_blemished(path: Path, customers: int = 2000, seed: int = 0) -> Path:
    # the layout is whitespace-separated, so an empty id would shift the columns: a missing
    # id is written 'NA', as R and pandas exports do, and read back as missing
    log = cdnow_log(customers, seed)
    log["customer_id"] = log["customer_id"].replace("", "NA")
    return write(log, path, " ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("layout", choices=["line-items", "cdnow"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    writer = write_line_items if args.layout == "line-items" else write_cdnow_blemished
    print(writer(args.path, args.customers, args.seed))


if __name__ == "__main__":
    main()
