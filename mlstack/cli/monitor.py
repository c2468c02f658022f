"""After deployment: the drift check (`drift`), the policy replay (`replay`) and the online
store's upkeep (`materialize`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from mlstack.cli.common import load
from mlstack.cli.errors import handle_errors

app = typer.Typer()

# pandas, fsspec, evidently, feast and mlflow load inside the commands: `mlstack --help`
# stays fast.


@app.command()
@handle_errors
def drift(
    ctx: typer.Context,
    at: Annotated[
        str | None, typer.Option(help="End of the window (ISO date/time, UTC); default: now.")
    ] = None,
    no_trigger: Annotated[
        bool, typer.Option("--no-trigger", help="Decide and record, but start no retrain.")
    ] = False,
) -> None:
    """One drift check: the window against the champion's training reference; the policy
    decides nothing, alert or retrain; the decision is logged and acted on."""
    import pandas as pd

    from mlstack.monitoring.check import run_check
    from mlstack.services import check_services
    from pipelines.run import run_training_locally

    settings = load(ctx)
    check_services(settings, ("mlflow", "object_store"))
    now = None if at is None else pd.Timestamp(at).to_pydatetime()
    # a retrain decided in local mode runs the training pipeline in this process
    result = run_check(
        settings, now=now, trigger=not no_trigger, local_training=run_training_locally
    )
    window = result.window
    typer.echo(
        f"window {window['id']} ({window['rows']} {window['source']} rows): "
        f"{result.drifted_share:.0%} of features drifted"
    )
    if result.performance:
        typer.echo(f"realised PR-AUC {result.performance['pr_auc']:.4f}")
    typer.echo(f"decision: {result.decision.action}")
    for reason in result.decision.reasons:
        typer.echo(f"  - {reason}")
    if "report" in window:
        typer.echo(f"report: {window['report']}")


@app.command()
@handle_errors
def replay(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option(help="Where the table and the plot go.")] = Path(
        "artifacts/replay"
    ),
    weeks: Annotated[int | None, typer.Option(help="Stop after this many weeks.")] = None,
) -> None:
    """Replay the data's timeline week by week under three policies (never retrain, a
    fixed schedule, the drift policy); write the table and the timeline plot."""
    from mlstack.monitoring.replay import run_replay

    settings = load(ctx)
    target = out_dir if out_dir.is_absolute() else settings.root / out_dir
    result = run_replay(settings, target, weeks=weeks)
    typer.echo(result.markdown())
    typer.echo(f"\nreplay took {result.seconds:.0f} s; files:")
    for name, path in result.files.items():
        typer.echo(f"  {name}: {path}")


@app.command()
@handle_errors
def materialize(
    ctx: typer.Context,
    end: Annotated[
        str | None, typer.Option(help="Materialize up to this time (UTC); default: now.")
    ] = None,
) -> None:
    """Load the newest features into the online store, incrementally (the CronJob's job);
    with `features.shards` > 1, shard by shard in processes."""
    import pandas as pd

    from mlstack.services import check_services
    from mlstack.steps import online

    settings = load(ctx)
    until = datetime.now(UTC) if end is None else pd.Timestamp(end).to_pydatetime()
    check_services(settings, ("object_store", "redis"))
    online.materialize(settings, until)
    typer.echo(f"materialized up to {until.isoformat()}")
