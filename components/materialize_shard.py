"""Materialize one shard: its partition's newest features into the Feast online store."""

from kfp import dsl

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def materialize_shard(settings_json: str, plan_json: str, shard: int) -> int:
    """In: the plan (`materialize_plan`'s JSON), which `shard`. Side effect: the shard's
    customers' rows of the plan's intervals are in the online store. Returns the shard."""
    from mlstack.config import Settings
    from mlstack.steps.online import shard_step

    return shard_step(Settings.from_json(settings_json), plan_json, shard)
