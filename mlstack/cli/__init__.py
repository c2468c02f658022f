"""The `mlstack` command: global options here, the commands in one module per area.

Each area's module holds a Typer app; added here without a name, its commands sit on the
root, so every command keeps its path (`mlstack promote`, not `mlstack models promote`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from mlstack.cli import cluster, data, models, monitor, run, serve
from mlstack.cli.common import VERBOSE
from mlstack.config import DEFAULT_CONFIG
from mlstack.steps import configure_logging

app = typer.Typer(
    help="mlstack: purchase propensity from raw transactions to a served, monitored model.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
# the order of `mlstack --help`
for area in (run, data, models, serve, cluster, monitor):
    app.add_typer(area.app)


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="YAML config file.", envvar="MLSTACK_CONFIG")
    ] = DEFAULT_CONFIG,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a setting: section.key=value (repeatable)."),
    ] = None,
    verbose: Annotated[bool, VERBOSE] = False,
) -> None:
    """Global options: which config to load and what to override."""
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    ctx.obj = {"config": config, "overrides": list(set_ or []), "verbose": verbose}


__all__ = ["app"]
