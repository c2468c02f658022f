"""What a cluster runs and how it is driven: the Katib trial entry point (`tune-trial`), the
compiled pipelines (`compile`), the manifests, the canary `rollout`, and training runs on
Kubeflow Pipelines (`submit`, `schedule`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from mlstack.cli.common import load
from mlstack.cli.errors import handle_errors
from mlstack.config import Settings
from pipelines.profile import CLUSTER_PROFILE, config_version, image_settings, profile_settings

app = typer.Typer()

# kfp, mlflow, the Kubernetes client and the tuning stack load inside the commands that use
# them: `mlstack --help` stays fast.


@app.command(
    name="tune-trial",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
@handle_errors
def tune_trial(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="Training set (Parquet) path or fsspec URI.")],
) -> None:
    """One tuning trial (a Katib trial's entry point): search-space flags such as
    --learning-rate=0.1 after the options; prints `<objective>=<value>` per stage."""
    from mlstack.tuning.katib import parse_trial_args
    from mlstack.tuning.trial import run_trial

    settings = load(ctx)
    try:
        params = parse_trial_args(ctx.args, settings.tuning.space)
    except ValueError as err:  # the command line itself is wrong: a usage error
        raise typer.BadParameter(str(err), param_hint="search-space flags") from err
    run_trial(settings, dataset, params, typer.echo)


@app.command(name="compile")
@handle_errors
def compile_(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option(help="Where to write the KFP IR YAML.")] = Path("dist"),
    profile: Annotated[
        str,
        typer.Option(
            help="Settings YAML laid over --config for the compiled pipelines; "
            "`none`: the config alone, its paths moved under the image's /app.",
        ),
    ] = "configs/cluster.yaml",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a setting over the profile: section.key=value."),
    ] = None,
) -> None:
    """Compile the pipelines to KFP IR YAML for the KFP UI or kfp.Client.

    Settings are layered: the --config file, then the profile, then --set (the global ones,
    then the command's). They are what the compiled pipelines carry; a run overrides only
    the typed parameters (data_uri, note, max_trials, horizon_days, ...)."""
    from pipelines.batch_scoring import compile_batch_scoring
    from pipelines.monitoring import compile_monitoring
    from pipelines.run import compile_training

    chosen = None if profile.lower() == "none" else Path(profile)
    overrides = [*ctx.obj["overrides"], *(set_ or [])]
    settings = profile_settings(ctx.obj["config"], chosen, overrides)
    for build in (compile_training, compile_batch_scoring, compile_monitoring):
        typer.echo(f"wrote {build(settings, out_dir)}")
    version = config_version(image_settings(settings).to_json())
    typer.echo(f"config_version {version} (mode {settings.mode})")


@app.command()
@handle_errors
def manifests(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option(help="Where to write the manifests.")] = Path(
        "manifests"
    ),
) -> None:
    """Render the cluster manifests from the config: the Katib Experiment, and the Helm chart
    with the config's values (inference-service.yaml, cronjobs.yaml and the whole chart.yaml)."""
    from mlstack.deploy.manifests import write_manifests

    for path in write_manifests(load(ctx), out_dir):
        typer.echo(f"wrote {path}")


@app.command()
@handle_errors
def rollout(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The registered model version to roll out.")],
    canary: Annotated[
        int, typer.Option("--canary", "-p", help="Percent of traffic for the new revision.")
    ] = 10,
    storage_uri: Annotated[
        str | None,
        typer.Option(
            help="Serve these artifacts (s3://...) via KServe's storage initializer "
            "instead of models:/<name>/<version>."
        ),
    ] = None,
) -> None:
    """Send --canary percent of the InferenceService's traffic to a new revision serving
    VERSION (the `challenger`); report where traffic goes."""
    from mlstack.deploy import target

    typer.echo(target.roll_out(load(ctx), version, canary, storage_uri=storage_uri))


def compiled_package(ctx: typer.Context, settings: Settings, package: Path | None) -> Path:
    """The compiled pipeline: --package as given, else compiled now as `mlstack compile`
    does (the cluster profile over the config, then --set), next to `kfp.package_path`."""
    if package is not None:
        return package
    from pipelines.run import compile_training

    profile = settings.root / CLUSTER_PROFILE
    compiled = profile_settings(ctx.obj["config"], profile, ctx.obj["overrides"])
    return compile_training(compiled, settings.kfp.package_path.parent)


PACKAGE = typer.Option(help="A compiled pipeline; default: compile one now.")


@app.command()
@handle_errors
def submit(
    ctx: typer.Context,
    note: Annotated[str, typer.Option("--note", "-n", help="The hypothesis of this run.")] = "",
    run_name: Annotated[
        str | None, typer.Option(help="Run name (a run of this name is not started twice).")
    ] = None,
    package: Annotated[Path | None, PACKAGE] = None,
) -> None:
    """Start a training run on the cluster's Kubeflow Pipelines (kfp.* settings)."""
    from mlstack.deploy.kfp_runs import client_from_settings, submit_run

    settings = load(ctx)
    path = compiled_package(ctx, settings, package)
    name = run_name or f"{settings.pipeline.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    run_id = submit_run(
        client_from_settings(settings.kfp),
        path,
        experiment=settings.kfp.experiment,
        run_name=name,
        params={"note": note},
        service_account=settings.kfp.run_service_account,
        namespace=settings.kfp.namespace,
        upload=True,
    )
    typer.echo(
        f"run {name}: {run_id} in experiment {settings.kfp.experiment} at {settings.kfp.host}"
    )


@app.command()
@handle_errors
def schedule(
    ctx: typer.Context,
    cron: Annotated[
        str | None, typer.Option(help="6-field cron (seconds first); default: kfp.schedule_cron.")
    ] = None,
    package: Annotated[Path | None, PACKAGE] = None,
) -> None:
    """Create the recurring training run on the cluster's Kubeflow Pipelines."""
    from mlstack.deploy.kfp_runs import client_from_settings, create_recurring_run

    settings = load(ctx)
    path = compiled_package(ctx, settings, package)
    cron = cron or settings.kfp.schedule_cron
    job_id = create_recurring_run(
        client_from_settings(settings.kfp),
        path,
        experiment=settings.kfp.experiment,
        name=settings.kfp.schedule_name,
        cron=cron,
        params={"note": "scheduled retraining"},
        max_concurrency=settings.kfp.max_concurrency,
        service_account=settings.kfp.run_service_account,
        namespace=settings.kfp.namespace,
    )
    typer.echo(f"recurring run {settings.kfp.schedule_name}: {job_id} on {cron!r}")
