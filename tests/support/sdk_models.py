"""Strict checks of custom resources against the typed models of their Python SDKs.

The kserve and katib SDK models are generated from the CRDs' OpenAPI schemas; walking a
manifest through them catches unknown fields (a typo is silently dropped by the API server's
pruning), wrong types and missing required fields.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes.client.models as k8s_models
from kserve import models as kserve_models
from kubeflow.katib import models as katib_models

_LIST = re.compile(r"list\[(.+)\]")
_DICT = re.compile(r"dict\(str, (.+)\)")
_PRIMITIVE = {"str": str, "int": int, "float": (int, float), "bool": bool}
# Fields typed as free-form objects or int-or-string in the generated models.
_FREE = {"object", "dict", "V1Time", "datetime"}


def _model(name: str) -> type:
    for module in (kserve_models, katib_models, k8s_models):
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"no SDK model named {name}")


def check(value: Any, type_name: str, path: str = "") -> list[str]:
    """Problems of `value` against the SDK type `type_name` (empty: it conforms)."""
    if value is None:
        return []
    if m := _LIST.fullmatch(type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [p for i, v in enumerate(value) for p in check(v, m[1], f"{path}[{i}]")]
    if m := _DICT.fullmatch(type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        return [p for k, v in value.items() for p in check(v, m[1], f"{path}.{k}")]
    if type_name in _PRIMITIVE:
        if type_name == "str" and path.endswith(("port", "targetPort")):
            return []  # IntOrString
        if isinstance(value, bool) and type_name != "bool":
            return [f"{path}: expected {type_name}, got bool"]
        ok = isinstance(value, _PRIMITIVE[type_name])
        return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__}"]
    if type_name in _FREE:
        return []
    model = _model(type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected {type_name} (a map), got {type(value).__name__}"]
    by_json = {json_key: attr for attr, json_key in model.attribute_map.items()}
    problems = [
        f"{path}.{key}: unknown field of {type_name}" for key in value if key not in by_json
    ]
    for key, item in value.items():
        if key in by_json:
            problems += check(item, model.openapi_types[by_json[key]], f"{path}.{key}")
    if not problems:
        try:  # the models' own required-field and enum checks
            model(**{by_json[k]: v for k, v in value.items()})
        except (ValueError, TypeError) as err:
            problems.append(f"{path}: {type_name}: {err}")
    return problems
