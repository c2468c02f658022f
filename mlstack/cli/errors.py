"""One mapping from the errors a user can act on to what every command prints.

A known error ends the command with `error: <message>` on stderr and exit code 1 (with
`--verbose`, its traceback first). Usage errors stay click's: exit code 2 and the usage line.
Anything else is a bug and keeps Python's traceback.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

P = ParamSpec("P")
R = TypeVar("R")

# Bad input: a missing file, a setting or date that does not parse (pydantic's
# ValidationError is a ValueError).
INPUT_ERRORS: tuple[type[Exception], ...] = (FileNotFoundError, ValueError)

# The project's own errors, by module and name: their modules import mlflow, kubernetes,
# feast or kfp, which a command that fails should not have to load just to compare types.
KNOWN_ERRORS = frozenset(
    {
        "mlstack.deploy.errors.RolloutError",
        "mlstack.deploy.kfp_runs.KfpError",
        "mlstack.deploy.kube.KubeError",
        "mlstack.failures.ExplainedError",
        "mlstack.features.store.FeatureStoreUnavailable",
        "mlstack.monitoring.MonitoringError",
        "mlstack.registry.models.RegistryError",
        "mlstack.serving.model.ModelLoadError",
        "mlstack.services.ServiceUnavailable",
        "mlstack.storage.StateStoreError",
    }
)


def is_known(err: BaseException) -> bool:
    """Whether `err` is an error a user can act on (its class or one it derives from)."""
    if isinstance(err, INPUT_ERRORS):
        return True
    return any(f"{cls.__module__}.{cls.__qualname__}" in KNOWN_ERRORS for cls in type(err).__mro__)


def verbose(ctx: object) -> bool:
    """Whether the global --verbose was given; `ctx` is the command's `ctx` argument (typer
    passes it by name, and the runtime object is click's context, not `typer.Context`)."""
    obj = getattr(ctx, "obj", None)
    return isinstance(obj, dict) and bool(obj.get("verbose"))


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so a known error ends it with one `error: …` line and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except Exception as err:
            if not is_known(err):
                raise
            if verbose(kwargs.get("ctx")):
                traceback.print_exception(err)
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from err

    return wrapper
