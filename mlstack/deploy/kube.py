"""The InferenceService through the Kubernetes API: a client from the settings, get and patch.

Patches are JSON merge patches that carry the `resourceVersion` they were computed from, so a
change made by someone else in between is a 409 Conflict instead of a silent overwrite; the
caller re-reads and recomputes (see `update`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from mlstack.config.operations import DeploySettings

log = logging.getLogger(__name__)

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
MAX_CONFLICT_RETRIES = 3


class KubeError(RuntimeError):
    """A Kubernetes API call failed; the message names the object, the status and why."""


def api_client(deploy: DeploySettings) -> k8s.ApiClient:
    """An API client: `deploy.kube_host` with the token file, else in-cluster, else kube config."""
    if deploy.kube_host:
        conf = k8s.Configuration(host=deploy.kube_host)
        if deploy.kube_token_path.is_file():
            conf.api_key = {"authorization": deploy.kube_token_path.read_text().strip()}
            conf.api_key_prefix = {"authorization": "Bearer"}
        if deploy.kube_ca_cert:
            conf.ssl_ca_cert = str(deploy.kube_ca_cert)
        return k8s.ApiClient(conf)
    try:
        k8s_config.load_incluster_config()
    except ConfigException:
        try:
            k8s_config.load_kube_config()
        except (ConfigException, OSError) as err:
            raise KubeError(
                "no Kubernetes API: set deploy.kube_host, run in a pod, or provide a kube config"
            ) from err
    return k8s.ApiClient()


def _explain(err: ApiException, what: str) -> KubeError:
    message = err.reason
    if err.body:
        try:
            message = json.loads(err.body).get("message", message)
        except (ValueError, AttributeError):
            message = str(err.body)[:200]
    return KubeError(f"{what}: HTTP {err.status}: {message}")


def get_isvc(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The InferenceService `namespace/name` as a dict; a clear error if it is missing."""
    try:
        return k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as err:
        if err.status == 404:
            raise KubeError(
                f"InferenceService {namespace}/{name} not found: install the chart "
                "(helm install) or apply manifests/inference-service.yaml first"
            ) from err
        raise _explain(err, f"reading InferenceService {namespace}/{name}") from err


def patch_isvc(
    api: k8s.ApiClient, namespace: str, name: str, patch: dict[str, Any]
) -> dict[str, Any]:
    """Apply a JSON merge patch; returns the object the API server stored."""
    try:
        return k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, patch
        )
    except ApiException as err:
        raise _explain(err, f"patching InferenceService {namespace}/{name}") from err


def update(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Read, compute a merge patch with `change(current)`, patch guarded by resourceVersion.

    On a 409 Conflict the object is read again and the patch recomputed, up to
    `MAX_CONFLICT_RETRIES` times; then the conflict is reported.
    """
    for attempt in range(1, MAX_CONFLICT_RETRIES + 1):
        current = get_isvc(api, namespace, name)
        patch = change(current)
        patch.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            return k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch
            )
        except ApiException as err:
            if err.status != 409:
                raise _explain(err, f"patching InferenceService {namespace}/{name}") from err
            log.warning(
                "InferenceService %s/%s changed while patching (attempt %d of %d): retrying",
                namespace,
                name,
                attempt,
                MAX_CONFLICT_RETRIES,
            )
    raise KubeError(
        f"patching InferenceService {namespace}/{name}: HTTP 409: it kept changing while we "
        f"patched ({MAX_CONFLICT_RETRIES} attempts); nothing was changed, try again"
    )
