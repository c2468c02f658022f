"""Materialize, collected: every shard loaded, the interval recorded in the Feast registry."""

from kfp import dsl

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def collect_materialized(settings_json: str, plan_json: str, shards_done: list[int]) -> str:
    """In: the plan, the shards that loaded it. Side effect: the registry records the
    plan's intervals (the next materialization starts at their end). Returns the bound the
    online store is materialized up to, as the one-shard `materialize` does."""
    from mlstack.config import Settings
    from mlstack.steps.online import record_step

    result = record_step(Settings.from_json(settings_json), plan_json, shards_done)
    return result.materialized_until
