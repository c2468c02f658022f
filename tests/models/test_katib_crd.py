"""The Katib Experiment against Katib's own API, vendored from Katib v0.19.0 (schemas/).

Katib's Experiment CRD (``manifests/v1beta1/components/crd/experiment.yaml``) has an
``openAPIV3Schema`` that is not structural below the root: ``type: object`` with
``x-kubernetes-preserve-unknown-fields: true``, so the API server accepts any field and Katib's
Go decoding then drops the ones its types lack (a misspelt ``distribution`` would be sampled
uniformly without a word). The manifest is validated against that CRD schema, and then, field by
field, against Katib's generated OpenAPI of its v1beta1 types (``pkg/apis/v1beta1/swagger.json``)
made strict (no field the types lack) with the ``Distribution`` and ``ParameterType`` enums read
from its Go API types (``pkg/apis/controller/experiments/v1beta1/experiment_types.go``), the
values Katib's admission webhook accepts.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes.client import Configuration

from mlstack.config import Settings, load_settings
from mlstack.tuning.katib import TRIAL_ENTRYPOINT, experiment_manifest
from mlstack.tuning.katib_controller import trial_container, trial_run_spec
from mlstack.tuning.katib_runs import katib_client, run_katib
from mlstack.tuning.space import log_scale_names
from tests.support.katib_api import OPTIMAL, KatibApi
from tests.support.paths import CONFIG, PROJECT

SCHEMAS = Path(__file__).resolve().parent / "schemas"
CRD = SCHEMAS / "katib-experiment-crd.yaml"
SWAGGER = SCHEMAS / "katib-v1beta1-swagger.yaml"
GO_TYPES = SCHEMAS / "katib-experiment-types.go"
MANIFEST = PROJECT / "manifests" / "katib-experiment.yaml"
K8S_VERSION = "1.30.0"
KATIB_RELEASE = "v0.19.0"


# -- Katib's schemas -----------------------------------------------------------------------
@cache
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD.read_text())


def crd_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the CRD's v1beta1 version (the served and stored one)."""
    (version,) = [v for v in crd()["spec"]["versions"] if v["name"] == "v1beta1"]
    return version["schema"]["openAPIV3Schema"]


def go_enum(type_name: str) -> list[str]:
    """The string constants of a Go type in Katib's experiment types: `X Type = "value"`."""
    pattern = re.compile(rf"^\s*\w+\s+{type_name}\s*=\s*\"([^\"]*)\"", re.MULTILINE)
    return pattern.findall(GO_TYPES.read_text())


@cache
def api_schema() -> dict[str, Any]:
    """Katib's v1beta1 Experiment type as a strict JSON schema."""
    definitions = copy.deepcopy(yaml.safe_load(SWAGGER.read_text())["definitions"])
    for definition in definitions.values():
        if "properties" in definition and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
    # Kubernetes types the swagger refers to without defining them
    definitions["v1.ObjectMeta"] = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "generateName": {"type": "string"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    for free in ("v1.unstructured.Unstructured", "v1.ListMeta", "v1.Container", "v1.HTTPGetAction"):
        definitions[free] = {"type": "object"}
    definitions["v1.Time"] = {"type": "string"}
    feasible = definitions["v1beta1.FeasibleSpace"]["properties"]
    feasible["distribution"]["enum"] = go_enum("Distribution")
    parameter = definitions["v1beta1.ParameterSpec"]["properties"]
    parameter["parameterType"]["enum"] = go_enum("ParameterType")
    return {"$ref": "#/definitions/v1beta1.Experiment", "definitions": definitions}


def problems(experiment: dict[str, Any]) -> list[str]:
    """Where `experiment` breaks the CRD's schema or Katib's API types (empty: it conforms)."""
    found = []
    for name, schema in (("CRD", crd_schema()), ("API", api_schema())):
        validator = jsonschema.Draft4Validator(schema)
        for error in sorted(validator.iter_errors(experiment), key=lambda e: list(e.path)):
            path = ".".join(str(p) for p in error.absolute_path)
            found.append(f"{name}: {path}: {error.message}")
    return found


def distributions(experiment: dict[str, Any]) -> dict[str, str | None]:
    return {
        p["name"]: p["feasibleSpace"].get("distribution") for p in experiment["spec"]["parameters"]
    }


def assert_log_uniform_on_log_scale(experiment: dict[str, Any], settings: Settings) -> None:
    """`logUniform` on exactly the log-scale parameters, `uniform` on the other numeric ones."""
    log_scale = set(log_scale_names(settings.tuning.space))
    numeric = {p.name for p in settings.tuning.space if p.type != "categorical"}
    assert log_scale, "the configured space has log-scale parameters"
    found = distributions(experiment)
    assert {n for n, d in found.items() if d == "logUniform"} == log_scale
    assert {n for n, d in found.items() if d == "uniform"} == numeric - log_scale
    assert {n for n, d in found.items() if d is None} == set(found) - numeric


# -- the vendored sources ------------------------------------------------------------------
@pytest.mark.unit
def test_the_vendored_files_are_katibs_and_name_their_source() -> None:
    for path in (CRD, SWAGGER, GO_TYPES):
        header = path.read_text().splitlines()[0]
        assert "github.com/kubeflow/katib" in header and KATIB_RELEASE in header, path
    assert crd()["metadata"]["name"] == "experiments.kubeflow.org"
    assert crd()["spec"]["names"]["kind"] == "Experiment"
    (version,) = [v for v in crd()["spec"]["versions"] if v["name"] == "v1beta1"]
    assert version["served"] and version["storage"]
    # what makes the API-type check necessary: the CRD checks no field
    assert crd_schema() == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}, (
        "Katib's CRD schema is structural now: the CRD check alone may suffice"
    )
    assert go_enum("Distribution") == ["uniform", "logUniform", "normal", "logNormal", "unknown"]
    assert go_enum("ParameterType") == ["unknown", "double", "int", "discrete", "categorical"]


# -- the manifest --------------------------------------------------------------------------
@pytest.mark.unit
def test_committed_manifest_conforms_to_katibs_crd_and_api() -> None:
    experiment = yaml.safe_load(MANIFEST.read_text())
    assert problems(experiment) == []
    assert_log_uniform_on_log_scale(experiment, load_settings(CONFIG))


@pytest.mark.unit
def test_the_api_check_catches_what_the_crd_lets_through() -> None:
    experiment = yaml.safe_load(MANIFEST.read_text())

    def broken(change: Any) -> list[str]:
        copied = copy.deepcopy(experiment)
        change(copied["spec"])
        assert jsonschema.Draft4Validator(crd_schema()).is_valid(copied), "the CRD accepts it"
        return problems(copied)

    def misspelt(spec: dict[str, Any]) -> None:
        space = spec["parameters"][0]["feasibleSpace"]
        space["distrbution"] = space.pop("distribution")

    assert broken(misspelt) == [
        "API: spec.parameters.0.feasibleSpace: Additional properties are not allowed "
        "('distrbution' was unexpected)"
    ]
    (unknown,) = broken(lambda s: s["parameters"][0]["feasibleSpace"].update(distribution="log"))
    assert unknown.startswith("API: spec.parameters.0.feasibleSpace.distribution: 'log' is not")
    (kind,) = broken(lambda s: s["parameters"][1].update(parameterType="float"))
    assert "spec.parameters.1.parameterType: 'float' is not one of" in kind
    (count,) = broken(lambda s: s.update(maxTrialCount="12"))
    assert count == "API: spec.maxTrialCount: '12' is not of type 'integer'"


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["tuning.algorithm=random", "tuning.early_stopping=none"],
        [
            "tuning.space=[{name: rate, type: float, low: 0.001, high: 0.1, log: true},"
            "{name: depth, type: int, low: 2, high: 8, step: 2},"
            "{name: leaves, type: int, low: 4, high: 256, log: true},"
            "{name: loss, type: categorical, choices: [log_loss, 2]}]"
        ],
    ],
    ids=["config", "random-no-early-stopping", "mixed-space"],
)
@pytest.mark.unit
def test_experiments_of_other_settings_conform(overrides: list[str]) -> None:
    settings = load_settings(CONFIG, overrides)
    experiment = experiment_manifest(settings)
    assert problems(experiment) == []
    assert_log_uniform_on_log_scale(experiment, settings)


@pytest.mark.unit
def test_a_grid_experiment_conforms_with_discrete_lists() -> None:
    experiment = experiment_manifest(load_settings(CONFIG, ["tuning.algorithm=grid"]))
    assert problems(experiment) == []
    assert set(distributions(experiment).values()) == {None}, "grid points are lists"


# -- the object the tune step creates in cluster mode ----------------------------------------
@pytest.mark.integration
def test_the_experiment_the_tune_step_creates_conforms(katib_api: KatibApi) -> None:
    """As `tune_step` in cluster mode: run_katib with the trial reading the step's dataset,
    against the Kubernetes API double; the body the API server receives is checked."""
    settings = load_settings(CONFIG, ["katib.poll_seconds=0", "katib.timeout_seconds=30"])
    dataset_uri = "s3://mlpipeline/v2/artifacts/training/run-7/training_set/dataset"
    best = run_katib(
        settings,
        katib_client(Configuration(host=katib_api.url)),
        training_command=[*TRIAL_ENTRYPOINT, "--dataset", dataset_uri],
    )
    assert set(best) == set(OPTIMAL)
    (posted,) = katib_api.created
    posted = {k: v for k, v in posted.items() if k != "status"}
    assert problems(posted) == []
    assert_log_uniform_on_log_scale(posted, settings)

    # its trial, substituted as Katib does, is a valid batch/v1 Job running `mlstack tune-trial`
    job = trial_run_spec(posted, OPTIMAL, trial_name="mlstack-tuning-7xk2p")
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    container = trial_container(posted, OPTIMAL)
    assert container["command"][:4] == [*TRIAL_ENTRYPOINT, "--dataset", dataset_uri]
    assert container["command"][4:] == [
        f"--{name.replace('_', '-')}={value}" for name, value in OPTIMAL.items()
    ]
