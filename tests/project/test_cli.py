"""The `mlstack` command's shape: its command paths, the one error mapping every command
goes through, and a `--help` that loads none of the heavy libraries."""

from __future__ import annotations

import importlib
import subprocess
import sys
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from mlstack.cli import app
from mlstack.cli.errors import KNOWN_ERRORS, handle_errors, is_known
from mlstack.failures import ExplainedError
from mlstack.monitoring import MonitoringError
from tests.support.paths import CONFIG, PROJECT

COMMANDS = [
    "config",
    "run",
    "synth",
    "models",
    "promote",
    "rollback",
    "serve",
    "score",
    "tune-trial",
    "compile",
    "manifests",
    "rollout",
    "submit",
    "schedule",
    "drift",
    "replay",
    "materialize",
]


@pytest.mark.unit
def test_every_command_sits_on_the_root_in_the_order_help_lists_it() -> None:
    group = typer.main.get_command(app)
    with typer.Context(group) as ctx:
        assert group.list_commands(ctx) == COMMANDS


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(KNOWN_ERRORS))
def test_each_known_error_names_an_exception_class(name: str) -> None:
    module, _, cls = name.rpartition(".")
    found = getattr(importlib.import_module(module), cls)
    assert isinstance(found, type) and issubclass(found, Exception)
    assert is_known(found("x"))


def failing_app(error: BaseException) -> typer.Typer:
    """A root with the global --verbose and one command that raises `error`."""
    demo = typer.Typer()

    @demo.callback()
    def main(ctx: typer.Context, verbose: Annotated[bool, typer.Option("-v")] = False) -> None:
        ctx.obj = {"verbose": verbose}

    @demo.command()
    @handle_errors
    def fail(ctx: typer.Context) -> None:
        raise error

    return demo


@pytest.mark.unit
@pytest.mark.parametrize(
    "error",
    [
        MonitoringError("missing reference: no champion yet"),
        ExplainedError("missing reference: no champion yet"),
        ValueError("missing reference: no champion yet"),
        FileNotFoundError("missing reference: no champion yet"),
    ],
)
def test_a_known_error_ends_the_command_with_one_line_and_exit_code_1(
    error: Exception,
) -> None:
    result = CliRunner().invoke(failing_app(error), ["fail"])
    assert result.exit_code == 1
    assert result.output == "error: missing reference: no champion yet\n"

    verbose = CliRunner().invoke(failing_app(error), ["-v", "fail"])
    assert verbose.exit_code == 1
    assert "Traceback" in verbose.output
    assert verbose.output.endswith("error: missing reference: no champion yet\n")


@pytest.mark.unit
def test_a_usage_error_keeps_exit_code_2_and_a_bug_its_traceback() -> None:
    usage = CliRunner().invoke(failing_app(typer.BadParameter("say why")), ["fail"])
    assert usage.exit_code == 2 and "say why" in usage.output and "Usage:" in usage.output

    bug = CliRunner().invoke(failing_app(KeyError("window")), ["fail"])
    assert isinstance(bug.exception, KeyError)
    assert "error:" not in bug.output


@pytest.mark.unit
def test_a_settings_error_is_a_known_error(tmp_path) -> None:
    missing = tmp_path / "none.yaml"
    result = CliRunner().invoke(app, ["--config", str(missing), "config"])
    assert result.exit_code == 1
    assert result.output == f"error: config file not found: {missing}\n"


@pytest.mark.component
def test_help_loads_no_heavy_library() -> None:
    heavy = ("mlflow", "kfp", "kubernetes", "feast", "pandas", "sklearn", "kserve", "fsspec")
    code = (
        "import sys\nfrom mlstack.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    assert done.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.unit
def test_the_manifests_command_writes_what_the_repository_holds(tmp_path) -> None:
    config = CONFIG
    result = CliRunner().invoke(
        app, ["--config", str(config), "manifests", "--out-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    names = ["katib-experiment.yaml", "inference-service.yaml", "cronjobs.yaml", "chart.yaml"]
    assert [f"wrote {tmp_path / name}" for name in names] == [
        line for line in result.output.splitlines() if line.startswith("wrote ")
    ]
    for name in names:
        assert (tmp_path / name).read_text() == (PROJECT / "manifests" / name).read_text(), name
