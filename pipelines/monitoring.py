"""The monitoring pipeline: a drift check, then a retrain when the policy says so.

configure -> drift check -> [action == "retrain"] retrain
"""

from pathlib import Path

from kfp import dsl

from components.drift_check import drift_check
from components.retrain import retrain
from mlstack.config import Settings
from pipelines.profile import config_version as version_of
from pipelines.run import compile_pipeline
from pipelines.tasks import configure_step, place

PIPELINE_NAME = "mlstack-monitoring"


def build_monitoring_pipeline(settings: Settings):  # -> kfp GraphComponent
    """The monitoring pipeline carrying `settings` as its profile."""

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Drift of features and predictions against the champion's training "
        "reference, realised performance, the policy's decision, and a retrain when it says so.",
    )
    def monitoring_pipeline(
        window_days: int = settings.monitoring.window_days,
        config_version: str = version_of(settings.to_json()),
    ) -> None:
        """Check drift in the current window; retrain when the policy says so.

        Args:
            window_days: The current window: the last N days.
            config_version: The hash of the settings this pipeline was compiled with.
        """
        configured = configure_step(settings, config_version, window_days=window_days)
        cfg = configured.output
        checked = place(
            drift_check(settings_json=cfg),
            settings,
            display_name="drift check",
            cache=False,  # reads the payload log and the registry, records its decision
        )
        with dsl.If(checked.outputs["action"] == "retrain", name="policy-says-retrain"):
            place(
                retrain(
                    settings_json=cfg,
                    window_id=checked.outputs["window_id"],
                    reasons=checked.outputs["reasons"],
                ),
                settings,
                display_name="retrain",
                cache=False,  # starts a training run
            )

    return monitoring_pipeline


def compile_monitoring(settings: Settings, out_dir: Path) -> Path:
    """Write the monitoring pipeline as KFP IR YAML (`monitoring.yaml`)."""
    return compile_pipeline(
        build_monitoring_pipeline, PIPELINE_NAME, settings, Path(out_dir) / "monitoring.yaml"
    )
