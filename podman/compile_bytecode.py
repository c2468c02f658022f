"""Write the bytecode the image's processes need, at build time, by importing it once.

Run with PYTHONOPTIMIZE=1 (the image's setting) and bytecode writing on: every module of
mlstack, components and pipelines is imported, plus the modules loaded later at run time
(model flavours, server loops, stores), so each `.opt-1.pyc` they need is written. A
container with a read-only root filesystem then compiles nothing when it starts, and
modules that nothing imports (most of plotly, statsmodels, botocore's …) keep no bytecode.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

RUN_TIME = (
    "mlstack.cli",
    "kfp.dsl.executor_main",
    "kserve.model_server",
    "mlflow.sklearn",
    "mlflow.pyfunc",
    "mlflow.models",
    "mlflow.tracking",
    "mlflow.store.tracking.rest_store",
    "mlflow.store.artifact.s3_artifact_repo",
    "mlflow.store.artifact.http_artifact_repo",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.compose",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.impute",
    "feast",
    "feast.feature_store",
    "feast.infra.online_stores.redis",
    "feast.infra.online_stores.sqlite",
    "feast.infra.offline_stores.duckdb",
    "feast.infra.registry.s3",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.loops.uvloop",
    "uvicorn.lifespan.on",
    "evidently",
    "optuna",
    "s3fs",
    "redis",
    "duckdb",
)


def main() -> int:
    if sys.flags.optimize != 1 or sys.dont_write_bytecode:
        print("run with PYTHONOPTIMIZE=1 and bytecode writing on", file=sys.stderr)
        return 2
    names: list[str] = []
    for package in ("mlstack", "components", "pipelines"):
        module = importlib.import_module(package)
        names += [m.name for m in pkgutil.walk_packages(module.__path__, f"{package}.")]
    failed = []
    for name in [*names, *RUN_TIME]:
        try:
            importlib.import_module(name)
        except Exception as err:  # a missing optional module only loses its bytecode
            failed.append(f"{name} ({type(err).__name__})")
    print(f"{len(sys.modules)} modules imported, bytecode written; not importable: {failed}")
    return 1 if any(f.startswith(("mlstack", "components", "pipelines")) for f in failed) else 0


if __name__ == "__main__":
    sys.exit(main())
