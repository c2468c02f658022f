"""The Helm chart rendered by the real Helm library: value sets, lint, schemas, security."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from mlstack.deploy.chart import CHART_DIR, objects, render
from tests.support.sdk_models import check

pytestmark = pytest.mark.unit

KUBE_VERSIONS = ("1.29", "1.30", "1.31")
CUSTOM = {
    "InferenceService": "V1beta1InferenceService",
    "Experiment": "V1beta1Experiment",
}
NOT_CORE = {"InferenceService", "Experiment", "ServiceMonitor", "AuthorizationPolicy"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-databases": {
        "mlflow": {
            "replicas": 2,
            "backendStore": {"external": True, "existingSecret": "mlflow-postgres"},
            "artifactStore": {"destination": "s3://models/mlflow"},
        },
        "objectStore": {"endpointUrl": "", "existingSecret": "aws-creds", "port": 443},
    },
    "canary": {"inferenceService": {"canaryTrafficPercent": 10}},
    "external-redis": {
        "redis": {
            "enabled": False,
            "existingSecret": "redis-auth",
            "external": {"host": "redis.cache.svc", "port": 6380},
        }
    },
    "autoscaling-off": {"inferenceService": {"autoscaling": {"enabled": False}, "replicas": 2}},
    "everything-on": {
        "serviceMonitor": {"enabled": True},
        "authorizationPolicy": {"enabled": True, "namespaces": ["shop"]},
        "inferenceService": {
            "batcher": {"enabled": True},
            "logger": {"enabled": True, "url": "http://broker.kubeflow/"},
            "storageUri": "s3://models/propensity/7",
            "autoscaling": {"metric": "cpu", "target": 70},
        },
        "imagePullSecrets": ["regcred"],
        "canaryGuard": {"enabled": True, "prometheusUrl": "http://prometheus.monitoring:9090"},
    },
}


@cache
def _render(name: str) -> dict[str, str]:
    return render(VALUE_SETS[name])


def _docs(name: str) -> list[dict[str, Any]]:
    return objects(_render(name))


def _kinds(name: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in _docs(name):
        out.setdefault(doc["kind"], []).append(doc)
    return out


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "Job"):
        return [spec["template"]["spec"]]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if kind == "InferenceService":
        return [spec["predictor"]]
    return []


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_core_objects_valid_for_supported_kubernetes(name: str) -> None:
    docs = [d for d in _docs(name) if d["kind"] not in NOT_CORE]
    assert len(docs) >= 10
    for version in KUBE_VERSIONS:
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} on {version}: {err}")


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_custom_resources_match_their_sdk_models(name: str) -> None:
    kinds = _kinds(name)
    (isvc,) = kinds["InferenceService"]
    assert check(isvc, CUSTOM["InferenceService"]) == []
    for kind in ("ServiceMonitor", "AuthorizationPolicy"):
        for doc in kinds.get(kind, []):
            assert doc["apiVersion"] in ("monitoring.coreos.com/v1", "security.istio.io/v1")


def test_the_sdk_model_check_catches_mistakes() -> None:
    (isvc,) = _kinds("defaults")["InferenceService"]
    bad = json.loads(json.dumps(isvc))
    bad["spec"]["predictor"]["minReplica"] = 1
    bad["spec"]["predictor"]["maxReplicas"] = "three"
    problems = check(bad, "V1beta1InferenceService")
    assert any("minReplica: unknown field" in p for p in problems)
    assert any("maxReplicas: expected int" in p for p in problems)


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_lint_is_clean(name: str) -> None:
    for kube in KUBE_VERSIONS:
        report = helm.lint(
            str(CHART_DIR),
            VALUE_SETS[name],
            strict=True,
            namespace="kubeflow",
            kube_version=f"v{kube}.0",
        )
        assert report["errors"] == [], kube
        assert [m for m in report["messages"] if m["severity"] >= 1] == [], kube


def test_release_name_and_namespace_come_from_helm() -> None:
    docs = objects(render(release="prod", namespace="ml-prod"))
    names = {d["metadata"]["name"] for d in docs if d["kind"] != "InferenceService"}
    assert all(n.startswith("prod-mlstack") or n == "mlstack-tuning" for n in names), names
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert {s["namespace"] for b in bindings for s in b["subjects"]} == {"ml-prod"}
    (isvc,) = [d for d in docs if d["kind"] == "InferenceService"]
    env = {e["name"]: e.get("value") for e in isvc["spec"]["predictor"]["containers"][0]["env"]}
    assert env["MLSTACK_MLFLOW__TRACKING_URI"] == (
        "http://prod-mlstack-mlflow.ml-prod.svc.cluster.local:5000"
    )


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_secure_by_default(name: str) -> None:
    containers = 0
    for doc in _docs(name):
        assert "namespace" not in doc["metadata"], f"{doc['kind']} hard-codes a namespace"
        assert doc["kind"] != "Secret", "the chart must not carry secret values"
        for pod in _pod_specs(doc):
            ctx = pod["securityContext"]
            assert ctx["runAsNonRoot"] is True
            assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
            for container in pod["containers"]:
                containers += 1
                where = f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}"
                sc = container["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                res = container["resources"]
                assert {"cpu", "memory"} <= set(res["requests"]) & set(res["limits"]), where
                for env in container.get("env") or []:
                    secret_like = re.search(
                        r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY(_ID)?)$", env["name"]
                    )
                    assert not (secret_like and "value" in env), f"{where}: {env['name']} literal"
                    assert not re.search(r"password=(?!\$\()", env.get("value", "")), where
    assert containers >= 4


def test_image_tag_defaults_to_app_version() -> None:
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    images = {
        c["image"]
        for d in _docs("defaults")
        for pod in _pod_specs(d)
        for c in pod["containers"]
        if "redis" not in c["image"]
    }
    assert images == {f"ghcr.io/mlstack/mlstack:{app_version}"}
    tagged = objects(render({"image": {"tag": "2.0.0"}}))
    assert any(
        c["image"].endswith(":2.0.0")
        for d in tagged
        for p in _pod_specs(d)
        for c in p["containers"]
    )


def test_value_sets_change_what_they_should() -> None:
    isvc = {n: _kinds(n)["InferenceService"][0]["spec"]["predictor"] for n in VALUE_SETS}
    assert "canaryTrafficPercent" not in isvc["defaults"]
    assert isvc["canary"]["canaryTrafficPercent"] == 10
    assert (isvc["autoscaling-off"]["minReplicas"], isvc["autoscaling-off"]["maxReplicas"]) == (
        2,
        2,
    )
    assert "scaleMetric" not in isvc["autoscaling-off"]
    assert isvc["defaults"]["scaleMetric"] == "concurrency"
    assert isvc["everything-on"]["batcher"] == {"maxBatchSize": 32, "maxLatency": 5}
    assert isvc["everything-on"]["logger"]["url"] == "http://broker.kubeflow/"

    ext = _kinds("external-databases")
    assert "PersistentVolumeClaim" not in ext
    (mlflow,) = [d for d in ext["Deployment"] if d["metadata"]["name"].endswith("-mlflow")]
    env = {e["name"]: e for e in mlflow["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-postgres"
    assert any(p["metadata"]["name"].endswith("-mlflow") for p in ext["PodDisruptionBudget"])
    assert "PersistentVolumeClaim" in _kinds("defaults")

    redis = _kinds("external-redis")
    assert not any(d["metadata"]["name"].endswith("-redis") for d in redis["Deployment"])
    (isvc,) = redis["InferenceService"]
    env = {e["name"]: e for e in isvc["spec"]["predictor"]["containers"][0]["env"]}
    assert env["MLSTACK_FEAST_REDIS_CONNECTION"]["value"] == (
        "redis.cache.svc:6380,password=$(REDIS_PASSWORD)"
    )
    names = list(env)  # Kubernetes expands $(VAR) only from variables declared earlier
    assert names.index("REDIS_PASSWORD") < names.index("MLSTACK_FEAST_REDIS_CONNECTION")
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-auth",
        "key": "redis-password",
    }
    on = _kinds("everything-on")
    assert on["ServiceMonitor"][0]["spec"]["endpoints"][0]["path"] == "/metrics"
    rules = on["AuthorizationPolicy"][0]["spec"]["rules"]
    assert rules[0]["from"][0]["source"]["namespaces"] == ["shop"]


def test_rbac_is_least_privilege() -> None:
    roles = {r["metadata"]["name"]: r["rules"] for r in _kinds("defaults")["Role"]}
    assert set(roles) == {"mlstack-pipeline", "mlstack-drift-check"}
    pipeline = {(r["apiGroups"][0], r["resources"][0]): r for r in roles["mlstack-pipeline"]}
    assert set(pipeline) == {
        ("kubeflow.org", "experiments"),
        ("serving.kserve.io", "inferenceservices"),
    }
    isvc_rule = pipeline[("serving.kserve.io", "inferenceservices")]
    assert isvc_rule["verbs"] == ["get", "patch"]
    assert isvc_rule["resourceNames"] == ["mlstack-propensity"]
    assert "delete" not in pipeline[("kubeflow.org", "experiments")]["verbs"]
    assert roles["mlstack-drift-check"] == [
        {
            "apiGroups": ["pipelines.kubeflow.org"],
            "resources": ["runs", "experiments"],
            "verbs": ["create", "get", "list"],
        }
    ]
    for rules in roles.values():
        for rule in rules:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
    assert "ClusterRole" not in _kinds("defaults")


def test_network_policies_deny_by_default_then_allow() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in _kinds("defaults")["NetworkPolicy"]}
    deny = policies["mlstack-default-deny"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny and "egress" not in deny
    redis_from = policies["mlstack-redis"]["ingress"][0]
    assert redis_from["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert (
        redis_from["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"]
        == "mlstack"
    )
    drift_ports = {p["port"] for p in policies["mlstack-drift-check"]["egress"][0]["ports"]}
    assert 8888 in drift_ports


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"inferenceService": {"canaryTrafficPercent": 150}},
            "at '/inferenceService/canaryTrafficPercent': maximum: got 150, want 100",
        ),
        (
            {"inferenceService": {"autoscaling": {"metric": "gpu"}}},
            "/inferenceService/autoscaling/metric",
        ),
        ({"redis": {"enabled": False}}, "at '/redis/external/host': minLength: got 0, want 1"),
        (
            {"mlflow": {"backendStore": {"external": True}}},
            "at '/mlflow/backendStore/existingSecret': minLength",
        ),
        (
            {"containerSecurityContext": {"readOnlyRootFilesystem": False}},
            "at '/containerSecurityContext/readOnlyRootFilesystem': value must be true",
        ),
        (
            {"mlflow": {"resources": {"requests": {"cpu": "lots", "memory": "1Gi"}}}},
            "'lots' does not match pattern",
        ),
        (
            {"feast": {"featureServer": {"resources": {"limits": None}}}},
            "at '/feast/featureServer/resources': missing property 'limits'",
        ),
        ({"driftCheck": {"schedule": "every day"}}, "/driftCheck/schedule"),
        ({"redis": {"password": "hunter2"}}, "additional properties 'password' not allowed"),
        (
            {"canaryGuard": {"enabled": True}},
            "at '/canaryGuard/prometheusUrl': minLength: got 0, want 1",
        ),
    ],
)
def test_schema_rejects_bad_values_with_a_clear_message(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmValuesError) as err:
        render(values)
    assert message in str(err.value)


def test_template_guards_fail_with_a_clear_message() -> None:
    with pytest.raises(helm.HelmError, match="needs an external backend store"):
        render({"mlflow": {"replicas": 2}})
    with pytest.raises(helm.HelmError, match=r"inferenceService\.logger\.url is required"):
        render({"inferenceService": {"logger": {"enabled": True}}})


def test_notes_tell_the_user_what_to_do_next() -> None:
    notes = _render("defaults")["mlstack/templates/NOTES.txt"]
    for step in (
        "port-forward svc/mlstack-mlflow",
        "mlstack rollout",
        "v1/models/propensity:predict",
    ):
        assert step in notes


def test_every_value_is_documented() -> None:
    """Each leaf value has a `# --` comment above it or above an enclosing key."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented = []
    stack: list[tuple[int, bool]] = []  # (indent, documented) of enclosing keys
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        above = i - 1
        while above > 0 and lines[above].strip().startswith("#") and "# --" not in lines[above]:
            above -= 1
        documented = lines[above].strip().startswith("# --") or any(d for _, d in stack)
        key, _, rest = stripped.partition(":")
        if rest.strip():
            if not documented:
                undocumented.append(key)
        else:
            stack.append((indent, documented))
    assert undocumented == []


def test_canary_guard_runs_the_rule_with_only_get_and_patch() -> None:
    on = _kinds("everything-on")
    (guard,) = [c for c in on["CronJob"] if c["metadata"]["name"].endswith("canary-guard")]
    pod = guard["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] + container["args"] == ["mlstack", "rollback", "--auto"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLSTACK_DEPLOY__PROMETHEUS_URL"] == "http://prometheus.monitoring:9090"
    assert pod["automountServiceAccountToken"] is False
    (projected,) = [v for v in pod["volumes"] if v["name"] == "kube-api"]
    assert [next(iter(src)) for src in projected["projected"]["sources"]] == [
        "serviceAccountToken",
        "configMap",
        "downwardAPI",
    ]
    (role,) = [r for r in on["Role"] if r["metadata"]["name"].endswith("canary-guard")]
    assert role["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "resourceNames": ["mlstack-propensity"],
            "verbs": ["get", "patch"],
        }
    ]
    assert not any(
        c["metadata"]["name"].endswith("canary-guard") for c in _kinds("defaults")["CronJob"]
    )
