"""The gallery in `configs/`: each mapping reads its layout's generated log by config alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlstack.config import load_settings
from mlstack.data.clean import IS_RETURN
from mlstack.data.ingest import ingest
from mlstack.data.validate import validate
from mlstack.features.build import build_features, build_labels
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, attribute_names, feature_names
from tests.support.logs import write_cdnow_blemished, write_line_items
from tests.support.paths import PROJECT

pytestmark = pytest.mark.unit

CONFIGS = PROJECT / "configs"
GALLERY = {
    "cdnow.yaml": (write_cdnow_blemished, "log.txt.gz"),
    "line_items.yaml": (write_line_items, "log.csv.gz"),
}


def test_every_config_in_the_gallery_is_tried() -> None:
    assert {p.name for p in CONFIGS.glob("*.yaml")} - {"cluster.yaml"} == set(GALLERY)


@pytest.mark.parametrize("name", sorted(GALLERY))
def test_a_generated_log_is_cleaned_and_featurised_by_config_alone(
    name: str, tmp_path: Path
) -> None:
    write, file = GALLERY[name]
    source = write(tmp_path / file, customers=600, seed=1)
    settings = load_settings(
        CONFIGS / name, [f"root={tmp_path}", f"source.uri={source}", "validation.min_rows=100"]
    )

    ingested = ingest(settings)
    report, cleaned = validate(pd.read_parquet(ingested.path), settings, ingested.data_version)

    assert report.passed, report.to_dict()
    assert report.dropped["missing_customer_id"] > 0.04 * report.rows_in
    assert report.dropped["exact_duplicate"] > 0
    assert report.returns > 0 and cleaned[IS_RETURN].sum() == report.returns
    assert (cleaned.loc[cleaned[IS_RETURN], "amount"] < 0).all()
    assert not cleaned["customer_id"].str.contains(r"\.0$").any()  # float ids read as ids
    features = build_features(cleaned, settings)
    assert list(features.columns) == [
        ENTITY,
        EVENT_TIMESTAMP,
        *feature_names(settings),
        *attribute_names(settings.source),
    ]
    values = features[feature_names(settings)].to_numpy(float)
    assert not np.isinf(values).any()
    labels = build_labels(cleaned, features[[ENTITY, EVENT_TIMESTAMP]], settings)
    assert 0.02 < labels.iloc[:, -1].mean() < 0.5
