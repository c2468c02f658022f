"""The `mlstack` command."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from mlstack.config import DEFAULT_CONFIG, Settings, load_settings

app = typer.Typer(
    help="mlstack: purchase propensity from raw transactions to a served, monitored model.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
log = logging.getLogger("mlstack")
T = TypeVar("T")


_VERBOSE = typer.Option(
    "--verbose", "-v", help="Debug logging, and the full traceback when a step fails."
)


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
    verbose: Annotated[bool, _VERBOSE] = False,
) -> None:
    """Global options: which config to load and what to override."""
    from mlstack.steps import configure_logging

    configure_logging(logging.DEBUG if verbose else logging.INFO)
    ctx.obj = {"config": config, "overrides": list(set_ or []), "verbose": verbose}


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
    verbose: Annotated[bool, _VERBOSE] = False,
) -> None:
    """Run the training pipeline on this machine with the KFP local runner.

    A failed step ends the output with a few lines: the step and its cause, the report to
    open and the setting that applies; --verbose adds the tracebacks."""
    from mlstack.failures import format_block, read_failure, record_path
    from mlstack.steps import configure_logging
    from pipelines.run import run_training_locally

    # `mlstack run -v` means what `mlstack -v run` does
    verbose = verbose or ctx.obj["verbose"]
    if verbose:
        configure_logging(logging.DEBUG)
    settings = _settings(ctx)
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


_CLUSTER = typer.Option(
    "--cluster",
    help="Also change the InferenceService through the Kubernetes API (implied by mode=cluster).",
)


@app.command()
def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The model version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (recorded).")],
    cluster: Annotated[bool, _CLUSTER] = False,
) -> None:
    """Move the `champion` alias to VERSION by hand, recording why; with --cluster, give it
    all the InferenceService's traffic first."""
    from mlstack.registry import models as registry
    from mlstack.registry import tracking

    settings = _settings(ctx)
    if cluster or settings.mode == "cluster":
        from mlstack.deploy import rollout as ops

        outcome = _cluster_op(
            settings,
            lambda api: ops.promote(api, tracking.configure(settings), settings, version, reason),
        )
        typer.echo(outcome.report())
        return
    try:
        change = registry.promote(tracking.configure(settings), settings, version, reason, "cli")
    except registry.RegistryError as err:
        raise typer.BadParameter(str(err), param_hint="VERSION") from err
    typer.echo(change.message)


@app.command()
def rollback(
    ctx: typer.Context,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (recorded; --auto gives its own).")
    ] = "",
    cluster: Annotated[bool, _CLUSTER] = False,
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
    from mlstack.registry import models as registry
    from mlstack.registry import tracking

    settings = _settings(ctx)
    if not auto and not reason:
        raise typer.BadParameter("say why with --reason (or use --auto)", param_hint="--reason")
    if auto or cluster or settings.mode == "cluster":
        from mlstack.deploy import rollout as ops

        client = tracking.configure(settings)
        if auto:
            health, outcome = _cluster_op(
                settings, lambda api: ops.auto_rollback(api, client, settings)
            )
            if health.note:
                typer.echo(health.note)
                return
            verdict = (
                "not judged: too little traffic"
                if not health.judged
                else "; ".join(health.breaches) or "within limits"
            )
            typer.echo(f"canary: {health.summary()}: {verdict}")
            if outcome is not None:
                typer.echo(outcome.report())
            return
        typer.echo(
            _cluster_op(settings, lambda api: ops.rollback(api, client, settings, reason)).report()
        )
        return
    try:
        change = registry.rollback(tracking.configure(settings), settings, reason, "cli")
    except registry.RegistryError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(change.message)


@app.command()
def serve(ctx: typer.Context) -> None:
    """Serve the `serving.model_alias` model (KServe V1/V2) on serving.host:serving.port.

    The server listens at once and loads the model in the background, retrying until it
    loads; readiness (/v2/models/<name>/ready) answers 503 until then."""
    from mlstack.serving import kserve_argv_guard

    settings = _settings(ctx)
    with kserve_argv_guard():
        from mlstack.serving.server import serve as run_server
    try:
        run_server(settings)
    except ValueError as err:  # settings the server cannot start with
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
    from pipelines.profile import profile_settings
    from pipelines.run import compile_training

    chosen = None if profile.lower() == "none" else Path(profile)
    try:
        settings = profile_settings(
            ctx.obj["config"], chosen, [*ctx.obj["overrides"], *(set_ or [])]
        )
    except (FileNotFoundError, ValueError) as err:
        raise typer.BadParameter(str(err), param_hint="--config/--profile/--set") from err
    for build in (compile_training, compile_batch_scoring, compile_monitoring):
        typer.echo(f"wrote {build(settings, out_dir)}")
    typer.echo(f"config_version {config_version_of(settings)} (mode {settings.mode})")


def config_version_of(settings: Settings) -> str:
    """The `config_version` the compiled pipelines show for these settings."""
    from pipelines.profile import config_version, image_settings

    return config_version(image_settings(settings).to_json())


@app.command()
def manifests(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option(help="Where to write the manifests.")] = Path(
        "manifests"
    ),
) -> None:
    """Render the cluster manifests: the Katib Experiment and the InferenceService from the
    config, and the Helm chart with its default values (chart.yaml)."""
    from mlstack.deploy.inference_service import write_inference_service
    from mlstack.tuning.katib import write_manifest

    settings = _settings(ctx)
    path = write_manifest(settings, out_dir / "katib-experiment.yaml")
    typer.echo(f"wrote {path}")
    path = write_inference_service(settings, out_dir / "inference-service.yaml")
    typer.echo(f"wrote {path}")
    from mlstack.deploy.cronjobs import write_cronjobs

    typer.echo(f"wrote {write_cronjobs(settings, out_dir)}")
    from mlstack.deploy.chart import write_rendered

    path = write_rendered(out_dir / "chart.yaml", namespace=settings.deploy.namespace)
    typer.echo(f"wrote {path}")


# -- cluster operations (KFP and the Kubernetes API) ------------------------------------------
def _cluster_op(settings: Settings, operation: Callable[[Any], T]) -> T:
    """Run `operation(api_client)`; API and rule errors become a clear message and exit 1."""
    from mlstack.deploy.kube import KubeError, api_client
    from mlstack.deploy.rollout import RolloutError
    from mlstack.registry.models import RegistryError

    try:
        return operation(api_client(settings))
    except (KubeError, RolloutError, RegistryError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err


@app.command()
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
    from mlstack.deploy import rollout as ops
    from mlstack.registry import tracking

    settings = _settings(ctx)
    client = tracking.configure(settings)
    outcome = _cluster_op(
        settings,
        lambda api: ops.rollout(api, client, settings, version, canary, storage_uri=storage_uri),
    )
    typer.echo(outcome.report())


def _kfp_op(operation: Callable[[Any], T], settings: Settings) -> T:
    from mlstack.deploy.kfp_runs import KfpError, client_from_settings

    try:
        return operation(client_from_settings(settings))
    except (KfpError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err


def _package(ctx: typer.Context, settings: Settings, package: Path | None) -> Path:
    """The compiled pipeline: --package as given, else compiled now as `mlstack compile`
    does (the cluster profile over the config, then --set), next to `kfp.package_path`."""
    if package is not None:
        return package
    from pipelines.profile import CLUSTER_PROFILE, profile_settings
    from pipelines.run import compile_training

    profile = settings.root / CLUSTER_PROFILE
    compiled = profile_settings(ctx.obj["config"], profile, ctx.obj["overrides"])
    return compile_training(compiled, settings.kfp.package_path.parent)


@app.command()
def submit(
    ctx: typer.Context,
    note: Annotated[str, typer.Option("--note", "-n", help="The hypothesis of this run.")] = "",
    run_name: Annotated[
        str | None, typer.Option(help="Run name (a run of this name is not started twice).")
    ] = None,
    package: Annotated[
        Path | None, typer.Option(help="A compiled pipeline; default: compile one now.")
    ] = None,
) -> None:
    """Start a training run on the cluster's Kubeflow Pipelines (kfp.* settings)."""
    from datetime import UTC, datetime

    from mlstack.deploy.kfp_runs import submit_run

    settings = _settings(ctx)
    path = _package(ctx, settings, package)
    name = run_name or f"{settings.pipeline.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    run_id = _kfp_op(
        lambda client: submit_run(
            client,
            path,
            experiment=settings.kfp.experiment,
            run_name=name,
            params={"note": note},
            service_account=settings.kfp.run_service_account,
            namespace=settings.kfp.namespace,
            upload=True,
        ),
        settings,
    )
    typer.echo(
        f"run {name}: {run_id} in experiment {settings.kfp.experiment} at {settings.kfp.host}"
    )


@app.command()
def schedule(
    ctx: typer.Context,
    cron: Annotated[
        str | None, typer.Option(help="6-field cron (seconds first); default: kfp.schedule_cron.")
    ] = None,
    package: Annotated[
        Path | None, typer.Option(help="A compiled pipeline; default: compile one now.")
    ] = None,
) -> None:
    """Create the recurring training run on the cluster's Kubeflow Pipelines."""
    from mlstack.deploy.kfp_runs import create_recurring_run

    settings = _settings(ctx)
    path = _package(ctx, settings, package)
    cron = cron or settings.kfp.schedule_cron
    job_id = _kfp_op(
        lambda client: create_recurring_run(
            client,
            path,
            experiment=settings.kfp.experiment,
            name=settings.kfp.schedule_name,
            cron=cron,
            params={"note": "scheduled retraining"},
            max_concurrency=settings.kfp.max_concurrency,
            service_account=settings.kfp.run_service_account,
            namespace=settings.kfp.namespace,
        ),
        settings,
    )
    typer.echo(f"recurring run {settings.kfp.schedule_name}: {job_id} on {cron!r}")


# -- monitoring -----------------------------------------------------------------------------
@app.command()
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

    from mlstack.monitoring import MonitoringError
    from mlstack.monitoring.check import run_check
    from mlstack.services import ServiceUnavailable, check_services
    from mlstack.storage import StateStoreError

    settings = _settings(ctx)
    try:
        check_services(settings, ("mlflow", "object_store"))
        now = None if at is None else pd.Timestamp(at).to_pydatetime()
        result = run_check(settings, now=now, trigger=not no_trigger)
    except (MonitoringError, ValueError, ServiceUnavailable, StateStoreError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
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

    settings = _settings(ctx)
    target = out_dir if out_dir.is_absolute() else settings.root / out_dir
    try:
        result = run_replay(settings, target, weeks=weeks)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(result.markdown())
    typer.echo(f"\nreplay took {result.seconds:.0f} s; files:")
    for name, path in result.files.items():
        typer.echo(f"  {name}: {path}")


@app.command()
def materialize(
    ctx: typer.Context,
    end: Annotated[
        str | None, typer.Option(help="Materialize up to this time (UTC); default: now.")
    ] = None,
) -> None:
    """Load the newest features into the online store, incrementally (the CronJob's job)."""
    from datetime import UTC, datetime

    import pandas as pd

    from mlstack.features import store
    from mlstack.services import ServiceUnavailable, check_services
    from mlstack.storage import StateStoreError

    settings = _settings(ctx)
    until = datetime.now(UTC) if end is None else pd.Timestamp(end).to_pydatetime()
    try:
        check_services(settings, ("object_store", "redis"))
        store.materialize(store.open_store(settings, offline=True), settings, until)
    except (ServiceUnavailable, StateStoreError, store.FeatureStoreUnavailable) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"materialized up to {until.isoformat()}")


if __name__ == "__main__":
    app()
