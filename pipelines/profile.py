"""The settings a compiled pipeline carries, and the typed parameters a run overrides them by.

A compiled pipeline carries one *profile*: the settings resolved at compile time (the data
config, then a profile YAML such as configs/cluster.yaml, then ``--set`` overrides), as a
constant input of its first step, `configure`. A run's typed parameters (the data URI, the
trial budget, the label horizon, ...) are applied over it by `resolve`, which every later
step's settings come from. `config_version` is a short hash of the profile, shown as a
pipeline parameter so a KFP UI user sees which config an uploaded pipeline carries.

No KFP import here: the `configure` step imports this module in its container.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from mlstack.config import Settings, load_settings, parse_overrides

CLUSTER_PROFILE = Path("configs/cluster.yaml")
IMAGE_ROOT = "/app"  # the image's WORKDIR: where the bundled config and data live

# pipeline parameter -> the setting it overrides
PARAMETERS: dict[str, tuple[str, ...]] = {
    "data_uri": ("source", "uri"),
    "max_trials": ("tuning", "max_trials"),
    "horizon_days": ("features", "horizon_days"),
    "model_alias": ("serving", "model_alias"),
    "window_days": ("monitoring", "window_days"),
}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`: nested mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_profile(path: Path | str) -> dict[str, Any]:
    """The settings tree of a profile YAML (a partial settings file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"profile not found: {path}")
    tree = yaml.safe_load(path.read_text()) or {}
    if not isinstance(tree, dict):
        raise ValueError(f"profile {path} is not a mapping of settings")
    return tree


def profile_settings(
    config: Path | str | None,
    profile: Path | str | None,
    overrides: list[str] | None = None,
) -> Settings:
    """Settings layered: the data config YAML, then the profile YAML (none: skipped), then
    `overrides` (``section.key=value``). Nested keys merge; the profile and the overrides
    also win over ``MLSTACK_*`` environment variables."""
    layered = read_profile(profile) if profile is not None else {}
    layered = deep_merge(layered, parse_overrides(list(overrides or [])))
    return load_settings(config, layered)


def image_settings(settings: Settings) -> Settings:
    """The same settings with every path under this machine's project root moved under the
    image's working directory (a no-op for a profile that sets ``root: /app``)."""
    root = str(settings.root).rstrip("/")
    if root == IMAGE_ROOT:
        return settings

    def move(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: move(item) for key, item in value.items()}
        if isinstance(value, list):
            return [move(item) for item in value]
        if isinstance(value, str) and root in value:
            return value.replace(root + "/", IMAGE_ROOT + "/").replace(root, IMAGE_ROOT)
        return value

    return Settings.model_validate(move(settings.model_dump(mode="json")))


def config_version(profile_json: str) -> str:
    """A short content hash of the profile a pipeline carries."""
    return hashlib.sha256(profile_json.encode()).hexdigest()[:12]


def resolve(profile_json: str, config_version_: str = "", **parameters: Any) -> Settings:
    """The profile with a run's parameters applied (None: keep the profile's value).

    Raises ValueError naming the parameter when a value is not valid for its setting.
    """
    from pydantic import ValidationError

    if config_version_ and config_version_ != config_version(profile_json):
        raise ValueError(
            f"pipeline parameter config_version={config_version_!r} does not match the "
            f"config this pipeline carries ({config_version(profile_json)}): upload the "
            "pipeline compiled from that config, or leave config_version at its default"
        )
    tree = json.loads(profile_json)
    given = {name: value for name, value in parameters.items() if value is not None}
    unknown = set(given) - set(PARAMETERS) - {"snapshot_date"}
    if unknown:
        raise ValueError(f"unknown pipeline parameters: {sorted(unknown)}")
    for name, value in given.items():
        if name == "snapshot_date":
            _check_date(value)
            continue
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"pipeline parameter {name} is empty")
        *parents, leaf = PARAMETERS[name]
        node = tree
        for part in parents:
            node = node[part]
        node[leaf] = value
    try:
        return Settings.model_validate(tree)
    except ValidationError as err:
        raise ValueError(_explain(err, given)) from None


def _check_date(value: str) -> None:
    if value:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"pipeline parameter snapshot_date={value!r} is not a date (YYYY-MM-DD), "
                "nor empty for the latest snapshot"
            ) from None


def _explain(err: Any, given: dict[str, Any]) -> str:
    """The validation errors, each named by the pipeline parameter that caused it."""
    by_path = {PARAMETERS[name]: name for name in given if name in PARAMETERS}
    lines = []
    for problem in err.errors():
        loc = tuple(str(part) for part in problem["loc"])
        name = next((n for path, n in by_path.items() if loc[: len(path)] == path), None)
        if name is not None:
            lines.append(f"pipeline parameter {name}={given[name]!r}: {problem['msg']}")
        else:
            lines.append(f"setting {'.'.join(loc)}: {problem['msg']}")
    return "; ".join(lines)
