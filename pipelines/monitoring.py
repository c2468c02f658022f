"""The monitoring pipeline: a drift check, then a retrain when the policy says so.

drift check -> [action == "retrain"] retrain
"""

from kfp import dsl

from components.drift_check import drift_check
from components.retrain import retrain

PIPELINE_NAME = "mlstack-monitoring"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Drift of features and predictions against the champion's training "
    "reference, realised performance, the policy's decision, and a retrain when it says so.",
)
def monitoring_pipeline(settings_json: str) -> None:
    """`settings_json` is the full resolved settings (`Settings.to_json()`)."""
    checked = drift_check(settings_json=settings_json).set_display_name("drift check")
    with dsl.If(checked.outputs["action"] == "retrain", name="policy-says-retrain"):
        retrain(
            settings_json=settings_json,
            window_id=checked.outputs["window_id"],
            reasons=checked.outputs["reasons"],
        ).set_display_name("retrain")


def compile_monitoring(settings, out_dir):  # (Settings, Path) -> Path
    """Write the monitoring pipeline as KFP IR YAML (`dist/monitoring.yaml`)."""
    from pathlib import Path

    from pipelines.run import compile_pipeline

    return compile_pipeline(
        monitoring_pipeline, PIPELINE_NAME, settings, Path(out_dir) / "monitoring.yaml"
    )
