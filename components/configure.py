"""Configure: the compiled profile plus this run's typed parameters -> the run's settings."""

from kfp import dsl

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def configure(
    profile: str,
    config_version: str,
    data_uri: str,
    max_trials: int,
    horizon_days: int,
    model_alias: str,
    window_days: int,
    snapshot_date: str,
) -> str:
    """In: `profile`, the settings the pipeline was compiled with (a constant of the compiled
    pipeline, not a parameter), `config_version` (its hash; another value is an error), and
    the run's parameters (a pipeline passes the profile's own value for one it does not
    offer). Returns the resolved settings as JSON, the `settings_json` of every later step.
    A bad value fails the run here with an error that names the parameter; so does an
    unreachable service (object store, MLflow server, Redis), named with its endpoint."""
    from mlstack.failures import recorded
    from mlstack.services import check_services
    from pipelines.profile import resolve

    # not an `mlstack.steps` step, so it leaves its failure record itself
    with recorded("configure"):
        settings = resolve(
            profile,
            config_version,
            data_uri=data_uri,
            max_trials=max_trials,
            horizon_days=horizon_days,
            model_alias=model_alias,
            window_days=window_days,
            snapshot_date=snapshot_date,
        )
        # Every service the run writes to answers before any step starts: an unreachable one
        # stops the run here, named with its endpoint, with nothing registered.
        check_services(settings)
    return settings.to_json()
