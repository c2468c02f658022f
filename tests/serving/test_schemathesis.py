"""Schemathesis over the server's own OpenAPI document, against the real server: cases
generated from every operation it documents, none answered with a 5xx; with a token set,
none outside the open routes answered without it."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from mlstack.features.definitions import feature_names
from mlstack.serving.guards import is_open
from tests.serving.conftest import ServedProject, Server

pytestmark = pytest.mark.integration

MIN_CASES = 1000
PER_OPERATION = 250  # hypothesis stops sooner where an operation has fewer distinct cases


def _operations(url: str) -> list:
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def _run(operation, examples: int, on_case) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run: a failure here is reproducible
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def each(case) -> None:
        on_case(case)

    each()


def test_a_thousand_generated_cases_get_no_5xx(server: Server, served: ServedProject) -> None:
    operations = _operations(server.url)
    labels = {op.label for op in operations}
    assert "POST /v2/models/{model_name}/infer" in labels, sorted(labels)
    assert not any("repository" in label for label in labels), sorted(labels)
    seen: list[tuple[str, int]] = []
    for operation in operations:

        def check(case, operation=operation) -> None:
            response = case.call(base_url=server.url, timeout=30)
            seen.append((operation.label, response.status_code))
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
            )

        _run(operation, PER_OPERATION, check)
    print(f"schemathesis: {len(seen)} cases over {len(operations)} operations")
    assert len(seen) >= MIN_CASES, (len(seen), sorted({label for label, _ in seen}))
    # and the model is still there, serving
    assert server.client.get("/v2/models/propensity/ready").status_code == 200
    names = feature_names(served.settings())
    row = served.features[names].dropna().iloc[0]
    answer = server.client.post(
        "/v1/models/propensity:predict",
        json={"instances": [{n: float(row[n]) for n in names}]},
    )
    assert answer.status_code == 200, answer.text


def test_with_a_token_no_generated_case_passes_without_it(served: ServedProject) -> None:
    guarded = Server(served, "serving.auth_token=schemathesis-token")
    try:
        operations = _operations(guarded.url)
        answered: dict[str, set[int]] = {}
        for operation in operations:
            if is_open(operation.path.replace("{model_name}", "propensity")):
                continue

            def check(case, label=operation.label) -> None:
                response = case.call(base_url=guarded.url, timeout=30)
                answered.setdefault(label, set()).add(response.status_code)
                # 401, or 404 for a path no route serves (a model name with a ':' in it)
                assert response.status_code in (401, 404), (case.method, case.formatted_path)

            _run(operation, 20, check)
        assert answered, "the document lists routes that need the token"
        assert all(401 in codes for codes in answered.values()), answered
        assert httpx.get(f"{guarded.url}/v2/health/live").status_code == 200
    finally:
        guarded.stop()
