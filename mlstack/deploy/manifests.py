"""`manifests/`: the chart rendered with the settings' values, and the Katib Experiment.

The chart (helm/mlstack) is the one definition of each Kubernetes object; these files are
its render for the settings (`mlstack.deploy.values`), split so that the InferenceService
and the CronJobs can be applied on their own. Rendering needs the dev extra's Helm binding.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mlstack.config import Settings
from mlstack.deploy.chart import RELEASE, objects, render, to_yaml
from mlstack.deploy.values import chart_values
from mlstack.tuning.katib import write_manifest

log = logging.getLogger(__name__)

HEADER = (
    "# {what} rendered from helm/mlstack with the config's values (release {release},\n"
    "# namespace {namespace}) by `mlstack manifests` (make manifests).\n"
    "# Do not edit: change the chart or the config and re-render.\n"
)


def _write(path: Path, what: str, docs: list[dict[str, Any]], namespace: str) -> Path:
    header = HEADER.format(what=what, release=RELEASE, namespace=namespace)
    path.write_text(header + to_yaml(docs))
    log.info("wrote %d objects to %s", len(docs), path)
    return path


def _of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def chart_objects(settings: Settings, namespace: str | None = None) -> list[dict[str, Any]]:
    """The chart's objects rendered with the settings' values (release namespace: `namespace`,
    default `deploy.namespace`)."""
    values = chart_values(settings)
    return objects(render(values, namespace=namespace or settings.deploy.namespace))


def write_manifests(settings: Settings, out_dir: Path) -> list[Path]:
    """Write katib-experiment.yaml, inference-service.yaml, cronjobs.yaml and chart.yaml (the
    whole chart) to `out_dir`; the paths written, in that order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    serving_ns, monitoring_ns = settings.deploy.namespace, settings.monitoring.namespace
    chart = chart_objects(settings, serving_ns)
    # the CronJobs run where the monitoring settings say, which may be another namespace
    jobs = chart if monitoring_ns == serving_ns else chart_objects(settings, monitoring_ns)
    return [
        write_manifest(settings, out_dir / "katib-experiment.yaml"),
        _write(
            out_dir / "inference-service.yaml",
            "The InferenceService",
            _of_kind(chart, "InferenceService"),
            serving_ns,
        ),
        _write(out_dir / "cronjobs.yaml", "The CronJobs", _of_kind(jobs, "CronJob"), monitoring_ns),
        _write(out_dir / "chart.yaml", "The whole chart", chart, serving_ns),
    ]
