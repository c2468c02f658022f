"""The predictor and the model loader in-process, on the shared served project."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pandas as pd
import pytest

from mlstack.features.definitions import feature_names
from mlstack.serving import kserve_argv_guard
from mlstack.serving import model as served_model
from mlstack.serving.trees import MAX_ROWS, TreeTable
from tests.serving.conftest import ServedProject

pytestmark = pytest.mark.component

with kserve_argv_guard():
    from mlstack.serving.predictor import PropensityModel


def test_the_array_path_gives_the_pipelines_own_probabilities(served: ServedProject):
    settings = served.settings()
    loaded = served_model.load(served_model.resolve(settings), settings.mlflow.tracking_uri)
    assert loaded.fast is not None, "the candidates' Pipelines qualify for the array path"
    names = feature_names(settings)
    assert loaded.features == tuple(names)
    matrix = served.features[names].to_numpy(np.float64)
    matrix[::7, 3] = math.nan  # missing values take the same route
    whole = loaded.estimator.predict_proba(pd.DataFrame(matrix, columns=names))[:, 1]
    assert np.array_equal(loaded.predict(matrix), whole)
    # the boosting model's trees are walked together for small batches: same bits
    assert isinstance(loaded.fast, TreeTable)
    for start in range(0, min(len(matrix), 640), MAX_ROWS):
        rows = matrix[start : start + MAX_ROWS]
        assert np.array_equal(loaded.predict(rows), whole[start : start + MAX_ROWS])


def test_an_alias_nobody_holds_is_a_clear_load_error(served: ServedProject):
    settings = served.settings("serving.model_alias=nobody")
    with pytest.raises(served_model.ModelLoadError, match="alias 'nobody'"):
        served_model.resolve(settings)


def test_a_storage_uri_that_holds_no_model_is_a_clear_load_error(served: ServedProject, tmp_path):
    settings = served.settings(f"serving.storage_uri={tmp_path}")
    with pytest.raises(served_model.ModelLoadError, match="cannot load"):
        served_model.load(served_model.resolve(settings))


def test_unknown_customers_get_an_error_for_that_instance_only(served: ServedProject):
    model = PropensityModel(served.settings("serving.unknown_customer=error"))
    model.load()
    customer = served.features["customer_id"].iloc[-1]
    body = {"instances": [{"customer_id": "ghost"}, {"customer_id": customer}]}
    response, _ = asyncio.run(model(body, headers={}))
    ghost, known = response["predictions"]
    assert ghost == {
        "customer_id": "ghost",
        "features_found": False,
        "error": "customer 'ghost' has no features in the online store",
    }
    assert known["features_found"] is True and 0 <= known["probability"] <= 1


def test_default_features_fill_in_for_an_unknown_customer(served: ServedProject):
    names = feature_names(served.settings())
    model = PropensityModel(served.settings(f"serving.default_features={{{names[0]}: 3.0}}"))
    model.load()
    response, _ = asyncio.run(model({"instances": [{"customer_id": "ghost"}]}, headers={}))
    (prediction,) = response["predictions"]
    row = np.full((1, len(names)), math.nan)
    row[0, 0] = 3.0
    assert prediction["features_found"] is False
    assert prediction["probability"] == pytest.approx(model.current.predict(row)[0], abs=0)


def test_default_features_must_name_known_features(served: ServedProject):
    with pytest.raises(ValueError, match="colour"):
        PropensityModel(served.settings("serving.default_features={colour: 1}"))


def test_a_storage_uri_folder_serves_the_same_model(served: ServedProject):
    """The cluster mode: KServe's storage initializer puts the model folder at /mnt/models."""
    from urllib.parse import urlparse

    from mlflow import MlflowClient

    settings = served.settings()
    client = MlflowClient(settings.mlflow.tracking_uri)
    source = client.get_model_version(settings.mlflow.registered_model, "1").source
    folder = urlparse(
        client.get_logged_model(source.removeprefix("models:/")).artifact_location
    ).path
    from_folder = served_model.load(
        served_model.resolve(served.settings(f"serving.storage_uri={folder}"))
    )
    assert from_folder.ref.version == source.removeprefix("models:/")  # the logged model id
    assert from_folder.fast is not None
    by_alias = served_model.load(
        served_model.ModelRef(settings.mlflow.registered_model, "1", "models:/mlstack-propensity/1")
    )
    matrix = served.features[list(by_alias.features)].to_numpy(np.float64)[:200]
    assert np.array_equal(from_folder.predict(matrix), by_alias.predict(matrix))


def test_the_direct_view_read_gives_what_feast_get_online_features_gives(served: ServedProject):
    from mlstack.features import store as feature_store
    from mlstack.serving.lookup import CustomerLookup

    settings = served.settings()
    names = tuple(feature_names(settings))
    lookup = CustomerLookup(settings, names)
    assert lookup._view is not None, "the repo's service is one view keyed by customer_id"
    customers = [*served.features["customer_id"].drop_duplicates().head(50), "ghost", "00001"]
    matrix, found = lookup.fetch(customers)
    reference = feature_store.online_features(lookup.store, customers, settings)
    expected = reference[list(names)].to_numpy(np.float64)
    assert np.array_equal(matrix, expected, equal_nan=True)
    assert found.tolist() == (~np.isnan(expected).all(axis=1)).tolist()
    assert found[-2] == False  # noqa: E712 - the ghost
