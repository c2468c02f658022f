"""The registry's pure parts: rollback targets, history bounds, metric tags, the table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlstack.registry import listing, models
from mlstack.registry.tracking import integers_as_floats

pytestmark = pytest.mark.unit


def event(
    version: str | None, previous: str | None, action: str = "promote", alias: str = "champion"
) -> dict[str, str | None]:
    """One alias-history event as `set_alias` records it, without time, actor and reason."""
    return {"alias": alias, "action": action, "version": version, "previous": previous}


@pytest.mark.parametrize(
    ("history", "current", "target"),
    [
        ([], None, None),
        ([event("1", None)], "1", None),
        ([event("1", None), event("2", "1")], "2", "1"),
        ([event("1", None), event("2", "1"), event("1", "2", "rollback")], "1", None),
        (
            [event("1", None), event("2", "1"), event("3", "2"), event("2", "3", "rollback")],
            "2",
            "1",
        ),
        # re-promoting an old champion is a promotion: rolling back returns to the one before
        ([event("1", None), event("2", "1"), event("1", "2")], "1", "2"),
        # challenger moves and cleared aliases do not count
        (
            [
                event("1", None),
                event("2", None, "set", "challenger"),
                event(None, "2", "clear", "challenger"),
            ],
            "1",
            None,
        ),
        # the alias was moved outside mlstack: back to the last champion mlstack recorded
        ([event("1", None), event("2", "1")], "5", "2"),
        # the champion was deleted with its version: restore the last recorded one
        ([event("1", None), event("2", "1")], None, "2"),
        # history truncated: a rollback whose demoted version was dropped still pushes
        ([event("3", "2"), event("2", "3", "rollback")], "2", None),
    ],
)
def test_rollback_target_walks_back_the_champions(
    history: list[dict], current: str | None, target: str | None
) -> None:
    assert models.rollback_target(history, current) == target


def test_history_keeps_the_newest_events_within_the_tag_size() -> None:
    many = [event(str(i), str(i - 1)) | {"reason": "r" * 150} for i in range(200)]
    kept = json.loads(models.bounded_history(many))
    assert len(models.bounded_history(many)) <= models.HISTORY_MAX_CHARS
    assert len(kept) > 1
    assert len(kept) <= models.HISTORY_MAX_EVENTS
    assert kept[-1]["version"] == "199"
    assert [int(e["version"]) for e in kept] == list(range(200 - len(kept), 200))


def test_metric_tags_keep_finite_numbers_under_one_prefix() -> None:
    tags = models.metric_tags(
        {"roc_auc": 0.8, "test_pr_auc": np.float64(0.4), "brier": float("nan"), "n": None}
    )
    assert tags == {"test_roc_auc": "0.8", "test_pr_auc": "0.4"}


def test_format_versions_aligns_columns_and_marks_missing_values() -> None:
    rows = [
        {
            "version": 12,
            "aliases": ["challenger"],
            "created": "2024-05-01T10:00:00+00:00",
            "run_id": "0123456789abcdef0123",
            "roc_auc": 0.81234,
            "pr_auc": None,
            "data_version": "d1",
            "gate_decision": "pass",
        },
        {"version": 3, "aliases": [], "created": "2024-04-01T10:00:00+00:00"},
    ]
    lines = listing.format_versions(rows).splitlines()
    assert lines[0].split()[:3] == ["VERSION", "ALIASES", "CREATED"]
    assert lines[1].split() == [
        *("12", "challenger", "2024-05-01T10:00:00+00:00", "0.8123", "-", "d1", "pass"),
        "0123456789ab",
    ]
    assert lines[2].split()[:2] == ["3", "-"]
    assert lines[0].index("ALIASES") == lines[1].index("challenger") == lines[2].index("-")
    assert listing.format_versions([]) == "no registered model versions"


def test_integer_columns_become_floats_and_the_input_is_untouched() -> None:
    frame = pd.DataFrame({"count": [1, 2], "amount": [1.5, 2.0], "flag": [True, False]})
    widened = integers_as_floats(frame)
    assert widened.dtypes.astype(str).to_dict() == {
        "count": "float64",
        "amount": "float64",
        "flag": "bool",
    }
    assert frame["count"].dtype == np.int64
