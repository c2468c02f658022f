"""Materialize: the newest features into the Feast online store, incrementally."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def materialize(settings_json: str, feature_table: Input[Dataset]) -> str:
    """In: the `feature_table` (its last snapshot bounds the run). Returns that bound."""
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.data import materialize_step

    result = materialize_step(Settings.from_json(settings_json), Path(feature_table.path))
    return result.materialized_until
