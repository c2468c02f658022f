"""Every command in the README's cluster section parses: `helm install/upgrade --set ...`
values render and pass the chart's schema, `mlstack ...` lines are valid invocations of the
CLI, and the quoted schema error is the one the chart gives."""

from __future__ import annotations

import re
import shlex
from typing import Any

import helm_python as helm
import pytest
import typer

from mlstack.cli import app
from mlstack.config import load_settings
from mlstack.deploy.chart import objects, render
from tests.support.paths import CONFIG, PROJECT

pytestmark = pytest.mark.unit


def _section() -> str:
    text = (PROJECT / "README.md").read_text()
    start = text.index("## On a cluster")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", _section(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def _merge(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def test_the_section_has_the_promised_commands() -> None:
    firsts = {" ".join(shlex.split(c)[:2]) for c in _commands()}
    assert {"docker build", "helm install", "helm upgrade", "curl -H"} <= firsts
    verbs = {w for c in _commands() if c.startswith("mlstack") for w in shlex.split(c)}
    assert {"submit", "schedule", "rollout", "promote", "rollback"} <= verbs


@pytest.mark.parametrize("command", [c for c in _commands() if c.startswith("helm ")])
def test_helm_commands_render(command: str) -> None:
    args = shlex.split(command)
    assert args[2:4] == ["mlstack", "helm/mlstack"] and (PROJECT / args[3]).is_dir()
    values: dict[str, Any] = {}
    for i, arg in enumerate(args):
        if arg == "--set":
            _merge(values, helm.parse_set_string(args[i + 1]))
    docs = objects(render(values, namespace=args[args.index("--namespace") + 1]))
    assert any(d["kind"] == "InferenceService" for d in docs)


@pytest.mark.parametrize("command", [c for c in _commands() if c.startswith("mlstack ")])
def test_mlstack_commands_parse(command: str) -> None:
    group = typer.main.get_command(app)
    args = shlex.split(command)[1:]
    with group.make_context("mlstack", args, resilient_parsing=False) as ctx:
        protected = getattr(ctx, "_protected_args", None) or ctx.protected_args
        name, sub, rest = group.resolve_command(ctx, [*protected, *ctx.args])
        assert name in {"submit", "schedule", "rollout", "promote", "rollback", "compile"}
        sub.make_context(name, rest, parent=ctx)  # raises on an unknown option or bad value


def test_curl_path_is_the_served_model() -> None:
    (curl,) = [c for c in _commands() if c.startswith("curl")]
    settings = load_settings(CONFIG, {"root": str(PROJECT)})
    assert f"/v1/models/{settings.serving.model_name}:predict" in curl
    assert f"get isvc {settings.deploy.inference_service}" in curl


def test_quoted_schema_error_is_real() -> None:
    quoted = re.search(r"`(at '/inferenceService[^`]+)`", _section())
    assert quoted is not None
    with pytest.raises(helm.HelmValuesError, match=re.escape(quoted[1])):
        render({"inferenceService": {"canaryTrafficPercent": 150}})


def test_make_targets_exist() -> None:
    makefile = (PROJECT / "Makefile").read_text()
    for command in [c for c in _commands() if c.startswith("make ")]:
        for target in shlex.split(command)[1:]:
            assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target


def test_the_rehearsal_compile_is_the_one_the_rehearsal_runs() -> None:
    """The section's `mlstack compile --set ...` line points the cluster profile at the same
    settings the rehearsal sets (tests/rehearsal/services.py), with loopback endpoints."""
    from tests.rehearsal.services import Services

    commands = _commands()
    assert {"make image", "make rehearse"} <= set(commands)
    (line,) = [c for c in commands if c.startswith("mlstack compile")]
    args = shlex.split(line)
    shown = {args[i + 1].split("=", 1)[0] for i, a in enumerate(args) if a == "--set"}
    loopback = Services(
        s3="http://127.0.0.1:9000",
        mlflow="http://127.0.0.1:5000",
        redis="127.0.0.1:6379",
        workdir=PROJECT,
    )
    assert shown == {pair.split("=", 1)[0] for pair in loopback.overrides()}
    assert all(
        "127.0.0.1" in args[i + 1] or "s3://" in args[i + 1]
        for i, a in enumerate(args)
        if a == "--set"
    )
