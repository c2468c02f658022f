"""Scores, collected: the shards' parts as one table in customer-id order."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def collect_scores(
    settings_json: str,
    parts: Input[list[Dataset]],
    results: list[str],
    scores: Output[Dataset],
    scores_csv: Output[Dataset],
) -> str:
    """In: every shard's part and facts. Out: `scores` (Parquet) and `scores_csv` (CSV), as
    the one-shard `score` step's; also kept under `serving.batch_output_dir`.
    Returns the model version that scored them."""
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.scoring import collect_scores_step, export

    result = collect_scores_step(
        Settings.from_json(settings_json), [Path(p.path) for p in parts], results
    )
    export(result, Path(scores.path), Path(scores_csv.path))
    scores.metadata.update({"rows": result.rows, "model_version": result.model_version})
    return result.model_version
