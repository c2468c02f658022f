"""The InferenceService the chart renders from the settings: KServe SDK round trip, every
setting in its place, the container valid as a Kubernetes container."""

from __future__ import annotations

import json
import re

import kubernetes.client
import kubernetes_validate
import pytest
import yaml

from mlstack.config import Settings, load_settings
from mlstack.deploy.manifests import chart_objects
from mlstack.serving import kserve_argv_guard
from tests.support.paths import PROJECT

pytestmark = pytest.mark.unit

with kserve_argv_guard():
    from kserve import models as kserve_models

K8S_VERSION = "1.30.0"


PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": float}


def schema_problems(value: object, type_name: str, path: str = "") -> list[str]:
    """Where `value` strays from the KServe SDK's model `type_name` (nested Kubernetes types
    included): unknown fields, wrong primitive types."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        inner = type_name[5:-1]
        return [
            p for i, item in enumerate(value) for p in schema_problems(item, inner, f"{path}[{i}]")
        ]
    if type_name.startswith("dict("):
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        return [p for k, item in value.items() for p in schema_problems(item, inner, f"{path}.{k}")]
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (
            type_name == "int" and isinstance(value, bool)
        )
        return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__}"]
    cls = getattr(kserve_models, type_name, None) or getattr(kubernetes.client, type_name, None)
    if cls is None:
        return []  # `object` and the like: free-form
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name})"]
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in by_json:
            problems.append(f"{path}.{key}: not a field of {type_name}")
        else:
            problems += schema_problems(item, cls.openapi_types[by_json[key]], f"{path}.{key}")
    return problems


def build_inference_service(settings: Settings) -> dict:
    """The InferenceService of the chart rendered with these settings' values."""
    (isvc,) = [d for d in chart_objects(settings) if d["kind"] == "InferenceService"]
    return isvc


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.chdir(PROJECT)
    return load_settings(
        overrides=[
            "serving.inference_service.min_replicas=2",
            "serving.inference_service.max_replicas=7",
            "serving.inference_service.scale_metric=rps",
            "serving.inference_service.scale_target=50",
            "serving.inference_service.container_concurrency=16",
            "serving.inference_service.canary_traffic_percent=10",
            "serving.inference_service.batcher.enabled=true",
            "serving.inference_service.batcher.max_batch_size=64",
            "serving.inference_service.logger_url=http://payload-logger.kubeflow",
            "serving.inference_service.storage_uri=s3://mlflow/1/models/m-1/artifacts",
            "serving.inference_service.resources.cpu_limit=2",
        ]
    )


def test_the_manifest_follows_the_kserve_sdk_models(settings):
    manifest = build_inference_service(settings)
    assert schema_problems(manifest, "V1beta1InferenceService") == []


def test_the_schema_check_finds_strays(settings):
    manifest = build_inference_service(settings)
    manifest["spec"]["predictor"]["minReplica"] = 1
    manifest["spec"]["predictor"]["maxReplicas"] = "3"
    manifest["spec"]["predictor"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert sorted(schema_problems(manifest, "V1beta1InferenceService")) == [
        ".spec.predictor.containers[0].imagePullPolicyy: not a field of V1Container",
        ".spec.predictor.maxReplicas: expected int, got str",
        ".spec.predictor.minReplica: not a field of V1beta1PredictorSpec",
    ]


def test_the_settings_land_where_kserve_reads_them(settings):
    manifest = build_inference_service(settings)
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["name"] == settings.deploy.inference_service
    annotations = manifest["metadata"]["annotations"]
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    predictor = manifest["spec"]["predictor"]
    assert predictor["minReplicas"] == 2 and predictor["maxReplicas"] == 7
    assert predictor["scaleMetric"] == "rps" and predictor["scaleTarget"] == 50
    assert predictor["containerConcurrency"] == 16
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["batcher"] == {"maxBatchSize": 64, "maxLatency": 5}
    assert predictor["logger"] == {"mode": "all", "url": "http://payload-logger.kubeflow"}
    (container,) = predictor["containers"]
    assert container["image"] == settings.pipeline.base_image
    assert container["command"] == ["mlstack"] and container["args"] == ["serve"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["STORAGE_URI"] == "s3://mlflow/1/models/m-1/artifacts"
    assert env["MLSTACK_SERVING__STORAGE_URI"] == "/mnt/models"
    assert env["MLSTACK_SERVING__HOST"] == "0.0.0.0"
    assert container["resources"]["limits"]["cpu"] == "2"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/models/propensity/ready"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/models/propensity/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] == 300
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert predictor["terminationGracePeriodSeconds"] == 30


def test_the_env_is_read_back_by_the_settings(settings, monkeypatch):
    """What the manifest sets, the server in the pod reads: no name is misspelt."""
    env = build_inference_service(settings)["spec"]["predictor"]["containers"][0]["env"]
    for item in env:
        if item["name"].startswith("MLSTACK_"):
            monkeypatch.setenv(item["name"], item["value"])
    pod = load_settings()
    assert pod.serving.host == "0.0.0.0"
    assert pod.serving.storage_uri == "/mnt/models"
    assert pod.mlflow.tracking_uri == settings.serving.inference_service.tracking_uri
    assert pod.feast.config_file == "feature_store.cluster.yaml"


def test_the_predictor_can_open_the_feature_store(settings):
    """Every variable the cluster's Feast config expands is set, with the object store's
    endpoint and credentials (from a Secret, by name) for an s3:// registry."""
    (container,) = build_inference_service(settings)["spec"]["predictor"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    config_file = env["MLSTACK_FEAST__CONFIG_FILE"]["value"]
    feast_config = yaml.safe_load((PROJECT / "feature_repo" / config_file).read_text())
    expanded = set(re.findall(r"\$\{(\w+)\}", json.dumps(feast_config)))  # not the comments
    assert {"MLSTACK_FEAST_REGISTRY", "MLSTACK_FEAST_REDIS_CONNECTION"} <= expanded
    assert expanded <= set(env)
    assert env["MLSTACK_FEAST_REGISTRY"]["value"].startswith("s3://")
    # the payload log and Feast's offline data live in the state store (the object store);
    # the predictor keeps nothing a drift check needs on its own disk
    assert env["MLSTACK_STATE_URI"]["value"].startswith("s3://")
    assert env["MLSTACK_OBJECT_STORE__ENDPOINT_URL"]["value"] == env["AWS_ENDPOINT_URL"]["value"]
    assert "MLSTACK_SERVING__PAYLOAD_DIR" not in env
    assert env["AWS_ENDPOINT_URL"]["value"] == env["MLFLOW_S3_ENDPOINT_URL"]["value"]
    for name, key in (("AWS_ACCESS_KEY_ID", "accesskey"), ("AWS_SECRET_ACCESS_KEY", "secretkey")):
        assert "value" not in env[name], "credentials come from the Secret, never as values"
        assert env[name]["valueFrom"]["secretKeyRef"] == {
            "name": "mlpipeline-minio-artifact",
            "key": key,
        }


def test_overrides_in_settings_replace_the_chart_defaults(monkeypatch):
    monkeypatch.chdir(PROJECT)
    s = load_settings(
        overrides={
            "serving": {
                "inference_service": {
                    "env": {
                        "MLSTACK_FEAST_REDIS_CONNECTION": "redis.infra:6380,password=x",
                        "AWS_ACCESS_KEY_ID": "from-a-workload-identity",
                    }
                }
            }
        }
    )
    (container,) = build_inference_service(s)["spec"]["predictor"]["containers"]
    names = [item["name"] for item in container["env"]]
    assert len(names) == len(set(names)), "an override replaces, it does not add a second entry"
    env = {item["name"]: item for item in container["env"]}
    assert env["MLSTACK_FEAST_REDIS_CONNECTION"]["value"] == "redis.infra:6380,password=x"
    assert env["AWS_ACCESS_KEY_ID"] == {
        "name": "AWS_ACCESS_KEY_ID",
        "value": "from-a-workload-identity",
    }
    assert "valueFrom" in env["AWS_SECRET_ACCESS_KEY"]


def test_without_optional_parts_there_is_no_batcher_logger_canary_or_storage(monkeypatch):
    monkeypatch.chdir(PROJECT)
    predictor = build_inference_service(load_settings())["spec"]["predictor"]
    assert not {"batcher", "logger", "canaryTrafficPercent"} & set(predictor)
    env = {item["name"] for item in predictor["containers"][0]["env"]}
    assert "STORAGE_URI" not in env


def test_the_container_is_a_valid_kubernetes_container(settings):
    container = build_inference_service(settings)["spec"]["predictor"]["containers"][0]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "predictor"},
        "spec": {"containers": [container]},
    }
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
