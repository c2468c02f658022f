"""Batch scoring: every active customer at a snapshot date, scored by the served model."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def score(
    settings_json: str, snapshot_date: str, scores: Output[Dataset], scores_csv: Output[Dataset]
) -> str:
    """In: the settings and a snapshot date (YYYY-MM-DD; empty: the latest snapshot).
    Out: `scores` (Parquet) and `scores_csv` (CSV) with customer_id, probability,
    model_version, snapshot_date; also kept under `serving.batch_output_dir`. With
    `features.shards` > 1 the shards are scored in processes and collected.
    Returns the model version that scored them."""
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.scoring import export, score_step

    result = score_step(Settings.from_json(settings_json), snapshot_date or None)
    export(result, Path(scores.path), Path(scores_csv.path))
    scores.metadata.update({"rows": result.rows, "model_version": result.model_version})
    return result.model_version
