"""Two pipelines that differ in one thing: how a step hands a file to the next.

No `from __future__ import annotations` here: KFP reads the components' annotations as
types, not strings.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output


def pipelines(image: str) -> dict[str, object]:
    """`handed_over` passes the bytes as an artifact; `shared_disk` expects the next step's
    container to see a file the first one left in its own filesystem."""

    @dsl.component(base_image=image, install_kfp_package=False)
    def leave_a_file(out: Output[Dataset]):
        from pathlib import Path

        Path("/tmp/left-behind.txt").write_text("state")
        Path(out.path).write_text("state")

    @dsl.component(base_image=image, install_kfp_package=False)
    def read_the_artifact(data: Input[Dataset]) -> str:
        from pathlib import Path

        return Path(data.path).read_text()

    @dsl.component(base_image=image, install_kfp_package=False)
    def read_the_file() -> str:
        from pathlib import Path

        return Path("/tmp/left-behind.txt").read_text()

    @dsl.pipeline(name="isolation-artifact")
    def handed_over() -> str:
        left = leave_a_file()
        return read_the_artifact(data=left.outputs["out"]).output

    @dsl.pipeline(name="isolation-shared-disk")
    def shared_disk() -> str:
        left = leave_a_file()
        return read_the_file().after(left).output

    return {"handed_over": handed_over, "shared_disk": shared_disk}
