"""The model server for real on loopback: V1 and V2 round trips, Feast lookups, unknown
customers, every class of bad input, metrics and the payload log."""

from __future__ import annotations

import math
import re
import time
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_names
from mlstack.serving.payloads import read_payloads
from tests.serving.conftest import ServedProject, Server

pytestmark = pytest.mark.integration

PREDICT = "/v1/models/propensity:predict"
INFER = "/v2/models/propensity/infer"


def jsonable(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values]


@pytest.fixture(scope="module")
def names(served: ServedProject) -> list[str]:
    return feature_names(served.settings())


@pytest.fixture(scope="module")
def model(served: ServedProject):
    """The champion as MLflow loads it: the reference the server must agree with."""
    settings = served.settings()
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    return mlflow.sklearn.load_model(f"models:/{settings.mlflow.registered_model}@champion")


@pytest.fixture(scope="module")
def latest(served: ServedProject) -> pd.DataFrame:
    """Each customer's features at the last snapshot (what the online store holds)."""
    frame = served.features
    last = frame[EVENT_TIMESTAMP].max()
    return frame[frame[EVENT_TIMESTAMP] == last].set_index(ENTITY)


def row(frame: pd.DataFrame, names: list[str], i: int) -> dict[str, float | None]:
    return dict(zip(names, jsonable(frame[names].iloc[i].to_numpy(np.float64)), strict=True))


def test_v1_feature_rows_match_the_registered_model(server: Server, served, names, model):
    frame = served.features.sample(20, random_state=1)
    response = server.client.post(
        PREDICT, json={"instances": [row(frame, names, i) for i in range(20)]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "1"
    assert body["model_name"] == "propensity"
    expected = model.predict_proba(frame[names].astype("float64"))[:, 1]
    got = [p["probability"] for p in body["predictions"]]
    assert got == pytest.approx(expected.tolist(), abs=1e-12)
    assert all(set(p) == {"probability"} for p in body["predictions"])


def test_v1_customer_ids_are_looked_up_in_feast(server: Server, names, model, latest):
    known = latest.index[:3].tolist()
    response = server.client.post(
        PREDICT, json={"instances": [{"customer_id": c} for c in [*known, "no-such-customer"]]}
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected = model.predict_proba(latest.loc[known, names].astype("float64"))[:, 1]
    for prediction, customer, probability in zip(predictions, known, expected, strict=False):
        assert prediction["customer_id"] == customer
        assert prediction["features_found"] is True
        assert prediction["probability"] == pytest.approx(probability, abs=1e-12)
    unknown = predictions[3]
    assert unknown["customer_id"] == "no-such-customer"
    assert unknown["features_found"] is False
    missing = pd.DataFrame([[math.nan] * len(names)], columns=names)  # the default vector
    assert unknown["probability"] == pytest.approx(model.predict_proba(missing)[0, 1], abs=1e-12)


def test_v1_mixes_rows_and_customer_ids(server: Server, served, names, latest):
    customer = latest.index[0]
    instances = [row(served.features, names, 0), {"customer_id": customer}]
    response = server.client.post(PREDICT, json={"instances": instances})
    assert response.status_code == 200
    first, second = response.json()["predictions"]
    assert "customer_id" not in first
    assert second["customer_id"] == customer and second["features_found"] is True


def test_v2_feature_tensors_round_trip(server: Server, served, names, model):
    frame = served.features.head(4)
    inputs = [
        {
            "name": n,
            "shape": [4],
            "datatype": "FP64",
            "data": jsonable(frame[n].to_numpy(np.float64)),
        }
        for n in names
    ]
    response = server.client.post(INFER, json={"id": "abc", "inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "1"
    assert body["id"] == "abc"
    (output,) = body["outputs"]
    assert output["name"] == "probability" and output["datatype"] == "FP64"
    expected = model.predict_proba(frame[names].astype("float64"))[:, 1]
    assert output["data"] == pytest.approx(expected.tolist(), abs=1e-12)


def test_v2_customer_ids_and_metadata(server: Server, names, latest):
    customers = [latest.index[0], "nobody"]
    inputs = [{"name": "customer_id", "shape": [2], "datatype": "BYTES", "data": customers}]
    response = server.client.post(INFER, json={"inputs": inputs})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["features_found"]["data"] == [True, False]
    assert len(outputs["probability"]["data"]) == 2
    metadata = server.client.get("/v2/models/propensity").json()
    assert [t["name"] for t in metadata["inputs"]] == [*names, "customer_id"]
    assert server.client.get("/v2/models/propensity/ready").status_code == 200
    assert server.client.get("/v2/health/live").status_code == 200
    status = server.client.get("/v1/models/propensity").json()
    assert status["ready"] is True and status["model_version"] == "1"
    assert server.client.get("/v1/models/other").status_code == 404


def raw_row(names: list[str], token: str) -> bytes:
    """A V1 body whose first feature is the literal JSON-ish `token` (NaN, -Infinity...)."""
    values = ", ".join(f'"{n}": {token if i == 0 else 1}' for i, n in enumerate(names))
    return ('{"instances": [{' + values + "}]}").encode()


def bad_requests(names: list[str]) -> list[tuple[str, str, object, str]]:
    """(case, path, body or raw bytes, text the error must contain)."""
    good = dict.fromkeys(names, 1.0)
    first = names[0]

    def v2(**change: object) -> dict:
        tensor = {"name": first, "shape": [1], "datatype": "FP64", "data": [1.0]}
        inputs = [{"name": n, "shape": [1], "datatype": "FP64", "data": [1.0]} for n in names[1:]]
        return {"inputs": [{**tensor, **change}, *inputs]}

    return [
        ("malformed json", PREDICT, b'{"instances": [', "not valid JSON"),
        ("empty body", PREDICT, b"", "empty"),
        ("not an object", PREDICT, [1, 2], "JSON object"),
        ("no instances", PREDICT, {"rows": []}, "'rows'"),
        ("instances not a list", PREDICT, {"instances": {"a": 1}}, "instances"),
        ("empty batch", PREDICT, {"instances": []}, "empty"),
        ("oversized body", PREDICT, b'{"instances": [' + b" " * 900_000 + b"]}", "too large"),
        ("oversized batch", PREDICT, {"instances": [good] * 51}, "maximum of 50"),
        ("instance not an object", PREDICT, {"instances": [3]}, "instances[0]"),
        ("wrong type", PREDICT, {"instances": [{**good, first: "7"}]}, f"instances[0].{first}"),
        ("boolean", PREDICT, {"instances": [{**good, first: True}]}, f"instances[0].{first}"),
        ("nested", PREDICT, {"instances": [{**good, first: [1]}]}, f"instances[0].{first}"),
        (
            "missing field",
            PREDICT,
            {"instances": [{k: v for k, v in good.items() if k != first}]},
            first,
        ),
        ("extra field", PREDICT, {"instances": [{**good, "colour": 1}]}, "'colour'"),
        (
            "NaN",
            PREDICT,
            raw_row(names, "NaN"),
            f"instances[0].{first}",
        ),
        (
            "Infinity",
            PREDICT,
            raw_row(names, "-Infinity"),
            f"instances[0].{first}",
        ),
        (
            "huge number",
            PREDICT,
            raw_row(names, "1e999"),
            f"instances[0].{first}",
        ),
        (
            "customer id with other fields",
            PREDICT,
            {"instances": [{"customer_id": "1", first: 1}]},
            "customer_id",
        ),
        (
            "customer id not text",
            PREDICT,
            {"instances": [{"customer_id": {"x": 1}}]},
            "instances[0].customer_id",
        ),
        (
            "empty customer id",
            PREDICT,
            {"instances": [{"customer_id": ""}]},
            "instances[0].customer_id",
        ),
        ("v2 malformed json", INFER, b'{"inputs": [', ""),
        ("v2 wrong datatype", INFER, v2(datatype="BYTES", data=["a"]), f"inputs[{first}]"),
        ("v2 shape mismatch", INFER, v2(shape=[2]), f"inputs[{first}]"),
        ("v2 bad shape", INFER, v2(shape=[1, 2], data=[1.0, 2.0]), f"inputs[{first}]"),
        ("v2 string value", INFER, v2(data=["x"]), f"inputs[{first}]"),
        ("v2 NaN", INFER, v2(data=[float("nan")]), f"inputs[{first}][0]"),
        ("v2 missing tensor", INFER, {"inputs": v2()["inputs"][1:]}, first),
        (
            "v2 extra tensor",
            INFER,
            {
                "inputs": [
                    *v2()["inputs"],
                    {"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]},
                ]
            },
            "'zz'",
        ),
        (
            "v2 empty batch",
            INFER,
            {"inputs": [{"name": n, "shape": [0], "datatype": "FP64", "data": []} for n in names]},
            "empty",
        ),
        (
            "v2 customer id not bytes",
            INFER,
            {"inputs": [{"name": "customer_id", "shape": [1], "datatype": "INT64", "data": [1]}]},
            "BYTES",
        ),
    ]


def test_every_bad_input_gets_a_4xx_naming_the_problem(server: Server, names):
    failures = []
    for case, path, body, needle in bad_requests(names):
        if isinstance(body, bytes):
            response = server.client.post(
                path, content=body, headers={"content-type": "application/json"}
            )
        elif isinstance(body, dict) and any(
            isinstance(v, float) and math.isnan(v)
            for t in body.get("inputs", [])
            for v in t.get("data", [])
        ):
            import json

            response = server.client.post(
                path,
                content=json.dumps(body).encode(),
                headers={"content-type": "application/json"},
            )
        else:
            response = server.client.post(path, json=body)
        if not 400 <= response.status_code < 500 or needle not in response.text:
            failures.append(f"{case}: {response.status_code} {response.text[:300]}")
    assert not failures, "\n".join(failures)
    good = {"instances": [dict.fromkeys(names, 1.0)]}
    assert server.client.post(PREDICT, json=good).status_code == 200


def test_metrics_count_requests_errors_lookups_and_the_version(server: Server, latest):
    server.client.post(PREDICT, json={"instances": [{"customer_id": latest.index[0]}]})
    server.client.post(PREDICT, json={"instances": []})
    text = server.client.get("/metrics").text
    for needle in (
        'mlstack_requests_total{outcome="ok",protocol="v1"}',
        'mlstack_errors_total{kind="invalid_input"}',
        "mlstack_request_seconds_bucket",
        "mlstack_feature_lookup_seconds_count",
        'mlstack_model_version_info{model="mlstack-propensity",version="1"} 1.0',
    ):
        assert needle in text, needle
    # KServe's own stage histograms, which the predict path times itself
    for stage in ("preprocess", "predict", "postprocess"):
        count = re.search(
            rf'^request_{stage}_seconds_count{{model_name="propensity"}} (\S+)$', text, re.M
        )
        assert count and float(count.group(1)) >= 1, stage


def test_payloads_are_logged_in_batches_by_the_contract(server: Server, served, names, latest):
    settings = served.settings()
    folder = Path(settings.payload_uri())
    request_id = uuid.uuid4().hex
    instances = [
        row(served.features, names, 5),
        {"customer_id": latest.index[1]},
        {"customer_id": "ghost"},
    ]
    response = server.client.post(
        PREDICT, json={"instances": instances}, headers={"x-request-id": request_id}
    )
    assert response.status_code == 200
    deadline = time.monotonic() + 10
    logged = pd.DataFrame()
    while time.monotonic() < deadline:
        logged = read_payloads(folder)
        if (logged["request_id"] == request_id).sum() == 3:
            break
        time.sleep(0.2)
    mine = logged[logged["request_id"] == request_id].reset_index(drop=True)
    assert len(mine) == 3
    assert list(logged.columns) == [
        "request_id",
        "logged_at",
        "model_name",
        "model_version",
        "customer_id",
        "features_found",
        *names,
        "probability",
    ]
    assert str(logged["logged_at"].dtype) == "datetime64[us, UTC]"
    assert all(str(logged[n].dtype) == "float64" for n in [*names, "probability"])
    assert mine["customer_id"].tolist()[1:] == [latest.index[1], "ghost"]
    assert pd.isna(mine["customer_id"][0]) and pd.isna(mine["features_found"][0])
    assert mine["features_found"].tolist()[1:] == [True, False]
    assert (mine["model_version"] == "1").all() and (
        mine["model_name"] == "mlstack-propensity"
    ).all()
    predictions = response.json()["predictions"]
    assert mine["probability"].tolist() == pytest.approx([p["probability"] for p in predictions])
    assert mine.loc[1, names].to_numpy(np.float64) == pytest.approx(
        latest.loc[latest.index[1], names].to_numpy(np.float64), nan_ok=True
    )
    files = list(folder.glob("date=*/part-*.parquet"))
    assert 0 < len(files) < len(logged), "rows are written in batches, not a file per request"


# -- fuzzing ---------------------------------------------------------------------------------

JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def bad_bodies(names: list[str]) -> st.SearchStrategy[tuple[str, bytes]]:
    """(path, raw body) pairs that break the schema in one or more ways."""
    good = dict.fromkeys(names, 1.0)
    not_a_number = JUNK.filter(
        lambda v: (
            (v is not None and (isinstance(v, bool) or not isinstance(v, int | float)))
            or (isinstance(v, float) and not math.isfinite(v))
            or (isinstance(v, int) and abs(v) > 10**308)
        )
    )
    mutated_value = st.builds(
        lambda name, value, n: {"instances": [{**good, name: value}] * n},
        st.sampled_from(names),
        not_a_number,
        st.integers(1, 3),
    )
    mutated_keys = st.builds(
        lambda drop, extra: {
            "instances": [{**{k: v for k, v in good.items() if k not in drop}, **extra}]
        },
        st.sets(st.sampled_from(names), max_size=3),
        st.dictionaries(
            st.text(min_size=1, max_size=8).filter(lambda k: k not in good), JUNK, max_size=2
        ),
    ).filter(lambda body: set(body["instances"][0]) != set(names))
    customers = st.builds(
        lambda value, extra: {"instances": [{"customer_id": value, **extra}]},
        JUNK.filter(
            lambda v: (
                not isinstance(v, str) and not (isinstance(v, int) and not isinstance(v, bool))
            )
        ),
        st.dictionaries(st.sampled_from(names), JUNK, max_size=1),
    )
    whole = JUNK.filter(lambda v: not (isinstance(v, dict) and set(v) == {"instances"}))
    v2 = st.builds(
        lambda tensors: {"inputs": tensors},
        st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from([*names[:2], "customer_id", "x"]),
                    "shape": st.lists(st.integers(-1, 3), max_size=3),
                    "datatype": st.sampled_from(["FP64", "BYTES", "BOOL", "INT64", "FP16", "nope"]),
                    "data": st.lists(JUNK, max_size=3),
                }
            ),
            max_size=3,
        ),
    )

    def encode(body: object) -> bytes:
        import json

        return json.dumps(body, allow_nan=True).encode()

    v1_bodies = st.one_of(mutated_value, mutated_keys, customers, whole).map(encode)
    raw = st.binary(max_size=64).filter(lambda b: b.strip() not in (b"{}",))
    return st.one_of(
        st.tuples(st.just(PREDICT), v1_bodies),
        st.tuples(st.just(PREDICT), raw),
        st.tuples(st.just(INFER), v2.map(encode)),
        st.tuples(st.just(INFER), raw),
    )


def test_fuzz_a_thousand_bad_requests_get_4xx_and_the_server_keeps_serving(server: Server, names):
    statuses: list[int] = []
    server_errors: list[str] = []

    @settings(
        max_examples=1100,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=bad_bodies(names))
    def send(case: tuple[str, bytes]) -> None:
        path, body = case
        response = server.client.post(
            path, content=body, headers={"content-type": "application/json"}
        )
        statuses.append(response.status_code)
        if response.status_code >= 500:
            server_errors.append(
                f"{path} {body[:200]!r} -> {response.status_code} {response.text[:200]}"
            )

    send()
    assert not server_errors, "\n".join(server_errors[:10])
    rejected = sum(400 <= code < 500 for code in statuses)
    assert rejected >= 1000, f"only {rejected} of {len(statuses)} requests were rejected"
    good = {"instances": [dict.fromkeys(names, 1.0)]}
    assert server.client.post(PREDICT, json=good).status_code == 200
