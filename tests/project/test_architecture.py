"""Rules of the code's shape that a reader relies on, checked on the source (the layer order
itself is import-linter's contract in pyproject.toml, run by `make lint`):

- no private name (`_x`) is imported from, or read off, another of our modules;
- no module of the library is over 400 lines;
- imports sit at the top of a module. Inside a function only imports kept lazy on purpose
  stay: third-party ones (heavy or optional: MLflow, Feast, KServe, Evidently, …), and ours
  only where the module wraps such a library, said by a `lazy` comment on the import or its
  group (a step that does not use MLflow does not pay for importing it). Two exemptions: KFP
  components (KFP ships a component's function source alone, so its imports must be inside
  it) and the CLI, whose commands import what they run so that `mlstack --help` loads none
  of it (tests/project/test_cli.py checks that).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import PROJECT

pytestmark = pytest.mark.unit

OURS = ("mlstack", "components", "pipelines")
MAX_LINES = 400


def _modules(*packages: str) -> Iterator[tuple[Path, ast.Module]]:
    for package in packages:
        for path in sorted((PROJECT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(), filename=str(path))


def _ours(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in OURS


def private_crossings(path: Path, tree: ast.Module) -> list[str]:
    """`from our.module import _x`, and `module._x` for a module of ours imported by name."""
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _ours(node.module):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {node.module}.{alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names if _ours(a.name))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            found.append(f"{path.name}:{node.lineno} reads {node.value.id}.{node.attr}")
    return found


def inner_imports_of_ours(path: Path, tree: ast.Module, lines: list[str]) -> list[str]:
    """Imports of our modules inside functions, but for groups marked `lazy` (a group: imports
    with at most one blank line between them)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        imports = sorted(
            (sub for sub in ast.walk(node) if isinstance(sub, ast.Import | ast.ImportFrom)),
            key=lambda sub: sub.lineno,
        )
        groups: list[list[ast.Import | ast.ImportFrom]] = []
        for sub in imports:
            if groups and sub.lineno - (groups[-1][-1].end_lineno or 0) <= 2:
                groups[-1].append(sub)
            else:
                groups.append([sub])
        for group in groups:
            if any("lazy" in lines[sub.lineno - 1] for sub in group):
                continue
            for sub in group:
                names = (
                    [sub.module] if isinstance(sub, ast.ImportFrom) else [a.name for a in sub.names]
                )
                found += [f"{path.name}:{sub.lineno} {n}" for n in names if _ours(n)]
    return found


def test_no_private_name_crosses_a_module() -> None:
    found = [hit for path, tree in _modules(*OURS) for hit in private_crossings(path, tree)]
    assert found == []


def test_the_check_finds_a_private_import(tmp_path: Path) -> None:
    source = "from mlstack.features import store\nfrom mlstack.x import _y\nstore._z()\n"
    found = private_crossings(tmp_path / "m.py", ast.parse(source))
    assert found == ["m.py:2 imports mlstack.x._y", "m.py:3 reads store._z"]


def test_no_library_module_is_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(PROJECT)): len(path.read_text().splitlines())
        for path, _ in _modules("mlstack")
    }
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_our_modules_are_imported_at_the_top() -> None:
    found = [
        hit
        for path, tree in _modules("mlstack", "pipelines")
        if "cli" not in path.relative_to(PROJECT).parts
        for hit in inner_imports_of_ours(path, tree, path.read_text().splitlines())
    ]
    assert found == []


def test_the_check_finds_an_unmarked_inner_import(tmp_path: Path) -> None:
    source = (
        "def f():\n"
        "    import mlflow  # lazy on purpose: slow\n"
        "    from mlstack.registry import models\n"
        "\n"
        "\n"
        "def g():\n"
        "    from mlstack.features import store\n"
    )
    found = inner_imports_of_ours(tmp_path / "m.py", ast.parse(source), source.splitlines())
    assert found == ["m.py:7 mlstack.features"]
