"""Retrain: start the training pipeline for a drifted window (idempotent per window)."""

from kfp import dsl

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def retrain(settings_json: str, window_id: str, reasons: str) -> str:
    """In: the settings, the window id and the policy's reasons (JSON list). Out: what was
    started (JSON): a KFP run of the training pipeline on a cluster, a local run here; a
    run for the same window is not started twice."""
    import json

    from mlstack.config import Settings
    from mlstack.monitoring.trigger import trigger_retrain
    from mlstack.steps import configure_logging
    from pipelines.run import run_training_locally  # local mode: the run happens here

    configure_logging()
    settings = Settings.from_json(settings_json)
    started = trigger_retrain(settings, window_id, json.loads(reasons), run_training_locally)
    return json.dumps(started, default=str)
