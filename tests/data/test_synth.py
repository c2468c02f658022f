"""`mlstack synth`: the resampled scale log, its two layouts and its report against CDNOW."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlstack.cli import app
from mlstack.config import Settings, load_settings
from mlstack.data.ingest import ingest
from mlstack.data.resample import Synthetic
from mlstack.data.synth import (
    CDNOW_FILE,
    CDNOW_HEADER,
    CUSTOMERS_FILE,
    LINE_ITEMS_FILE,
    Written,
    generate,
    split_lines,
)
from mlstack.features.synth_report import compare
from tests.support.paths import PROJECT

pytestmark = pytest.mark.component

CDNOW = PROJECT / "data" / "cdnow_master.txt.gz"
CDNOW_END = pd.Timestamp("1998-06-30")


def read_cdnow_text(path: Path) -> pd.DataFrame:
    """A CDNOW-layout file read plainly (not through the code under test)."""
    frame = pd.read_csv(path, sep=r"\s+", dtype={"customer_id": str, "date": str})
    return frame.assign(date=pd.to_datetime(frame["date"], format="%Y%m%d"))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synthetic, Written, Path]:
    out = tmp_path_factory.mktemp("synth")
    synthetic, written = generate(CDNOW, out, 2000, seed=7)
    return synthetic, written, out


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        generate(CDNOW, tmp_path / name, 300, seed)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted([CDNOW_FILE, CUSTOMERS_FILE, LINE_ITEMS_FILE])
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_each_customer_is_a_cdnow_history_moved_by_one_shift_within_its_cohort(
    small: tuple[Synthetic, Written, Path],
) -> None:
    _, written, out = small
    synth = read_cdnow_text(out / CDNOW_FILE)
    assert written.customers == 2000 and written.purchases == len(synth)
    assert synth["customer_id"].drop_duplicates().tolist() == [f"{i:05d}" for i in range(1, 2001)]

    cdnow = read_cdnow_text(CDNOW)
    drawn = pd.read_parquet(out / CUSTOMERS_FILE)
    # the k-th row of a synthetic customer against the k-th row of its source
    synth["k"] = synth.groupby("customer_id").cumcount()
    cdnow["k"] = cdnow.groupby("customer_id").cumcount()
    synth = synth.merge(drawn, on="customer_id", validate="many_to_one")
    pairs = synth.merge(
        cdnow.rename(columns={"customer_id": "source_customer_id"}),
        on=["source_customer_id", "k"],
        suffixes=("", "_source"),
        validate="many_to_one",
    )
    assert len(pairs) == len(synth)  # no row without its source row
    rows = cdnow["customer_id"].value_counts()[drawn["source_customer_id"]].to_numpy()
    assert (synth.groupby("customer_id").size().to_numpy() == rows).all()
    assert (pairs["number_of_cds"] == pairs["number_of_cds_source"]).all()
    assert (pairs["dollar_value"] == pairs["dollar_value_source"]).all()
    moved = (pairs["date"] - pairs["date_source"]).dt.days
    assert (moved == pairs["shift_days"]).all()
    assert (pairs.groupby("customer_id")["shift_days"].nunique() == 1).all()
    assert pairs["date"].max() <= CDNOW_END
    first = pairs.groupby("customer_id")[["date", "date_source"]].min()
    assert (first["date"].dt.to_period("M") == first["date_source"].dt.to_period("M")).all()
    assert pairs["shift_days"].nunique() > 20  # the dates do move


def test_the_cdnow_layout_is_cdnows_text(small: tuple[Synthetic, Written, Path]) -> None:
    with gzip.open(CDNOW, "rt", newline="") as src:
        original = [src.readline() for _ in range(3)]
    with gzip.open(small[2] / CDNOW_FILE, "rt", newline="") as src:
        written = [src.readline() for _ in range(3)]
    assert written[0] == original[0] == f"{CDNOW_HEADER}\r\n"
    assert [len(line) for line in written[1:]] == [len(line) for line in original[1:]]


def test_the_cdnow_layout_ingests_with_the_cdnow_config(
    small: tuple[Synthetic, Written, Path], project: Callable[..., Settings]
) -> None:
    synthetic, _, out = small
    ingested = ingest(project(f"source.uri={out / CDNOW_FILE}"))
    pd.testing.assert_frame_equal(pd.read_parquet(ingested.path), synthetic.purchases.frame())


def test_split_lines_keeps_each_purchases_value_to_the_cent_and_its_cds() -> None:
    rng = np.random.default_rng(0)
    quantity = np.arange(1, 100).repeat(20)
    cents = rng.integers(0, 200_000, len(quantity))
    cents[:5] = 0
    purchase, line, lines_quantity, price = split_lines(quantity, cents)
    assert (line == np.concatenate([np.arange(n) for n in np.minimum(quantity, 3)])).all()
    per_purchase = np.bincount(purchase)
    assert per_purchase.tolist() == np.minimum(quantity, 3).tolist()
    assert (np.bincount(purchase, lines_quantity) == quantity).all()
    value = np.zeros(len(cents), dtype=np.int64)
    np.add.at(value, purchase, lines_quantity * price)
    assert (value == cents).all()
    assert (price >= 0).all() and (lines_quantity >= 1).all()


def test_the_line_items_sum_to_the_purchases_and_ingest_with_their_config(
    small: tuple[Synthetic, Written, Path], tmp_path: Path
) -> None:
    _, written, out = small
    lines = pd.read_csv(out / LINE_ITEMS_FILE, dtype={"Customer ID": str, "Invoice": str})
    assert len(lines) == written.lines
    assert not lines.duplicated().any()  # validation would drop a repeated line
    assert lines.groupby("Invoice").size().between(1, 3).all()
    lines["cents"] = np.round(lines["Quantity"] * lines["Price"] * 100).astype(int)
    lines["day"] = pd.to_datetime(lines["InvoiceDate"]).dt.normalize()
    purchases = read_cdnow_text(out / CDNOW_FILE)
    purchases["cents"] = np.round(purchases["dollar_value"] * 100).astype(int)
    by_line = lines.groupby(["Customer ID", "day"])[["cents", "Quantity"]].sum()
    by_purchase = purchases.groupby(["customer_id", "date"])[["cents", "number_of_cds"]].sum()
    assert by_line.to_numpy().tolist() == by_purchase.to_numpy().tolist()
    assert by_line.index.tolist() == by_purchase.index.tolist()

    def settings(*overrides: str) -> Settings:
        config = PROJECT / "configs" / "line_items.yaml"
        return load_settings(config, [f"root={tmp_path}", *overrides])

    text = pd.read_parquet(ingest(settings(f"source.uri={out / LINE_ITEMS_FILE}")).path)
    spend = text.groupby("customer_id")["amount"].sum().round(2)
    bought = purchases.groupby("customer_id")["dollar_value"].sum().round(2)
    assert spend.to_dict() == bought.to_dict()
    assert text["country"].notna().all() and text["product_id"].nunique() > 900


def test_the_report_finds_the_label_rate_close_to_cdnows(tmp_path: Path) -> None:
    # histories keep their gaps and move by under a month, so a customer's purchases fall
    # within 30 days of a weekly snapshot as often as in CDNOW: what is left is the noise of
    # drawing 3,000 customers (over 30 seeds the gap was -0.0002 on average, sd 0.003, at
    # most 0.0076; this seed's is +0.0002)
    settings = load_settings(PROJECT / "configs" / "cdnow.yaml", [f"root={tmp_path}"])
    synthetic, _ = generate(CDNOW, tmp_path / "out", 3000, seed=11, line_items=False)
    report = compare(synthetic, settings, seed=11)
    assert report.compared_customers == 3000
    assert abs(report.label_rate_gap) < 0.01
    assert 0.05 < report.cdnow_label_rate < 0.15
    assert {f.name for f in report.features} >= {"recency_days", "spend_total", "orders_90d"}
    assert report.worst.ks < 0.1  # 0.029 to 0.046 over four seeds


def test_synth_says_what_is_wrong_with_its_input(tmp_path: Path) -> None:
    config = ["--config", str(PROJECT / "configs" / "cdnow.yaml")]
    zero = CliRunner().invoke(app, [*config, "synth", "--customers", "0", "--out", str(tmp_path)])
    assert zero.exit_code == 1
    assert zero.output == "error: --customers must be at least 1, got 0\n"

    file = tmp_path / "a-file"
    file.write_text("")
    taken = CliRunner().invoke(app, [*config, "synth", "--customers", "5", "--out", str(file)])
    assert taken.exit_code == 1 and f"the out folder {file} is a file" in taken.output

    missing = tmp_path / "none.txt.gz"
    args = [*config, "synth", "-n", "5", "--out", str(tmp_path / "o"), "--cdnow", str(missing)]
    absent = CliRunner().invoke(app, args)
    assert absent.exit_code == 1 and f"the CDNOW log is missing: {missing}" in absent.output
