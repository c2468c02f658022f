"""The settings and the training pipeline on this machine: `config`, `run`."""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Annotated

import typer
import yaml

from mlstack.cli.common import VERBOSE, load
from mlstack.cli.errors import handle_errors
from mlstack.failures import format_block, read_failure, record_path
from mlstack.steps import configure_logging

app = typer.Typer()


@app.command()
@handle_errors
def config(ctx: typer.Context) -> None:
    """Print the resolved settings (file, environment and --set applied) as YAML."""
    typer.echo(yaml.safe_dump(load(ctx).model_dump(mode="json"), sort_keys=False))


@app.command()
@handle_errors
def run(
    ctx: typer.Context,
    note: Annotated[
        str, typer.Option("--note", "-n", help="The hypothesis of this run, kept with it.")
    ] = "",
    verbose: Annotated[bool, VERBOSE] = False,
) -> None:
    """Run the training pipeline on this machine with the KFP local runner.

    A failed step ends the output with a few lines: the step and its cause, the report to
    open and the setting that applies; --verbose adds the tracebacks."""
    # kfp, and the steps behind it, load only when a run starts: `mlstack --help` stays fast
    from pipelines.run import run_training_locally

    # `mlstack run -v` means what `mlstack -v run` does
    verbose = verbose or ctx.obj["verbose"]
    if verbose:
        configure_logging(logging.DEBUG)
    settings = load(ctx)
    try:
        summary = run_training_locally(settings, note, verbose=verbose)
    except Exception as err:
        # the runner prints the step logs to stdout: flush them so what follows comes last
        sys.stdout.flush()
        if verbose:
            traceback.print_exception(err)
        failure = read_failure(record_path(settings.artifacts_dir))
        typer.echo(format_block(failure, err, verbose), err=True)
        raise typer.Exit(1) from err
    typer.echo(summary.markdown())
