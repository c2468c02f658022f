"""The retraining trigger, in three layers: what the settings say (`TriggerTarget`), the
request for one window (`retrain_request`, pure), and the one side effect (`submit`).

Local mode runs the training pipeline here, with the runner the caller passes
(`LocalTraining`: the pipelines sit above this layer); cluster mode creates a KFP run of the
compiled training pipeline through `kfp.Client` (`mlstack.deploy.kfp_runs`). Both are
idempotent per window: the run is named after the window, and a run of that name is not
started twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from urllib3.exceptions import HTTPError as Urllib3Error

from mlstack.config import Settings
from mlstack.config.operations import KfpSettings
from mlstack.deploy import kfp_runs
from mlstack.monitoring import MonitoringError

log = logging.getLogger(__name__)

RUN_PREFIX = "mlstack-retrain"

LocalTraining = Callable[[Settings, str], Any]
"""Runs the training pipeline in this process with a note and returns its summary (something
with `to_json()`): `pipelines.run.run_training_locally`, passed in by the CLI or the
retrain component."""


@dataclass(frozen=True)
class TriggerTarget:
    """Where a retrain goes, read from the settings once."""

    mode: Literal["local", "cluster"]
    host: str
    experiment: str
    package_path: Path
    service_account: str | None
    marker_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> TriggerTarget:
        return cls(
            mode=settings.mode,
            host=settings.kfp.host,
            experiment=settings.kfp.experiment,
            package_path=settings.kfp.package_path,
            service_account=settings.kfp.run_service_account,
            marker_dir=settings.artifacts_dir / "monitoring" / "retrains",
        )


@dataclass(frozen=True)
class RetrainRequest:
    """One retraining run: its idempotent name and the pipeline parameters."""

    run_name: str
    params: dict[str, Any]


def retrain_request(window_id: str, reasons: list[str]) -> RetrainRequest:
    """The run for the window `window_id`; the note (the run's hypothesis) carries the
    policy's reasons."""
    if not window_id:
        raise ValueError("a retrain needs the window id it is for")
    note = "retrain requested by the drift check: " + "; ".join(reasons)
    return RetrainRequest(run_name=f"{RUN_PREFIX}-{window_id}", params={"note": note[:1000]})


def submit(
    target: TriggerTarget,
    request: RetrainRequest,
    settings: Settings,
    local_training: LocalTraining | None = None,
) -> dict[str, Any]:
    """Start the run unless one of the same name exists; returns what was done. Local mode
    needs `local_training`."""
    if target.mode == "cluster":
        return _submit_kfp(target, request, settings.kfp)
    marker = target.marker_dir / f"{request.run_name}.json"
    if marker.exists():
        found = json.loads(marker.read_text())
        log.info("retrain %s already ran locally: not started again", request.run_name)
        return {**found, "started": False}
    if local_training is None:
        raise MonitoringError("a local retrain needs the local pipeline runner; no run was started")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"run_name": request.run_name, "state": "running"}))
    summary = local_training(settings, request.params["note"])
    done = {"run_name": request.run_name, "state": "done", "summary": summary.to_json()}
    marker.write_text(json.dumps(done))
    return {**done, "started": True}


def _submit_kfp(target: TriggerTarget, request: RetrainRequest, cfg: KfpSettings) -> dict[str, Any]:
    if not target.package_path.is_file():
        raise MonitoringError(
            f"no compiled training pipeline at {target.package_path}: run `mlstack compile`"
        )
    try:
        client = kfp_runs.client_from_settings(cfg)
        existing = kfp_runs.find_run(client, target.experiment, request.run_name)
        if existing is not None:
            log.info("KFP run %s exists (%s): not started again", request.run_name, existing)
            return {"run_name": request.run_name, "run_id": existing, "started": False}
        run_id = kfp_runs.submit_run(
            client,
            target.package_path,
            experiment=target.experiment,
            run_name=request.run_name,
            params=request.params,
            service_account=target.service_account,
        )
    except (Urllib3Error, OSError) as err:
        raise MonitoringError(
            f"KFP at {target.host} is unreachable ({type(err).__name__}); no run was started"
        ) from err
    except kfp_runs.KfpError as err:
        raise MonitoringError(f"{err}; no run was started") from err
    return {"run_name": request.run_name, "run_id": run_id, "started": True}


def trigger_retrain(
    settings: Settings,
    window_id: str,
    reasons: list[str],
    local_training: LocalTraining | None = None,
) -> dict[str, Any]:
    """Retrain for this window: the three layers put together (local mode needs
    `local_training`)."""
    target = TriggerTarget.from_settings(settings)
    result = submit(target, retrain_request(window_id, reasons), settings, local_training)
    log.info("retrain for window %s: %s", window_id, result)
    return result
