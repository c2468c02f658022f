"""What the commands share: the settings of this invocation and the shared options."""

from __future__ import annotations

import typer

from mlstack.config import Settings, load_settings

VERBOSE = typer.Option(
    "--verbose", "-v", help="Debug logging, and the full traceback when a step fails."
)
CLUSTER = typer.Option(
    "--cluster",
    help="Also change the InferenceService through the Kubernetes API (implied by mode=cluster).",
)


def load(ctx: typer.Context) -> Settings:
    """The settings: the --config file, the environment, then the global --set overrides."""
    return load_settings(ctx.obj["config"], ctx.obj["overrides"])
