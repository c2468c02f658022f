"""The step cache keys on the settings each step reads, so each step must declare all of
them: here every cached step runs with the settings traced, and what it read must be in
its declaration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from mlstack.config import Settings
from mlstack.steps import data, model
from mlstack.steps.cache import cache_key, settings_read
from mlstack.steps.results import FeatureTable

# Where things are, not what a step computes: a step may read these without declaring them
# (the cache folder, the state store, the MLflow run tuning logs its trials into).
LOCATIONS = {"root", "artifacts_dir", "cache", "mode", "state_uri", "object_store", "mlflow"}


@contextmanager
def traced_settings() -> Iterator[set[str]]:
    """The settings read while inside: sections (``source``) and their fields
    (``source.columns``), by attribute access on any Settings instance."""
    seen: set[str] = set()
    patched: list[tuple[type, Any]] = []

    def trace(cls: type[BaseModel], prefix: str) -> None:
        original = cls.__getattribute__

        def reading(self: Any, name: str) -> Any:
            if name in cls.model_fields:
                seen.add(prefix + name)
            return original(self, name)

        patched.append((cls, original))
        cls.__getattribute__ = reading  # type: ignore[method-assign]

    trace(Settings, "")
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            trace(kind, name + ".")
    try:
        yield seen
    finally:
        for cls, original in patched:
            cls.__getattribute__ = original  # type: ignore[method-assign]


def undeclared(seen: set[str], reads: tuple[str, ...]) -> set[str]:
    """What was read but is neither declared (nor inside or above a declared part) nor a
    location."""

    def covered(name: str) -> bool:
        return any(name == d or name.startswith(d + ".") or d.startswith(name + ".") for d in reads)

    return {n for n in seen if n.split(".")[0] not in LOCATIONS and not covered(n)}


@pytest.mark.component
def test_every_cached_step_declares_the_settings_it_reads(project, tmp_path: Path) -> None:
    settings: Settings = project("tuning.max_trials=1")
    settings = settings.model_copy(update={"cache": False})
    out = tmp_path / "out"
    ingested = data.ingest_step(settings, out / "tx.parquet")
    data.validate_step(settings, out / "tx.parquet", ingested, out / "v.html", out / "clean.pq")
    clean, table = out / "clean.pq", out / "features.parquet"
    dataset, best_fit = out / "dataset.parquet", out / "best_fit.joblib"
    runs = [
        (
            data._feature_table,
            (settings, clean, ingested.data_version, out / "scratch.parquet", out / "p.html"),
        ),
        # the training set reads the Feast source the features step writes
        (data.features_step, (settings, clean, "v", table, out / "p.html")),
        (data._training_set, (settings, clean, table, dataset, out / "f.html")),
        (model._fit_baselines, (settings, dataset, out / "baselines.joblib")),
        (model._tune_locally, (settings, dataset, "", best_fit)),
        (model._train, (settings, dataset, best_fit, out / "challenger.joblib")),
    ]
    checked = 0
    for step, args in runs:
        with traced_settings() as seen:
            step(*args)
        reads = getattr(step, "reads", None)
        if reads is None:  # not a cached step: run for what the next one reads
            continue
        assert seen, step.__name__
        assert not undeclared(seen, reads), (step.__name__, sorted(undeclared(seen, reads)))
        checked += 1
    assert checked == 5


@pytest.mark.component
def test_the_key_holds_only_the_declared_settings(project) -> None:
    settings: Settings = project()
    serving = settings.serving.model_copy(update={"port": settings.serving.port + 1})
    moved = settings.model_copy(update={"serving": serving})
    reads = data._feature_table.reads  # type: ignore[attr-defined]
    key = cache_key("step", {"settings": settings_read(settings, reads)})
    assert cache_key("step", {"settings": settings_read(moved, reads)}) == key
    features = settings.features.model_copy(update={"horizon_days": 60})
    other = settings.model_copy(update={"features": features})
    assert cache_key("step", {"settings": settings_read(other, reads)}) != key
    with pytest.raises(KeyError, match="no such setting"):
        settings_read(settings, ("features.no_such_field",))


@pytest.mark.unit
def test_a_cached_result_comes_back_typed() -> None:
    result = FeatureTable(
        metrics={"customers": 3, "snapshots": 2},
        feature_version="f",
        data_version="d",
        first_snapshot="1997-03-01T00:00:00",
        last_snapshot="1997-04-01T00:00:00",
    )
    again = FeatureTable.from_json(result.to_json())
    assert again == result
    assert FeatureTable.from_facts(result.facts()).feature_version == "f"
    assert "metrics" not in result.facts()
