"""manifests/ is what `mlstack manifests` renders now, and the chart agrees with the config's
InferenceService builder and Katib Experiment (one source of truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeflow.katib import models as katib_models

from mlstack.config import Settings, load_settings
from mlstack.deploy.chart import objects, render, write_rendered
from mlstack.deploy.cronjobs import drift_check_cronjob, materialize_cronjob, write_cronjobs
from mlstack.deploy.inference_service import build_inference_service, write_inference_service
from mlstack.tuning.katib import write_manifest
from tests.chart.sdk_models import check

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CONFIG = ROOT / "configs" / "cdnow.yaml"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(CONFIG, {"root": str(ROOT)})


def test_manifests_are_in_sync_with_chart_and_config(settings: Settings, tmp_path: Path) -> None:
    fresh = {
        "chart.yaml": write_rendered(tmp_path / "chart.yaml", namespace=settings.deploy.namespace),
        "katib-experiment.yaml": write_manifest(settings, tmp_path / "katib-experiment.yaml"),
        "inference-service.yaml": write_inference_service(
            settings, tmp_path / "inference-service.yaml"
        ),
        "cronjobs.yaml": write_cronjobs(settings, tmp_path),
    }
    stale = [
        name
        for name, path in fresh.items()
        if not (MANIFESTS / name).is_file() or (MANIFESTS / name).read_text() != path.read_text()
    ]
    assert stale == [], (
        f"manifests/ drifted from the chart or config: run `make manifests` ({stale})"
    )
    assert sorted(p.name for p in MANIFESTS.glob("*.yaml")) == sorted(fresh)


def test_katib_experiment_matches_the_sdk_model() -> None:
    """The installed Katib SDK's models hold every field but, before SDK 0.18,
    `feasibleSpace.distribution` (checked against Katib's own API in tests/cluster)."""
    experiment = yaml.safe_load((MANIFESTS / "katib-experiment.yaml").read_text())
    newer = [
        f".spec.parameters[{i}].feasibleSpace.distribution: unknown field of V1beta1FeasibleSpace"
        for i, p in enumerate(experiment["spec"]["parameters"])
        if "distribution" in p["feasibleSpace"]
    ]
    assert newer, "the numeric parameters carry their distribution"
    if "distribution" in katib_models.V1beta1FeasibleSpace.attribute_map:
        newer = []
    assert check(experiment, "V1beta1Experiment") == newer
    broken = {**experiment, "spec": {**experiment["spec"], "maxTrialCounts": 3}}
    assert check(broken, "V1beta1Experiment") == [
        ".spec.maxTrialCounts: unknown field of V1beta1ExperimentSpec",
        *newer,
    ]


def test_inference_service_manifest_matches_the_sdk_model() -> None:
    isvc = yaml.safe_load((MANIFESTS / "inference-service.yaml").read_text())
    assert check(isvc, "V1beta1InferenceService") == []


def chart_values(settings: Settings) -> dict[str, Any]:
    """Chart values that express the same InferenceService as the settings."""
    isvc = settings.serving.inference_service
    res = isvc.resources
    values: dict[str, Any] = {
        "name": settings.deploy.inference_service,
        "modelName": settings.serving.model_name,
        "modelAlias": settings.serving.model_alias,
        "registeredModel": settings.mlflow.registered_model,
        "featureService": settings.feast.feature_service,
        "storageUri": isvc.storage_uri or "",
        "port": isvc.port,
        "autoscaling": {
            "minReplicas": isvc.min_replicas,
            "maxReplicas": isvc.max_replicas,
            "metric": isvc.scale_metric,
            "target": isvc.scale_target,
        },
        "containerConcurrency": isvc.container_concurrency,
        "canaryTrafficPercent": isvc.canary_traffic_percent,
        "batcher": {
            "enabled": isvc.batcher.enabled,
            "maxBatchSize": isvc.batcher.max_batch_size,
            "maxLatency": isvc.batcher.max_latency_ms,
        },
        "logger": {
            "enabled": bool(isvc.logger_url),
            "url": isvc.logger_url or "",
            "mode": isvc.logger_mode,
        },
        "resources": {
            "requests": {"cpu": res.cpu_request, "memory": res.memory_request},
            "limits": {"cpu": res.cpu_limit, "memory": res.memory_limit},
        },
        "auth": {"secretName": isvc.auth_secret or "", "secretKey": isvc.auth_secret_key},
        "startupSeconds": isvc.startup_seconds,
        "terminationGracePeriodSeconds": isvc.termination_grace_seconds,
    }
    return {"inferenceService": values}


def _essentials(isvc: dict[str, Any]) -> dict[str, Any]:
    """The fields of an InferenceService that decide what is served and how it scales."""
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    keep = (
        "MLSTACK_SERVING__MODEL_NAME",
        "MLSTACK_SERVING__MODEL_ALIAS",
        "MLSTACK_MLFLOW__REGISTERED_MODEL",
        "MLSTACK_FEAST__FEATURE_SERVICE",
        "MLSTACK_FEAST__CONFIG_FILE",
        "MLSTACK_SERVING__STORAGE_URI",
        "STORAGE_URI",
        "MLSTACK_SERVING__PORT",
        "MLSTACK_SERVING__HOST",
        "MLSTACK_MLFLOW__TRACKING_URI",
    )
    return {
        "name": isvc["metadata"]["name"],
        "scraping": {
            k: v
            for k, v in isvc["metadata"].get("annotations", {}).items()
            if k.startswith("prometheus.io/") or k.endswith("prometheus-scraping")
        },
        "predictor": {
            k: predictor.get(k)
            for k in (
                "minReplicas",
                "maxReplicas",
                "scaleMetric",
                "scaleTarget",
                "containerConcurrency",
                "canaryTrafficPercent",
                "batcher",
                "logger",
            )
        },
        "command": (container.get("command"), container.get("args")),
        "port": container["ports"][0]["containerPort"],
        "resources": container["resources"],
        "probes": {
            kind: container.get(f"{kind}Probe") for kind in ("startup", "readiness", "liveness")
        },
        "grace": predictor.get("terminationGracePeriodSeconds"),
        "secret_env": sorted(
            (
                e["name"],
                e["valueFrom"]["secretKeyRef"]["name"],
                e["valueFrom"]["secretKeyRef"]["key"],
            )
            for e in container.get("env", [])
            if "valueFrom" in e
        ),
        "env": {k: env.get(k) for k in keep},
        "env_names": sorted(env),
        "security": (predictor.get("securityContext"), container.get("securityContext")),
        "scratch": (predictor.get("volumes"), container.get("volumeMounts")),
    }


SETTINGS_VARIANTS = {
    "defaults": {},
    "canary-batcher-logger": {
        "serving": {
            "inference_service": {
                "canary_traffic_percent": 20,
                "batcher": {"enabled": True, "max_batch_size": 64, "max_latency_ms": 20},
                "logger_url": "http://broker-ingress.knative-eventing/kubeflow/default",
                "logger_mode": "request",
            }
        }
    },
    "auth-and-slow-start": {
        "serving": {
            "inference_service": {
                "auth_secret": "predictor-token",
                "auth_secret_key": "bearer",
                "startup_seconds": 600,
                "termination_grace_seconds": 45,
            }
        }
    },
    "storage-and-scaling": {
        "serving": {
            "inference_service": {
                "storage_uri": "s3://mlpipeline/mlstack/models/7",
                "min_replicas": 0,
                "max_replicas": 8,
                "scale_metric": "rps",
                "scale_target": 50,
            }
        }
    },
}


def _env_difference(chart_isvc: dict[str, Any], built: dict[str, Any]) -> dict[str, list[str]]:
    """The env var names one predictor container sets and the other does not."""

    def names(isvc: dict[str, Any]) -> set[str]:
        (container,) = isvc["spec"]["predictor"]["containers"]
        listed = [e["name"] for e in container.get("env", [])]
        assert len(listed) == len(set(listed)), f"an env var is set twice: {listed}"
        return set(listed)

    chart, builder = names(chart_isvc), names(built)
    return {"chart only": sorted(chart - builder), "builder only": sorted(builder - chart)}


@pytest.mark.parametrize("variant", list(SETTINGS_VARIANTS))
def test_builder_sets_every_env_var_the_chart_sets(variant: str) -> None:
    """The whole env, not a list of the names that matter: a variable the chart's predictor
    gets (the Feast registry, Redis, the object store) is one the builder's must get."""
    settings = load_settings(CONFIG, {"root": str(ROOT), **SETTINGS_VARIANTS[variant]})
    (chart_isvc,) = [
        d for d in objects(render(chart_values(settings))) if d["kind"] == "InferenceService"
    ]
    assert _env_difference(chart_isvc, build_inference_service(settings)) == {
        "chart only": [],
        "builder only": [],
    }


def test_default_env_is_the_charts_default_env(settings: Settings) -> None:
    """With default values the two envs are the same list: names, values, Secret references."""
    (default_isvc,) = [d for d in objects(render()) if d["kind"] == "InferenceService"]
    (chart,) = default_isvc["spec"]["predictor"]["containers"]
    (built,) = build_inference_service(settings)["spec"]["predictor"]["containers"]
    assert built["env"] == chart["env"]
    names = {e["name"] for e in built["env"]}
    assert {
        "MLSTACK_FEAST_REGISTRY",
        "MLSTACK_FEAST__DATA_DIR",
        "MLSTACK_STATE_URI",
        "MLSTACK_OBJECT_STORE__ENDPOINT_URL",
        "MLSTACK_FEAST_REDIS_CONNECTION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    } <= names


def test_an_env_var_only_the_chart_sets_is_caught(settings: Settings) -> None:
    (default_isvc,) = [d for d in objects(render()) if d["kind"] == "InferenceService"]
    built = build_inference_service(settings)
    (container,) = built["spec"]["predictor"]["containers"]
    container["env"] = [e for e in container["env"] if e["name"] != "MLSTACK_FEAST_REGISTRY"]
    container["env"].append({"name": "EXTRA", "value": "1"})
    assert _env_difference(default_isvc, built) == {
        "chart only": ["MLSTACK_FEAST_REGISTRY"],
        "builder only": ["EXTRA"],
    }


@pytest.mark.parametrize("variant", list(SETTINGS_VARIANTS))
def test_chart_and_builder_agree(variant: str) -> None:
    settings = load_settings(CONFIG, {"root": str(ROOT), **SETTINGS_VARIANTS[variant]})
    (chart_isvc,) = [
        d for d in objects(render(chart_values(settings))) if d["kind"] == "InferenceService"
    ]
    assert _essentials(chart_isvc) == _essentials(build_inference_service(settings))


def test_chart_defaults_are_the_config_defaults(settings: Settings) -> None:
    """The chart rendered with no values serves what the bundled config describes."""
    (default_isvc,) = [d for d in objects(render()) if d["kind"] == "InferenceService"]
    assert _essentials(default_isvc) == _essentials(build_inference_service(settings))


def _cron_essentials(cronjob: dict[str, Any]) -> dict[str, Any]:
    """What a CronJob runs, when, and with which limits and credentials."""
    spec = cronjob["spec"]
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    env = {
        e["name"]: e.get("value")
        for e in container.get("env", [])
        if e["name"].startswith(("MLSTACK_MODE", "MLSTACK_KFP__"))
    }
    tokens = [
        source["serviceAccountToken"]
        for volume in pod.get("volumes", [])
        for source in volume.get("projected", {}).get("sources", [])
    ]
    return {
        "schedule": spec["schedule"],
        "policy": (
            spec["concurrencyPolicy"],
            spec["startingDeadlineSeconds"],
            spec["successfulJobsHistoryLimit"],
            spec["failedJobsHistoryLimit"],
        ),
        "job": (
            job["backoffLimit"],
            job["activeDeadlineSeconds"],
            pod["restartPolicy"],
            pod["automountServiceAccountToken"],
        ),
        "command": (container["command"], container["args"]),
        "resources": container["resources"],
        "env": env,
        "tokens": tokens,
    }


def test_chart_cronjobs_agree_with_the_monitoring_builders(settings: Settings) -> None:
    chart = {d["metadata"]["name"]: d for d in objects(render()) if d["kind"] == "CronJob"}
    assert _cron_essentials(chart["mlstack-drift-check"]) == _cron_essentials(
        drift_check_cronjob(settings)
    )
    assert _cron_essentials(chart["mlstack-materialize"]) == _cron_essentials(
        materialize_cronjob(settings)
    )
