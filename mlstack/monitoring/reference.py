"""The training reference a drift check compares with: the current champion's.

The reference (a sample of the rows the model was fit on, with its scores, and its test
metrics) is built and logged at registration (`mlstack.registry.reference`); a check loads
the current champion's here, so a new champion brings its own reference.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from mlstack.config.modelling import MlflowSettings
from mlstack.monitoring import MonitoringError
from mlstack.registry import models, tracking
from mlstack.registry.reference import ARTIFACT_DIR, FRAME_FILE, META_FILE, Reference


def load_reference(mlflow_settings: MlflowSettings) -> tuple[Reference, dict[str, Any]]:
    """The current champion's reference and the champion's facts (version, run id,
    registered at); a `MonitoringError` naming the problem when there is none."""

    client = tracking.configure(mlflow_settings)
    name = mlflow_settings.registered_model
    try:
        champion = models.champion(client, name)
    except MlflowException as err:
        raise MonitoringError(f"missing reference: cannot read model {name!r}: {err}") from err
    if champion is None:
        raise MonitoringError(
            f"missing reference: {name!r} has no champion yet; train one first (`make run`)"
        )
    facts = {
        "model_version": str(champion.version),
        "run_id": champion.run_id,
        "registered_at": pd.Timestamp(champion.creation_timestamp, unit="ms", tz="UTC"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = mlflow.artifacts.download_artifacts(
                run_id=champion.run_id, artifact_path=ARTIFACT_DIR, dst_path=tmp
            )
            frame = pd.read_parquet(Path(folder) / FRAME_FILE)
            meta = json.loads((Path(folder) / META_FILE).read_text())
        except (MlflowException, OSError) as err:
            raise MonitoringError(
                f"missing reference: champion version {champion.version} (run "
                f"{champion.run_id}) has no {ARTIFACT_DIR}/{FRAME_FILE}; it was registered "
                "before drift references were kept: retrain to make one"
            ) from err
    return Reference(frame, meta), facts
