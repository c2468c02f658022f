"""The model registry: versions, their tags, and the `challenger` / `champion` aliases.

Aliases are the only promotion mechanism (model stages are deprecated). Every alias move is
recorded twice: as tags on the version (`<alias>_reason`, `<alias>_since`, `<alias>_actor`)
and as an event in the alias history, a bounded JSON list kept as a registered-model tag,
from which `rollback` finds the previous champion.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)

from mlstack.config.modelling import MlflowSettings
from mlstack.registry.tracking import LINEAGE_KEYS, MODEL_NAME

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "mlstack.alias_history"
HISTORY_MAX_EVENTS = 50
HISTORY_MAX_CHARS = 5000
"""SQL stores keep registered-model tag values in a VARCHAR(5000): the history must fit."""
REASON_MAX_CHARS = 200
"""Reason length kept per history event; the version tag keeps the full text."""
GATE_DECISION_TAG = "gate_decision"
METRIC_TAG_PREFIX = "test_"
KEY_METRICS = ("roc_auc", "pr_auc")

_NOT_FOUND = ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)
_ALREADY_EXISTS = ErrorCode.Name(RESOURCE_ALREADY_EXISTS)
_LOGGED_MODEL_PREFIX = "models:/m-"
_RUNS_PREFIX = "runs:/"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done as asked: unknown version, no history, ..."""


@dataclass(frozen=True)
class AliasChange:
    """Where an alias points after a move, where it pointed before, and what to tell the user."""

    model: str
    alias: str
    version: str | None
    previous: str | None
    changed: bool
    message: str


# -- versions -----------------------------------------------------------------------------


def register(
    client: MlflowClient,
    mlflow_settings: MlflowSettings,
    source: str,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """The version of the configured model for `source` (a model URI or a run id), tagged.

    A version `log_model` already registered for the same model is reused. The version is
    tagged with its run's lineage, `tags` (e.g. `gate_decision`) and the test-split
    `metrics` as `test_<name>`, so listing versions needs no run look-ups.
    """
    name = mlflow_settings.registered_model
    uri, run_id = _resolve_source(client, source)
    version = _version_for(client, name, uri, run_id) or _create_version(client, name, uri, run_id)
    version_tags = {**_run_lineage(client, run_id), **(tags or {}), **metric_tags(metrics or {})}
    for key, value in version_tags.items():
        client.set_model_version_tag(name, str(version.version), key, str(value))
    return client.get_model_version(name, str(version.version))


def metric_tags(metrics: Mapping[str, float]) -> dict[str, str]:
    """Finite test metrics as version tags: `roc_auc` -> `test_roc_auc`."""
    tags = {}
    for key, value in metrics.items():
        number = _as_float(value)
        if number is not None:
            tag = key if key.startswith(METRIC_TAG_PREFIX) else METRIC_TAG_PREFIX + key
            tags[tag] = repr(number)
    return tags


def get_version(client: MlflowClient, name: str, version: str | int) -> ModelVersion:
    """One version of a registered model; a `RegistryError` naming the known ones if absent."""
    _registered_model(client, name)
    if str(version).isdigit():
        try:
            return client.get_model_version(name, str(version))
        except MlflowException as err:
            if err.error_code != _NOT_FOUND:
                raise
    known = ", ".join(str(v.version) for v in sorted(versions_of(client, name), key=version_number))
    raise RegistryError(f"model {name!r} has no version {version} (versions: {known or 'none'})")


# -- aliases ------------------------------------------------------------------------------


def champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version the `champion` alias points at, or None (also when no model exists yet)."""
    try:
        version = aliases(client, name).get(CHAMPION)
    except RegistryError:
        return None
    return client.get_model_version(name, version) if version else None


def champion_metrics(client: MlflowClient, name: str) -> dict[str, float] | None:
    """The champion's test metrics by bare name (`pr_auc`), or None when there is no champion."""
    current = champion(client, name)
    if current is None:
        return None
    return version_metrics(client, current)


def set_alias(
    client: MlflowClient,
    name: str,
    alias: str,
    version: str | int,
    reason: str,
    actor: str = "pipeline",
    *,
    action: str = "set",
) -> AliasChange:
    """Point `alias` at `version`, recording why, when and by whom on the version and in the
    alias history. Pointing it where it already points changes nothing."""
    model_version = get_version(client, name, version)
    target = str(model_version.version)
    previous = aliases(client, name).get(alias)
    if previous == target:
        message = f"{name} version {target} is already {alias}; nothing changed"
        return AliasChange(name, alias, target, previous, changed=False, message=message)
    client.set_registered_model_alias(name, alias, target)
    now = _now()
    for key, value in {"reason": reason, "since": now, "actor": actor}.items():
        client.set_model_version_tag(name, target, f"{alias}_{key}", value)
    if f"{alias}_until" in model_version.tags:
        client.delete_model_version_tag(name, target, f"{alias}_until")
    if previous is not None:
        client.set_model_version_tag(name, previous, f"{alias}_until", now)
    _append_history(client, name, _event(alias, action, target, previous, reason, actor, now))
    message = f"{name} {alias}: version {previous or '-'} -> {target} ({reason})"
    log.info(message)
    return AliasChange(name, alias, target, previous, changed=True, message=message)


def clear_alias(
    client: MlflowClient, name: str, alias: str, reason: str, actor: str = "pipeline"
) -> AliasChange:
    """Remove `alias` from the model, recording it in the alias history."""
    previous = aliases(client, name).get(alias)
    if previous is None:
        message = f"{name} has no {alias}; nothing changed"
        return AliasChange(name, alias, None, None, changed=False, message=message)
    client.delete_registered_model_alias(name, alias)
    now = _now()
    client.set_model_version_tag(name, previous, f"{alias}_until", now)
    _append_history(client, name, _event(alias, "clear", None, previous, reason, actor, now))
    message = f"{name} {alias}: version {previous} -> - ({reason})"
    return AliasChange(name, alias, None, previous, changed=True, message=message)


def promote(
    client: MlflowClient,
    mlflow_settings: MlflowSettings,
    version: str | int,
    reason: str,
    actor: str = "pipeline",
) -> AliasChange:
    """Make `version` the champion; a challenger alias on it is cleared, being promoted."""
    name = mlflow_settings.registered_model
    change = set_alias(client, name, CHAMPION, version, reason, actor, action="promote")
    if aliases(client, name).get(CHALLENGER) == change.version:
        clear_alias(client, name, CHALLENGER, f"promoted to {CHAMPION}", actor)
    return change


def rollback(
    client: MlflowClient, mlflow_settings: MlflowSettings, reason: str, actor: str = "pipeline"
) -> AliasChange:
    """Give the champion alias back to the previous champion in the alias history."""
    name = mlflow_settings.registered_model
    current = aliases(client, name).get(CHAMPION)
    target = rollback_target(alias_history(client, name), current)
    if target is None:
        raise RegistryError(
            f"cannot roll back {name}: the alias history has no champion before "
            f"{'version ' + current if current else 'now'}"
        )
    return set_alias(client, name, CHAMPION, target, reason, actor, action="rollback")


def alias_history(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """The recorded alias events of a model, oldest first."""
    raw = _registered_model(client, name).tags.get(HISTORY_TAG)
    if not raw:
        return []
    try:
        events = json.loads(raw)
    except json.JSONDecodeError as err:
        raise RegistryError(f"the alias history of {name} is not valid JSON: {err}") from err
    return events if isinstance(events, list) else []


def rollback_target(history: list[dict[str, Any]], current: str | None) -> str | None:
    """The champion before `current`: promotions push onto a stack, rollbacks pop it."""
    stack = _champion_stack(history)
    if stack and stack[-1] == current:
        stack.pop()
    return stack[-1] if stack else None


def bounded_history(events: list[dict[str, Any]]) -> str:
    """The newest events as JSON, within `HISTORY_MAX_EVENTS` and `HISTORY_MAX_CHARS`."""
    kept = events[-HISTORY_MAX_EVENTS:]
    text = json.dumps(kept, separators=(",", ":"))
    while len(text) > HISTORY_MAX_CHARS and len(kept) > 1:
        kept = kept[1:]
        text = json.dumps(kept, separators=(",", ":"))
    return text


# -- helpers ------------------------------------------------------------------------------
def version_metrics(client: MlflowClient, version: ModelVersion) -> dict[str, float]:
    """Test metrics from the version's tags, else from its run's `test_*` metrics."""
    metrics = _strip_prefix(version.tags)
    if all(key in metrics for key in KEY_METRICS) or not version.run_id:
        return metrics
    try:
        run_metrics = client.get_run(version.run_id).data.metrics
    except MlflowException:
        return metrics
    return {**_strip_prefix(run_metrics), **metrics}


def _strip_prefix(values: Mapping[str, Any]) -> dict[str, float]:
    stripped = {}
    for key, value in values.items():
        number = _as_float(value)
        if key.startswith(METRIC_TAG_PREFIX) and number is not None:
            stripped[key[len(METRIC_TAG_PREFIX) :]] = number
    return stripped


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _registered_model(client: MlflowClient, name: str) -> RegisteredModel:
    try:
        return client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code == _NOT_FOUND:
            raise RegistryError(f"no registered model named {name!r}: register one first") from err
        raise


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(v) for alias, v in _registered_model(client, name).aliases.items()}


def versions_of(
    client: MlflowClient, name: str, run_id: str | None = None
) -> Iterator[ModelVersion]:
    """Every version of `name` (of one run, with `run_id`), page by page."""
    query = f"name = '{name}'" + (f" and run_id = '{run_id}'" if run_id else "")
    token = None
    while True:
        page = client.search_model_versions(query, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def version_number(version: ModelVersion) -> int:
    """The version as a number, to sort by."""
    return int(version.version)


def _resolve_source(client: MlflowClient, source: str) -> tuple[str, str | None]:
    """A model URI and the run that produced it, from a model URI or a run id."""
    if source.startswith(_LOGGED_MODEL_PREFIX):
        model_id = source.removeprefix("models:/").split("/", 1)[0]
        return source, client.get_logged_model(model_id).source_run_id
    if source.startswith(_RUNS_PREFIX):
        run_id, _, name = source.removeprefix(_RUNS_PREFIX).partition("/")
        return _logged_model_uri(client, run_id, name or MODEL_NAME), run_id
    if ":" not in source:
        return _logged_model_uri(client, source, MODEL_NAME), source
    return source, None


def _logged_model_uri(client: MlflowClient, run_id: str, name: str) -> str:
    """The `models:/<id>` URI of the model called `name` (or the only model) logged by a run."""
    outputs = client.get_run(run_id).outputs
    model_ids = [output.model_id for output in (outputs.model_outputs if outputs else [])]
    models = [client.get_logged_model(model_id) for model_id in model_ids]
    named = [model for model in models if model.name == name]
    if not named and len(models) == 1:
        named = models
    if len(named) != 1:
        found = ", ".join(model.name for model in models) or "none"
        raise RegistryError(f"run {run_id} has no single model named {name!r} (models: {found})")
    return f"models:/{named[0].model_id}"


def _version_for(
    client: MlflowClient, name: str, uri: str, run_id: str | None
) -> ModelVersion | None:
    try:
        return next((v for v in versions_of(client, name, run_id) if v.source == uri), None)
    except MlflowException as err:
        if err.error_code == _NOT_FOUND:
            return None
        raise


def _create_version(client: MlflowClient, name: str, uri: str, run_id: str | None) -> ModelVersion:
    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != _ALREADY_EXISTS:
            raise
    model_id = uri.removeprefix("models:/") if uri.startswith(_LOGGED_MODEL_PREFIX) else None
    return client.create_model_version(name, source=uri, run_id=run_id, model_id=model_id)


def _run_lineage(client: MlflowClient, run_id: str | None) -> dict[str, str]:
    if not run_id:
        return {}
    tags = client.get_run(run_id).data.tags
    return {key: tags[key] for key in LINEAGE_KEYS if key in tags}


def _event(
    alias: str,
    action: str,
    version: str | None,
    previous: str | None,
    reason: str,
    actor: str,
    at: str,
) -> dict[str, Any]:
    return {
        "at": at,
        "alias": alias,
        "action": action,
        "version": version,
        "previous": previous,
        "actor": actor,
        "reason": reason[:REASON_MAX_CHARS],
    }


def _append_history(client: MlflowClient, name: str, event: dict[str, Any]) -> None:
    text = bounded_history([*alias_history(client, name), event])
    client.set_registered_model_tag(name, HISTORY_TAG, text)


def _champion_stack(history: list[dict[str, Any]]) -> list[str]:
    stack: list[str] = []
    for event in history:
        if event.get("alias") != CHAMPION:
            continue
        version, previous = event.get("version"), event.get("previous")
        if event.get("action") == "rollback" and stack and stack[-1] == previous:
            stack.pop()
        if version is not None and (not stack or stack[-1] != version):
            stack.append(version)
    return stack


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
