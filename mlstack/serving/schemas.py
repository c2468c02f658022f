"""Request schemas: V1 instances and V2 (Open Inference Protocol) tensors, checked against the
model's signature and turned into one float64 matrix plus the customer ids to look up.

An instance is either `{"customer_id": "..."}` (features come from the Feast online store)
or a full feature row with exactly the signature's columns. A feature value is a JSON number
or null (a missing value, as in training); NaN, infinities, booleans, strings, missing and
extra fields, empty and oversized batches are rejected with `InvalidInput` (HTTP 400) naming
the field, e.g. ``instances[2].recency_days: expected a number or null, got str``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from mlstack.features.definitions import ENTITY

INSTANCES = "instances"
V1_TOP_LEVEL = frozenset({INSTANCES})
V2_NUMERIC = frozenset(
    {
        "FP64",
        "FP32",
        "FP16",
        "INT64",
        "INT32",
        "INT16",
        "INT8",
        "UINT64",
        "UINT32",
        "UINT16",
        "UINT8",
    }
)


@dataclass
class Batch:
    """A validated request: one row per instance.

    `matrix` holds the features of full rows (customer rows stay NaN until looked up);
    `customer_ids[i]` is the id of a customer instance, None for a full row.
    """

    matrix: np.ndarray
    customer_ids: list[str | None]
    protocol: str
    request_id: str

    @property
    def size(self) -> int:
        return len(self.customer_ids)

    @property
    def lookups(self) -> list[int]:
        return [i for i, cid in enumerate(self.customer_ids) if cid is not None]


def _names(items: Any) -> str:
    return ", ".join(repr(item) for item in sorted(items))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def check_size(size: int, max_batch_size: int, what: str) -> None:
    if size == 0:
        raise InvalidInput(f"{what}: the batch is empty; send at least one instance")
    if size > max_batch_size:
        raise InvalidInput(
            f"{what}: {size} instances is more than the maximum of {max_batch_size} per request"
        )


def feature_value(value: Any, where: str) -> float:
    """A JSON feature value as float64: numbers as they are, null as NaN (missing)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where}: expected a number or null, got {_type_name(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise InvalidInput(f"{where}: {value!r} is not allowed; send null for a missing value")
    return number


def customer_id(value: Any, where: str) -> str:
    """A customer id: a non-empty string, or an integer (ids are text, `1` means `"1"`)."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"{where}: expected a non-empty string, got {_type_name(value)}")


def parse_v1(body: Any, features: tuple[str, ...], max_batch_size: int, request_id: str) -> Batch:
    """Validate a V1 body `{"instances": [...]}` against the feature columns."""
    if not isinstance(body, dict):
        raise InvalidInput(f"the request body must be a JSON object, got {_type_name(body)}")
    extra = body.keys() - V1_TOP_LEVEL
    if extra:
        raise InvalidInput(f"unknown field(s) {_names(extra)} in the request; expected 'instances'")
    if INSTANCES not in body:
        raise InvalidInput("missing field 'instances'")
    instances = body[INSTANCES]
    if not isinstance(instances, list):
        raise InvalidInput(f"instances: expected an array, got {_type_name(instances)}")
    check_size(len(instances), max_batch_size, INSTANCES)
    expected = frozenset(features)
    matrix = np.full((len(instances), len(features)), math.nan)
    ids: list[str | None] = [None] * len(instances)
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(instance, dict):
            raise InvalidInput(f"{where}: expected an object, got {_type_name(instance)}")
        if ENTITY in instance:
            if len(instance) != 1:
                others = instance.keys() - {ENTITY}
                raise InvalidInput(
                    f"{where}: a {ENTITY} instance takes no other fields, got {_names(others)}"
                )
            ids[i] = customer_id(instance[ENTITY], f"{where}.{ENTITY}")
            continue
        if instance.keys() != expected:
            missing, extra = expected - instance.keys(), instance.keys() - expected
            parts = []
            if missing:
                parts.append(f"missing feature(s) {_names(missing)}")
            if extra:
                parts.append(f"unknown field(s) {_names(extra)}")
            hint = f" (or send only {ENTITY!r})" if missing else ""
            raise InvalidInput(f"{where}: {'; '.join(parts)}{hint}")
        row = matrix[i]
        for j, name in enumerate(features):
            row[j] = feature_value(instance[name], f"{where}.{name}")
    return Batch(matrix=matrix, customer_ids=ids, protocol="v1", request_id=request_id)


def _v2_rows(tensor: Any, where: str) -> int:
    shape = list(tensor.shape or [])
    if len(shape) == 2 and shape[1] == 1:
        return int(shape[0])
    if len(shape) != 1:
        raise InvalidInput(f"{where}: shape must be [n] or [n, 1], got {shape}")
    return int(shape[0])


def _v2_data(tensor: Any, rows: int, where: str) -> list[Any]:
    data = tensor.data
    if not isinstance(data, list):
        raise InvalidInput(f"{where}: data must be a JSON array")
    if data and isinstance(data[0], list):  # nested [[x], [y]] for shape [n, 1]
        data = [item[0] if isinstance(item, list) and len(item) == 1 else item for item in data]
    if len(data) != rows:
        raise InvalidInput(f"{where}: shape says {rows} values, data has {len(data)}")
    return data


def parse_v2(
    request: InferRequest, features: tuple[str, ...], max_batch_size: int, request_id: str
) -> Batch:
    """Validate a V2 request: one tensor per feature, or a single BYTES tensor `customer_id`."""
    inputs = request.inputs or []
    names = [tensor.name for tensor in inputs]
    if len(set(names)) != len(names):
        duplicated = {name for name in names if names.count(name) > 1}
        raise InvalidInput(f"inputs: duplicated tensor(s) {_names(duplicated)}")
    rid = request.id or request_id
    if names == [ENTITY]:
        tensor = inputs[0]
        where = f"inputs[{ENTITY}]"
        if tensor.datatype != "BYTES":
            raise InvalidInput(f"{where}: datatype must be BYTES, got {tensor.datatype}")
        rows = _v2_rows(tensor, where)
        check_size(rows, max_batch_size, where)
        data = _v2_data(tensor, rows, where)
        ids = [customer_id(value, f"{where}[{i}]") for i, value in enumerate(data)]
        matrix = np.full((rows, len(features)), math.nan)
        return Batch(matrix=matrix, customer_ids=list(ids), protocol="v2", request_id=rid)
    expected = frozenset(features)
    missing, extra = expected - set(names), set(names) - expected
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing feature tensor(s) {_names(missing)}")
        if extra:
            parts.append(f"unknown tensor(s) {_names(extra)}")
        raise InvalidInput(f"inputs: {'; '.join(parts)} (or send only {ENTITY!r})")
    by_name = {tensor.name: tensor for tensor in inputs}
    rows = None
    matrix = None
    for j, name in enumerate(features):
        tensor = by_name[name]
        where = f"inputs[{name}]"
        if tensor.datatype not in V2_NUMERIC:
            raise InvalidInput(
                f"{where}: datatype must be numeric (e.g. FP64), got {tensor.datatype}"
            )
        n = _v2_rows(tensor, where)
        if rows is None:
            rows = n
            check_size(rows, max_batch_size, where)
            matrix = np.full((rows, len(features)), math.nan)
        elif n != rows:
            raise InvalidInput(f"{where}: {n} rows, but the other tensors have {rows}")
        data = _v2_data(tensor, rows, where)
        column = matrix[:, j]
        for i, value in enumerate(data):
            column[i] = feature_value(value, f"{where}[{i}]")
    assert matrix is not None and rows is not None
    return Batch(matrix=matrix, customer_ids=[None] * rows, protocol="v2", request_id=rid)
