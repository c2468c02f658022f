"""The model as a service and as a batch: `serve`, `score`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlstack.cli.common import load
from mlstack.cli.errors import handle_errors
from mlstack.serving import kserve_argv_guard

app = typer.Typer()


@app.command()
@handle_errors
def serve(ctx: typer.Context) -> None:
    """Serve the `serving.model_alias` model (KServe V1/V2) on serving.host:serving.port.

    The server listens at once and loads the model in the background, retrying until it
    loads; readiness (/v2/models/<name>/ready) answers 503 until then."""
    settings = load(ctx)
    # kserve reads sys.argv when it is imported: import it only here, behind the guard
    with kserve_argv_guard():
        from mlstack.serving.server import serve as run_server
    run_server(settings)


@app.command()
@handle_errors
def score(
    ctx: typer.Context,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Snapshot date (YYYY-MM-DD); default: the latest snapshot."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="Where to write; default: serving.batch_output_dir.")
    ] = None,
) -> None:
    """Score every active customer with the served model; write Parquet and CSV.

    With features.shards > 1 each shard is scored in its own process, then collected."""
    # feast and mlflow load only when scoring: `mlstack --help` stays fast
    from mlstack.steps.scoring import score_step

    typer.echo(score_step(load(ctx), at, out_dir).message)
