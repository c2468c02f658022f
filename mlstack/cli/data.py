"""Data for benches and trials: `synth`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlstack.cli.common import load
from mlstack.cli.errors import handle_errors

app = typer.Typer()

BUNDLED = Path("data/cdnow_master.txt.gz")


@app.command()
@handle_errors
def synth(
    ctx: typer.Context,
    customers: Annotated[
        int, typer.Option("--customers", "-n", help="Customers to draw (CDNOW has 23,570).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The folder to write to.")],
    seed: Annotated[int, typer.Option(help="The same seed writes the same bytes.")] = 0,
    line_items: Annotated[
        bool,
        typer.Option("--line-items/--no-line-items", help="Also write the line-item layout."),
    ] = True,
    cdnow: Annotated[Path, typer.Option(help="The CDNOW log to draw from.")] = BUNDLED,
) -> None:
    """Write a scale log of N customers drawn from CDNOW, and how far it is from CDNOW.

    Each customer takes a CDNOW customer's whole history under a new id, its
    dates moved by one shift that keeps the first purchase in its cohort month.

    Into --out: cdnow_synth.txt.gz (CDNOW's layout: configs/cdnow.yaml reads it
    with --set source.uri=...), line_items.csv.gz (configs/line_items.yaml's
    layout), synth_customers.parquet (each customer's source and shift) and
    synth_report.json: the label rate and each feature's KS distance against
    CDNOW (past CDNOW's size, on a seeded sample of as many customers).

    Text only: ingest spends most of its time normalising the columns, so a
    Parquet copy would save little (10x: 3.2 s -> 2.5 s; line items: none).
    """
    if customers < 1:
        raise ValueError(f"--customers must be at least 1, got {customers}")
    # pandas, pyarrow and scipy load only when data is made: `mlstack --help` stays fast
    from mlstack.data.synth import generate, stage
    from mlstack.features.synth_report import REPORT_FILE, compare

    settings = load(ctx)
    synthetic, written = generate(cdnow, out, customers, seed, line_items=line_items)
    report = compare(synthetic, settings, seed)
    with stage("report written"):
        path = report.write_json(out / REPORT_FILE)
    typer.echo(
        f"{written.customers:,} customers, {written.purchases:,} purchases"
        + (f", {written.lines:,} invoice lines" if written.lines else "")
        + f" in {out}:"
    )
    for file in [*written.files, path]:
        typer.echo(f"  {file.name:<26} {file.stat().st_size / 1e6:>9.1f} MB")
    typer.echo(report.table())
