"""The `mlstack` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from mlstack.config import DEFAULT_CONFIG, Settings, load_settings

app = typer.Typer(
    help="mlstack: purchase propensity from raw transactions to a served, monitored model.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
log = logging.getLogger("mlstack")


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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Global options: which config to load and what to override."""
    from mlstack.steps import configure_logging

    configure_logging(logging.DEBUG if verbose else logging.INFO)
    ctx.obj = {"config": config, "overrides": list(set_ or [])}


def _settings(ctx: typer.Context) -> Settings:
    try:
        return load_settings(ctx.obj["config"], ctx.obj["overrides"])
    except (FileNotFoundError, ValueError) as err:
        raise typer.BadParameter(str(err), param_hint="--config/--set") from err


@app.command()
def config(ctx: typer.Context) -> None:
    """Print the resolved settings (file, environment and --set applied) as YAML."""
    import yaml

    typer.echo(yaml.safe_dump(_settings(ctx).model_dump(mode="json"), sort_keys=False))


@app.command()
def run(
    ctx: typer.Context,
    note: Annotated[
        str, typer.Option("--note", "-n", help="The hypothesis of this run, kept with it.")
    ] = "",
) -> None:
    """Run the training pipeline on this machine with the KFP local runner."""
    from pipelines.run import run_training_locally

    summary = run_training_locally(_settings(ctx), note)
    typer.echo(summary.markdown())


@app.command()
def models(ctx: typer.Context) -> None:
    """List the registered model's versions, their aliases and test metrics."""
    from mlstack.registry import models as registry
    from mlstack.registry import tracking

    settings = _settings(ctx)
    client = tracking.configure(settings)
    rows = registry.list_versions(client, settings.mlflow.registered_model)
    if not rows:
        typer.echo(f"no versions of {settings.mlflow.registered_model} yet: run `make run`")
        return
    typer.echo(registry.format_versions(rows))


@app.command()
def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The model version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (recorded).")],
) -> None:
    """Move the `champion` alias to VERSION by hand, recording why."""
    from mlstack.registry import models as registry
    from mlstack.registry import tracking

    settings = _settings(ctx)
    try:
        change = registry.promote(tracking.configure(settings), settings, version, reason, "cli")
    except registry.RegistryError as err:
        raise typer.BadParameter(str(err), param_hint="VERSION") from err
    typer.echo(change.message)


@app.command()
def rollback(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (recorded).")],
) -> None:
    """Give `champion` back to the previous champion, recording why."""
    from mlstack.registry import models as registry
    from mlstack.registry import tracking

    settings = _settings(ctx)
    try:
        change = registry.rollback(tracking.configure(settings), settings, reason, "cli")
    except registry.RegistryError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(change.message)


@app.command()
def serve(ctx: typer.Context) -> None:
    """Serve the `serving.model_alias` model (KServe V1/V2) on serving.host:serving.port."""
    from mlstack.serving import kserve_argv_guard

    settings = _settings(ctx)
    with kserve_argv_guard():
        from mlstack.serving.model import ModelLoadError
        from mlstack.serving.server import serve as run_server
    try:
        run_server(settings)
    except ModelLoadError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err


@app.command()
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
    """Score every active customer with the served model; write Parquet and CSV."""
    from mlstack.serving.batch import score_customers
    from mlstack.serving.model import ModelLoadError

    settings = _settings(ctx)
    try:
        result = score_customers(settings, at, out_dir)
    except (ModelLoadError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(result.message)


@app.command(
    name="tune-trial",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def tune_trial(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="Training set (Parquet) path or fsspec URI.")],
) -> None:
    """One tuning trial (a Katib trial's entry point): search-space flags such as
    --learning-rate=0.1 after the options; prints `<objective>=<value>` per stage."""
    from mlstack.tuning.katib import parse_trial_args
    from mlstack.tuning.trial import run_trial

    settings = _settings(ctx)
    try:
        params = parse_trial_args(ctx.args, settings.tuning.space)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="search-space flags") from err
    run_trial(settings, dataset, params, typer.echo)


@app.command(name="compile")
def compile_(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option(help="Where to write the KFP IR YAML.")] = Path("dist"),
) -> None:
    """Compile the pipelines to KFP IR YAML for the KFP UI or kfp.Client."""
    from pipelines.batch_scoring import compile_batch_scoring
    from pipelines.run import compile_training

    settings = _settings(ctx)
    for path in (compile_training(settings, out_dir), compile_batch_scoring(settings, out_dir)):
        typer.echo(f"wrote {path}")


@app.command()
def manifests(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option(help="Where to write the manifests.")] = Path(
        "manifests"
    ),
) -> None:
    """Render the cluster manifests that come from the config (the Katib Experiment, the
    InferenceService)."""
    from mlstack.deploy.inference_service import write_inference_service
    from mlstack.tuning.katib import write_manifest

    settings = _settings(ctx)
    path = write_manifest(settings, out_dir / "katib-experiment.yaml")
    typer.echo(f"wrote {path}")
    path = write_inference_service(settings, out_dir / "inference-service.yaml")
    typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
