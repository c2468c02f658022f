"""The registered model's versions and its champion: `models`, `promote`, `rollback`."""

from __future__ import annotations

from typing import Annotated

import typer

from mlstack.cli.common import CLUSTER, load
from mlstack.cli.errors import handle_errors

app = typer.Typer()

# mlflow and the Kubernetes client load inside the commands: `mlstack --help` stays fast.


@app.command()
@handle_errors
def models(ctx: typer.Context) -> None:
    """List the registered model's versions, their aliases and test metrics."""
    from mlstack.registry import listing, tracking

    settings = load(ctx)
    client = tracking.configure(settings.mlflow)
    rows = listing.list_versions(client, settings.mlflow.registered_model)
    if not rows:
        typer.echo(f"no versions of {settings.mlflow.registered_model} yet: run `make run`")
        return
    typer.echo(listing.format_versions(rows))


@app.command()
@handle_errors
def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The model version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (recorded).")],
    cluster: Annotated[bool, CLUSTER] = False,
) -> None:
    """Move the `champion` alias to VERSION by hand, recording why; with --cluster, give it
    all the InferenceService's traffic first."""
    from mlstack.deploy import target

    typer.echo(target.promote(load(ctx), version, reason, cluster=cluster))


@app.command()
@handle_errors
def rollback(
    ctx: typer.Context,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (recorded; --auto gives its own).")
    ] = "",
    cluster: Annotated[bool, CLUSTER] = False,
    auto: Annotated[
        bool,
        typer.Option(
            "--auto",
            help="Roll the canary back only if it breaks deploy.rollback's limits "
            "(error rate, p99), and say why.",
        ),
    ] = False,
) -> None:
    """Give `champion` back to the previous champion, recording why; with --cluster, return
    the InferenceService's traffic to the previous rolled-out revision first."""
    from mlstack.deploy import target

    settings = load(ctx)
    if auto:
        typer.echo(target.auto_rollback(settings))
        return
    if not reason:
        raise typer.BadParameter("say why with --reason (or use --auto)", param_hint="--reason")
    typer.echo(target.rollback(settings, reason, cluster=cluster))
