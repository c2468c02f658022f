"""manifests/ is the chart rendered with the config's values (the one definition of each
object), a setting reaches every object that carries it, and the chart and the Python that
acts on the live objects use the same names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeflow.katib import models as katib_models

from mlstack.config import Settings, load_settings
from mlstack.deploy import names
from mlstack.deploy.chart import objects, render
from mlstack.deploy.manifests import chart_objects, write_manifests
from mlstack.deploy.values import chart_values, image_values
from mlstack.registry.models import CHAMPION
from mlstack.serving import metrics
from tests.support.paths import CONFIG, PROJECT
from tests.support.sdk_models import check

pytestmark = pytest.mark.unit

MANIFESTS = PROJECT / "manifests"


def _settings(overrides: dict[str, Any] | None = None) -> Settings:
    return load_settings(CONFIG, {"root": str(PROJECT), **(overrides or {})})


@pytest.fixture(scope="module")
def settings() -> Settings:
    return _settings()


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def _predictor(isvc: dict[str, Any]) -> dict[str, Any]:
    (container,) = isvc["spec"]["predictor"]["containers"]
    return container


def _env_names(container: dict[str, Any]) -> list[str]:
    return [e["name"] for e in container.get("env", [])]


def test_manifests_are_in_sync_with_chart_and_config(settings: Settings, tmp_path: Path) -> None:
    fresh = write_manifests(settings, tmp_path)
    assert [p.name for p in fresh] == [
        "katib-experiment.yaml",
        "inference-service.yaml",
        "cronjobs.yaml",
        "chart.yaml",
    ]
    stale = [
        p.name
        for p in fresh
        if not (MANIFESTS / p.name).is_file() or (MANIFESTS / p.name).read_text() != p.read_text()
    ]
    assert stale == [], (
        f"manifests/ drifted from the chart or config: run `make manifests` ({stale})"
    )
    assert sorted(p.name for p in MANIFESTS.glob("*.yaml")) == sorted(p.name for p in fresh)


def test_the_split_files_are_the_charts_objects() -> None:
    """inference-service.yaml and cronjobs.yaml hold exactly the chart's objects of their kind."""
    chart = [d for d in yaml.safe_load_all((MANIFESTS / "chart.yaml").read_text()) if d]
    isvc = [d for d in yaml.safe_load_all((MANIFESTS / "inference-service.yaml").read_text()) if d]
    jobs = [d for d in yaml.safe_load_all((MANIFESTS / "cronjobs.yaml").read_text()) if d]
    assert isvc == [d for d in chart if d["kind"] == "InferenceService"]
    assert jobs == [d for d in chart if d["kind"] == "CronJob"]
    assert {j["metadata"]["name"] for j in jobs} == {"mlstack-drift-check", "mlstack-materialize"}


def test_katib_experiment_matches_the_sdk_model() -> None:
    """The installed Katib SDK's models hold every field but, before SDK 0.18,
    `feasibleSpace.distribution` (checked against Katib's own API in tests/models)."""
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
    (isvc,) = yaml.safe_load_all((MANIFESTS / "inference-service.yaml").read_text())
    assert check(isvc, "V1beta1InferenceService") == []


# -- one setting, every object that carries it -----------------------------------------------
def _carriers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The objects a setting may reach, by a short name: the InferenceService and the two
    monitoring CronJobs' pods (the container, the pod and the CronJob spec)."""
    isvc = _one(docs, "InferenceService")
    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CronJob"}
    found = {"isvc": {"spec": isvc["spec"]["predictor"], "container": _predictor(isvc)}}
    for name in ("mlstack-drift-check", "mlstack-materialize"):
        pod = jobs[name]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        found[name] = {"spec": jobs[name]["spec"], "pod": pod, "container": container}
    return found


def test_a_setting_reaches_every_rendered_object(tmp_path: Path) -> None:
    changed = _settings(
        {
            "pipeline": {"base_image": "registry.example/ml/mlstack:9.9"},
            "features": {"shards": 4},
            "serving": {
                "inference_service": {
                    "port": 9090,
                    "min_replicas": 2,
                    "feast_config_file": "feature_store.other.yaml",
                }
            },
            "monitoring": {
                "drift_cronjob": {"schedule": "15 5 * * *", "backoff_limit": 4},
                "materialize_cronjob": {"schedule": "45 1 * * *", "starting_deadline_seconds": 90},
                "service_account": "drift-sa",
            },
        }
    )
    written = {p.name: p for p in write_manifests(changed, tmp_path)}
    split = [
        d
        for name in ("inference-service.yaml", "cronjobs.yaml")
        for d in yaml.safe_load_all(written[name].read_text())
        if d
    ]
    whole = [d for d in yaml.safe_load_all(written["chart.yaml"].read_text()) if d]
    for docs in (split, whole):
        found = _carriers(docs)
        for carrier in found.values():
            assert carrier["container"]["image"] == "registry.example/ml/mlstack:9.9"
        isvc = found["isvc"]
        assert isvc["spec"]["minReplicas"] == 2
        assert isvc["container"]["ports"][0]["containerPort"] == 9090
        env = {e["name"]: e.get("value") for e in isvc["container"]["env"]}
        assert env["MLSTACK_SERVING__PORT"] == "9090"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert isvc["container"][probe]["httpGet"]["port"] == 9090
        drift, materialize = found["mlstack-drift-check"], found["mlstack-materialize"]
        assert drift["spec"]["schedule"] == "15 5 * * *"
        assert drift["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 4
        assert materialize["spec"]["schedule"] == "45 1 * * *"
        assert materialize["spec"]["startingDeadlineSeconds"] == 90
        assert drift["pod"]["serviceAccountName"] == "drift-sa"
        assert materialize["pod"]["serviceAccountName"] == "drift-sa"
        for feast_client in (isvc, materialize):
            env = {e["name"]: e.get("value") for e in feast_client["container"]["env"]}
            assert env["MLSTACK_FEAST__CONFIG_FILE"] == "feature_store.other.yaml"
        # the pods that read the offline source read it partitioned as training wrote it
        for reader in (isvc, materialize, drift):
            env = {e["name"]: e.get("value") for e in reader["container"]["env"]}
            assert env["MLSTACK_FEATURES__SHARDS"] == "4"
    annotations = _one(whole, "InferenceService")["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9090"
    # the shared ServiceAccount exists and holds the drift check's Role
    accounts = {d["metadata"]["name"] for d in whole if d["kind"] == "ServiceAccount"}
    assert "drift-sa" in accounts
    assert not {"mlstack-drift-check", "mlstack-materialize"} & accounts
    (binding,) = [
        d
        for d in whole
        if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "mlstack-drift-check"
    ]
    assert binding["subjects"][0]["name"] == "drift-sa"


def test_the_monitoring_namespace_is_the_cronjobs_release_namespace(tmp_path: Path) -> None:
    changed = _settings({"monitoring": {"namespace": "ops"}})
    written = {p.name: p for p in write_manifests(changed, tmp_path)}
    assert "namespace ops" in written["cronjobs.yaml"].read_text().splitlines()[1]
    assert "namespace kubeflow" in written["inference-service.yaml"].read_text().splitlines()[1]


@pytest.mark.parametrize(
    ("image", "values"),
    [
        ("ghcr.io/mlstack/mlstack:0.1.0", ("ghcr.io/mlstack/mlstack", "0.1.0", "")),
        ("localhost:5000/mlstack:dev", ("localhost:5000/mlstack", "dev", "")),
        ("localhost:5000/mlstack", ("localhost:5000/mlstack", "latest", "")),
        ("ghcr.io/m/m@sha256:" + "a" * 64, ("ghcr.io/m/m", "", "sha256:" + "a" * 64)),
    ],
)
def test_the_image_round_trips_through_the_chart(image: str, values: tuple[str, ...]) -> None:
    assert tuple(image_values(image).values()) == values
    settings = _settings({"pipeline": {"base_image": image}})
    isvc = _one(chart_objects(settings), "InferenceService")
    untagged = values[1] == "latest" and not image.endswith(":latest")
    assert _predictor(isvc)["image"] == image + (":latest" if untagged else "")


# -- the drift bug: every variable the chart's predictor gets is in the manifest ---------------
def test_every_env_var_of_the_charts_predictor_is_in_the_manifest(settings: Settings) -> None:
    """The chart's own predictor (default values, nothing from the config) and the written
    inference-service.yaml set the same variables: the Feast registry, Redis, the object store."""
    chart_default = set(_env_names(_predictor(_one(objects(render()), "InferenceService"))))
    (written,) = yaml.safe_load_all((MANIFESTS / "inference-service.yaml").read_text())
    names_written = _env_names(_predictor(written))
    assert len(names_written) == len(set(names_written)), "an env var is set twice"
    assert sorted(chart_default - set(names_written)) == []
    assert sorted(set(names_written) - chart_default) == []
    assert {
        "MLSTACK_FEAST_REGISTRY",
        "MLSTACK_FEAST__DATA_DIR",
        "MLSTACK_FEAST_REDIS_CONNECTION",
        "MLSTACK_STATE_URI",
        "MLSTACK_OBJECT_STORE__ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    } <= chart_default


def test_the_config_defaults_are_the_chart_defaults(settings: Settings) -> None:
    """The values the bundled config gives the predictor and the CronJobs are the chart's own
    defaults, but for the monitoring ServiceAccount the config names."""
    rendered = chart_objects(settings)
    default = objects(render())
    assert _one(rendered, "InferenceService") == _one(default, "InferenceService")

    def jobs(docs: list[dict[str, Any]]) -> dict[str, Any]:
        found = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CronJob"}
        for job in found.values():
            job["spec"]["jobTemplate"]["spec"]["template"]["spec"].pop("serviceAccountName")
        return found

    assert jobs(rendered) == jobs(default)


# -- names shared by the chart and the Python that acts on the live objects -------------------
def test_the_chart_uses_the_names_rollout_reads() -> None:
    values = {"inferenceService": {"storageUri": "s3://mlpipeline/models/7"}}
    isvc = _one(objects(render(values)), "InferenceService")
    container = _predictor(isvc)
    assert container["name"] == names.PREDICTOR_CONTAINER
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[names.KSERVE_STORAGE_ENV] == "s3://mlpipeline/models/7"
    assert env[names.STORAGE_ENV] == names.MODEL_MOUNT
    assert isvc["metadata"]["annotations"]["prometheus.io/path"] == names.METRICS_PATH


def test_the_served_alias_and_metrics_are_the_libraries() -> None:
    """The chart serves the registry's champion alias by default, as the config does, and the
    server exports the metric families the canary's health is judged by."""
    isvc = _one(objects(render()), "InferenceService")
    env = {e["name"]: e.get("value") for e in _predictor(isvc)["env"]}
    assert env["MLSTACK_SERVING__MODEL_ALIAS"] == CHAMPION
    assert load_settings().serving.model_alias == CHAMPION
    assert [f.name for f in metrics.REQUESTS.collect()] == [names.REQUESTS_METRIC]
    assert [f.name for f in metrics.LATENCY.collect()] == [names.LATENCY_METRIC]


# -- the translation itself --------------------------------------------------------------------
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
                "service_account": "predictor-s3",
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


@pytest.mark.parametrize("variant", list(SETTINGS_VARIANTS))
def test_every_variant_renders_a_valid_inference_service(variant: str) -> None:
    settings = _settings(SETTINGS_VARIANTS[variant])
    isvc = _one(chart_objects(settings), "InferenceService")
    assert check(isvc, "V1beta1InferenceService") == []
    predictor = isvc["spec"]["predictor"]
    cfg = settings.serving.inference_service
    assert predictor["minReplicas"] == cfg.min_replicas
    assert predictor["maxReplicas"] == cfg.max_replicas
    assert predictor["scaleMetric"] == cfg.scale_metric
    assert predictor["scaleTarget"] == cfg.scale_target
    assert predictor.get("canaryTrafficPercent") == cfg.canary_traffic_percent
    assert predictor["terminationGracePeriodSeconds"] == cfg.termination_grace_seconds
    assert predictor["serviceAccountName"] == (cfg.service_account or "mlstack-predictor")
    env = {e["name"]: e for e in _predictor(isvc)["env"]}
    if cfg.auth_secret:
        assert env["MLSTACK_SERVING__AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": cfg.auth_secret,
            "key": cfg.auth_secret_key,
        }
    else:
        assert "MLSTACK_SERVING__AUTH_TOKEN" not in env
    startup = _predictor(isvc)["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == cfg.startup_seconds


def test_values_pass_the_charts_schema_and_name_only_chart_keys(settings: Settings) -> None:
    """Every key the translation sets is one the chart declares (a typo would be ignored by
    the templates, so the schema forbids unknown keys: rendering proves them known)."""
    values = chart_values(settings)
    values["inferenceService"]["modelAlais"] = "champion"
    with pytest.raises(Exception, match="modelAlais"):
        render(values)
