"""Step caching for local runs: same inputs, settings and code give the stored outputs back.

A key covers the step's name, its arguments (files by content), the settings the step reads
(the sections or fields it declares, by value) and the source of the mlstack package, so a
change to any of them runs the step again, and a change elsewhere in the settings (say
`serving.port`) does not. Only pure steps are cached; side effects (the Feast source,
MLflow) happen outside the cached part.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import shutil
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from mlstack.config import Settings
from mlstack.steps.results import Result

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R", bound=Result)
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


def settings_read(settings: Settings, reads: Iterable[str]) -> dict[str, Any]:
    """The parts of `settings` named in `reads` (``"features"``, ``"source.columns"``), by
    value; a name the settings do not have is an error, so a declaration cannot rot."""
    tree = settings.model_dump(mode="json")
    found: dict[str, Any] = {}
    for dotted in reads:
        node: Any = tree
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"a step declares it reads settings {dotted!r}: no such setting")
            node = node[part]
        found[dotted] = node
    return found


def folder_digest(path: Path) -> str:
    """A folder's content: every file's relative path and digest, in path order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_digest(file)}\n".encode())
    return digest.hexdigest()


def fingerprint(value: Any) -> Any:
    """An argument as the key sees it: a file or a folder (a partitioned dataset) by its
    content, anything else by value."""
    if isinstance(value, Path):
        if value.is_dir():
            return folder_digest(value)
        return file_digest(value) if value.is_file() else str(value)
    return value


def copy(src: Path, dest: Path) -> None:
    """Copy a file, or a folder in place of whatever `dest` was."""
    if src.is_dir():
        shutil.rmtree(dest, ignore_errors=True)
        if dest.is_file():
            dest.unlink()
        shutil.copytree(src, dest)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_dir():
            shutil.rmtree(dest)
        shutil.copyfile(src, dest)


def cache_key(name: str, inputs: dict[str, Any]) -> tuple[str, str]:
    """The key of `name` with these inputs (fingerprinted) and this code: (key, its text)."""
    text = json.dumps(
        {
            "step": name,
            "inputs": {k: fingerprint(v) for k, v in inputs.items()},
            "code": code_version(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20], text


def cached(
    outputs: Iterable[str], reads: Iterable[str], ignore: Iterable[str] = ()
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Cache a step whose `outputs` parameters are paths of files (or folders) it writes.

    `reads` names the settings the outputs depend on: sections (``"split"``) or fields
    (``"source.columns"``); only those enter the key. Arguments named in `ignore` (such as
    a run id used only for logging) are left out of the key.
    The wrapped step must take `settings` (for the cache folder under `artifacts_dir`) and
    declare its result type. `cache: false` in the settings (MLSTACK_CACHE=false) bypasses it.
    """
    output_names = tuple(outputs)
    read_names = tuple(reads)
    skipped = {*output_names, *ignore, "settings"}

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        result_type: type[R] = typing.get_type_hints(fn)["return"]

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            settings: Settings = bound.arguments["settings"]
            if not settings.cache:
                return fn(*args, **kwargs)
            inputs = {n: v for n, v in bound.arguments.items() if n not in skipped}
            inputs["settings"] = settings_read(settings, read_names)
            key, key_text = cache_key(fn.__name__, inputs)
            folder = settings.artifacts_dir / "cache" / fn.__name__ / key
            targets = {name: Path(bound.arguments[name]) for name in output_names}
            if (folder / RESULT_FILE).is_file():
                for name, target in targets.items():
                    copy(folder / name, target)
                log.info("step %s: reused cached outputs (%s)", fn.__name__, key)
                return result_type.from_json((folder / RESULT_FILE).read_text())
            result = fn(*args, **kwargs)
            staging = folder.with_name(key + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for name, target in targets.items():
                copy(target, staging / name)
            (staging / RESULT_FILE).write_text(result.to_json())
            (staging / KEY_FILE).write_text(key_text)
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
            return result

        run.reads = read_names  # type: ignore[attr-defined]  # what the key holds of settings
        return run

    return decorate
