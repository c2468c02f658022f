"""A drift check with `features.shards: 4` (each shard a process reading its own rows) is the
one-shard check: on CDNOW's feature table (the partitioned one the 4-shard features step
writes) and on the payload log, every drift statistic and flag, the prediction drift, the
realised performance and the decision are equal; a missing partition is named."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlstack.config import Settings
from mlstack.data.ingest import normalise, read_source
from mlstack.features import store
from mlstack.features.build import build_features
from mlstack.features.definitions import ENTITY
from mlstack.features.shards import in_order, partition, shard_of
from mlstack.monitoring import MonitoringError
from mlstack.monitoring.check import Assessment, run_check
from tests.monitoring.helpers import register_champion, write_payloads

pytestmark = [pytest.mark.component, pytest.mark.slow]

SNAPSHOTS = ("monitoring.source=snapshots", "monitoring.reference_rows=400")
AT = datetime(1998, 3, 1, tzinfo=UTC)  # newest snapshot 1998-02-27; matured: 1998-01-30


def _same_check(one: Assessment, four: Assessment) -> None:
    assert [c.to_dict() for c in four.features] == [c.to_dict() for c in one.features]
    assert four.prediction.to_dict() == one.prediction.to_dict()
    assert four.performance == one.performance
    assert four.decision == one.decision
    assert four.window["rows"] == one.window["rows"]
    assert (one.window["shards"], four.window["shards"]) == (1, 4)


def test_snapshot_check_by_four_shards_is_the_one_shard_check(
    project: Callable[..., Settings],
) -> None:
    one = project(*SNAPSHOTS)
    four = project(*SNAPSHOTS, "features.shards=4")
    features = build_features(normalise(read_source(one.source), one.source), one)
    store.write_source(features, one)
    shard = shard_of(features[ENTITY], 4)
    for k in range(4):  # what the 4-shard features step publishes
        store.write_source(in_order(features[shard == k]), four, shard=k)
    register_champion(one)

    by_one = run_check(one, now=AT, trigger=False)
    by_four = run_check(four, now=AT, trigger=False)

    assert by_one.performance is not None and by_one.performance["rows"] > 500
    assert by_one.window["rows"] > 500 and np.isfinite(by_one.prediction.statistic)
    _same_check(by_one, by_four)
    # the report shows the same bounded sample, and says it is one
    assert by_four.window["report_rows"] == by_one.window["report_rows"] == 400
    assert "a sample of 400 of the window" in Path(by_four.window["report"]).read_text()

    partition(store.source_path(four), 2).unlink()
    with pytest.raises(MonitoringError, match=r"not of features.shards=4: missing \['shard=2'\]"):
        run_check(four, now=AT, trigger=False)


def test_payload_check_by_four_shards_is_the_one_shard_check(
    project: Callable[..., Settings],
) -> None:
    one = project("monitoring.html_report=false")
    four = project("monitoring.html_report=false", "features.shards=4")
    _, model = register_champion(one)
    now = datetime.now(UTC) + timedelta(hours=1)
    write_payloads(one, model, shift=0.3, when=now - timedelta(days=2), rows=1500)
    anonymous = write_payloads(one, model, shift=0.0, when=now - timedelta(days=1), rows=400)
    rows = pd.read_parquet(anonymous)
    pd.DataFrame(rows.assign(customer_id=None)).to_parquet(anonymous, index=False)

    by_one = run_check(one, now=now, trigger=False)
    by_four = run_check(four, now=now, trigger=False)

    assert by_one.window["rows"] == 1900
    assert by_one.drifted_share > 0
    _same_check(by_one, by_four)
