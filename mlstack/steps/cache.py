"""Step caching for local runs: same inputs, settings and code give the stored outputs back.

A key covers the step's name, every argument (files by content, settings by value), and the
source of the mlstack package, so a change to any of them runs the step again. Only pure
steps are cached; side effects (the Feast source, MLflow) happen outside the cached part.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ParamSpec

from mlstack.config import Settings
from mlstack.steps import StepResult

log = logging.getLogger(__name__)

P = ParamSpec("P")
PACKAGE = Path(__file__).resolve().parents[1]
RESULT_FILE = "result.json"
KEY_FILE = "key.json"  # what the key was made of, to see why a step ran again


@functools.cache
def code_version() -> str:
    """A hash of the mlstack package's source."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(value: Any) -> Any:
    if isinstance(value, Settings):
        return json.loads(value.to_json())
    if isinstance(value, Path):
        return file_digest(value) if value.is_file() else str(value)
    return value


def _key(name: str, inputs: dict[str, Any]) -> tuple[str, str]:
    """The key of `name` with these inputs (fingerprinted) and this code: (key, its text)."""
    text = json.dumps(
        {
            "step": name,
            "inputs": {k: _fingerprint(v) for k, v in inputs.items()},
            "code": code_version(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20], text


def shared_file(settings: Settings, name: str, **inputs: Any) -> Path | None:
    """Where one local step leaves a value for a later one (tuning's best fit for training):
    a file under the cache folder, keyed like a cached step by `inputs` (files by content,
    settings by value) and the code. None when caching is off: then nothing is shared."""
    if not settings.cache:
        return None
    key, _ = _key(name, {"settings": settings, **inputs})
    return settings.artifacts_dir / "cache" / name / f"{key}.joblib"


def cached(
    outputs: Iterable[str], ignore: Iterable[str] = ()
) -> Callable[[Callable[P, StepResult]], Callable[P, StepResult]]:
    """Cache a step whose `outputs` parameters are file paths it writes.

    Arguments named in `ignore` (such as a run id used only for logging) are left out of
    the key.
    The wrapped step must take `settings` (for the cache folder under `artifacts_dir`).
    `cache: false` in the settings (MLSTACK_CACHE=false) bypasses it.
    """
    output_names = tuple(outputs)
    skipped = set(output_names) | set(ignore)

    def decorate(fn: Callable[P, StepResult]) -> Callable[P, StepResult]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> StepResult:
            bound = signature.bind(*args, **kwargs)
            settings: Settings = bound.arguments["settings"]
            if not settings.cache:
                return fn(*args, **kwargs)
            inputs = {n: v for n, v in bound.arguments.items() if n not in skipped}
            key, key_text = _key(fn.__name__, inputs)
            folder = settings.artifacts_dir / "cache" / fn.__name__ / key
            targets = {name: Path(bound.arguments[name]) for name in output_names}
            if (folder / RESULT_FILE).is_file():
                for name, target in targets.items():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(folder / name, target)
                log.info("step %s: reused cached outputs (%s)", fn.__name__, key)
                return StepResult.from_json((folder / RESULT_FILE).read_text())
            result = fn(*args, **kwargs)
            staging = folder.with_name(key + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for name, target in targets.items():
                shutil.copyfile(target, staging / name)
            (staging / RESULT_FILE).write_text(result.to_json())
            (staging / KEY_FILE).write_text(key_text)
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
            return result

        return run

    return decorate
