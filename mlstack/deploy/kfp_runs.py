"""Cluster-mode pipeline runs through `kfp.Client`: submit, find (for idempotency), schedule.

Three small layers: `client_from_settings` reads the settings once, the functions below take
the client and plain values, and each makes the one call it is named for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import kfp
import yaml
from kfp_server_api.exceptions import ApiException

from mlstack.config.operations import KfpSettings

log = logging.getLogger(__name__)


class KfpError(RuntimeError):
    """A KFP API call failed; the message says which call and why."""


def client_from_settings(cfg: KfpSettings) -> kfp.Client:
    """A `kfp.Client` for `settings.kfp`: host, namespace and the configured auth."""
    token = cfg.bearer_token()
    log.debug("kfp client for %s (namespace %s, auth %s)", cfg.host, cfg.namespace, cfg.auth)
    return kfp.Client(
        host=cfg.host,
        namespace=cfg.namespace,
        existing_token=token,
        ssl_ca_cert=str(cfg.ssl_ca_cert) if cfg.ssl_ca_cert else None,
    )


def _explain(err: ApiException, what: str) -> KfpError:
    """A KfpError naming the call, the HTTP status and the server's message."""
    detail = err.body or err.reason
    with contextlib.suppress(ValueError, AttributeError):
        detail = json.loads(err.body).get("message", detail) if err.body else detail
    return KfpError(f"KFP {what} failed: HTTP {err.status}: {detail}")


def ensure_experiment(client: kfp.Client, name: str, namespace: str | None = None) -> str:
    """The id of experiment `name`, created if it does not exist yet."""
    namespace = namespace or client.get_user_namespace() or None
    try:
        return client.get_experiment(experiment_name=name, namespace=namespace).experiment_id
    except ValueError as err:
        if not str(err).startswith("No experiment is found"):
            raise KfpError(f"KFP experiment lookup of {name!r} failed: {err}") from err
    except ApiException as err:
        raise _explain(err, f"experiment lookup of {name!r}") from err
    try:
        created = client.create_experiment(name=name, namespace=namespace)
    except ApiException as err:
        raise _explain(err, f"creating experiment {name!r}") from err
    log.info("created KFP experiment %s (%s)", name, created.experiment_id)
    return created.experiment_id


def _name_filter(name: str) -> str:
    return json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )


def find_run(
    client: kfp.Client, experiment: str, run_name: str, namespace: str | None = None
) -> str | None:
    """The id of the run called `run_name` in `experiment`, or None if there is none."""
    try:
        exp = client.get_experiment(experiment_name=experiment, namespace=namespace)
    except ValueError:
        return None
    except ApiException as err:
        raise _explain(err, f"experiment lookup of {experiment!r}") from err
    try:
        runs = client.list_runs(experiment_id=exp.experiment_id, filter=_name_filter(run_name))
    except ApiException as err:
        raise _explain(err, f"listing runs named {run_name!r}") from err
    found = runs.runs or []
    return found[0].run_id if found else None


def _pipeline_name(package: str) -> str:
    """The pipeline's name as compiled (`pipelineInfo.name`). A pipeline compiled for a
    cluster has a second document, the Kubernetes platform spec (Secrets as env)."""
    try:
        doc = next(yaml.safe_load_all(Path(package).read_text()))
        return doc["pipelineInfo"]["name"]
    except (yaml.YAMLError, KeyError, TypeError, StopIteration) as err:
        raise KfpError(f"{package} is not a compiled KFP pipeline: {err}") from err


def _check_package(package_path: Path | str) -> str:
    path = Path(package_path)
    if not path.is_file():
        raise KfpError(f"pipeline package {path} not found: run `mlstack compile` first")
    return str(path)


def upload_pipeline(
    client: kfp.Client, package_path: Path | str, pipeline_name: str, namespace: str | None = None
) -> tuple[str, str]:
    """Upload the compiled pipeline so it shows under Pipelines; returns (pipeline, version) ids.

    The version is named after the package's content hash, so the same package is uploaded
    once and a changed one becomes a new version of the same pipeline.
    """
    package = _check_package(package_path)
    version_name = f"{pipeline_name}-{hashlib.sha256(Path(package).read_bytes()).hexdigest()[:12]}"
    try:
        pipeline_id = client.get_pipeline_id(pipeline_name)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(
                package, pipeline_name=pipeline_name, namespace=namespace
            ).pipeline_id
            log.info("uploaded pipeline %s (%s)", pipeline_name, pipeline_id)
        versions = client.list_pipeline_versions(pipeline_id, filter=_name_filter(version_name))
        if versions.pipeline_versions:
            return pipeline_id, versions.pipeline_versions[0].pipeline_version_id
        version = client.upload_pipeline_version(
            package, pipeline_version_name=version_name, pipeline_id=pipeline_id
        )
    except ApiException as err:
        raise _explain(err, f"uploading pipeline {pipeline_name!r}") from err
    log.info("uploaded pipeline version %s (%s)", version_name, version.pipeline_version_id)
    return pipeline_id, version.pipeline_version_id


def submit_run(
    client: kfp.Client,
    package_path: Path | str,
    *,
    experiment: str,
    run_name: str,
    params: dict[str, Any] | None = None,
    service_account: str | None = None,
    namespace: str | None = None,
    upload: bool = False,
) -> str:
    """Start a run of the compiled pipeline in `experiment`; returns the run id.

    With `upload`, the package first becomes a pipeline version listed under Pipelines (see
    `upload_pipeline`) and the run refers to it; without, the spec goes up inline with the run.
    `namespace` is the KFP profile namespace (None: the client's own). A run of the same name in the
    experiment is not started twice: its id is returned instead, so a retried trigger does not
    double the work.
    """
    package = _check_package(package_path)
    pipeline_name = _pipeline_name(package)
    existing = find_run(client, experiment, run_name, namespace)
    if existing is not None:
        log.info(
            "run %s already exists in %s (%s): not submitted again", run_name, experiment, existing
        )
        return existing
    experiment_id = ensure_experiment(client, experiment, namespace)
    source: dict[str, Any] = {"pipeline_package_path": package}
    if upload:
        pipeline_id, version_id = upload_pipeline(client, package, pipeline_name, namespace)
        source = {"pipeline_id": pipeline_id, "version_id": version_id}
    try:
        run = client.run_pipeline(
            experiment_id=experiment_id,
            job_name=run_name,
            params=params or {},
            service_account=service_account,
            **source,
        )
    except ApiException as err:
        raise _explain(err, f"creating run {run_name!r}") from err
    log.info("started KFP run %s (%s) in %s", run_name, run.run_id, experiment)
    return run.run_id


def create_recurring_run(
    client: kfp.Client,
    package_path: Path | str,
    *,
    experiment: str,
    name: str,
    cron: str,
    params: dict[str, Any] | None = None,
    max_concurrency: int = 1,
    service_account: str | None = None,
    namespace: str | None = None,
) -> str:
    """Create (or find) the recurring run `name` on a 6-field cron schedule; returns its id."""
    package = _check_package(package_path)
    pipeline_name = _pipeline_name(package)
    if len(cron.split()) != 6:
        raise KfpError(f"cron {cron!r} must have 6 fields (seconds first), e.g. '0 0 3 * * 1'")
    experiment_id = ensure_experiment(client, experiment, namespace)
    try:
        existing = client.list_recurring_runs(
            experiment_id=experiment_id, filter=_name_filter(name)
        )
    except ApiException as err:
        raise _explain(err, f"listing recurring runs named {name!r}") from err
    if existing.recurring_runs:
        found = existing.recurring_runs[0].recurring_run_id
        log.info("recurring run %s already exists (%s)", name, found)
        return found
    pipeline_id, version_id = upload_pipeline(client, package, pipeline_name, namespace)
    try:
        job = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=name,
            cron_expression=cron,
            pipeline_id=pipeline_id,
            version_id=version_id,
            params=params or {},
            max_concurrency=max_concurrency,
            no_catchup=True,
            service_account=service_account,
        )
    except ApiException as err:
        raise _explain(err, f"creating recurring run {name!r}") from err
    log.info("created recurring run %s (%s) on %r", name, job.recurring_run_id, cron)
    return job.recurring_run_id
