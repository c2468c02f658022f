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
    model_version, snapshot_date; also kept under `serving.batch_output_dir`.
    Returns the model version that scored them."""
    import shutil
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.serving.batch import score_customers

    result = score_customers(Settings.from_json(settings_json), snapshot_date or None)
    Path(scores.path).parent.mkdir(parents=True, exist_ok=True)
    Path(scores_csv.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.parquet, scores.path)
    shutil.copyfile(result.csv, scores_csv.path)
    scores.metadata.update({"rows": result.rows, "model_version": result.model_version})
    return result.model_version
