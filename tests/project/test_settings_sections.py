"""Functions take the settings they use: a function that reads one section of the settings
(`settings.gate`, `settings.object_store`, ...) takes that section, not the whole tree, so its
signature says what it depends on and a test builds only that. The whole `Settings` stays for
functions that read several sections, or hand the tree on (steps, entry points). The CLI is
exempt: its commands load the settings and hand them on. Checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import BaseModel

from mlstack.config import Settings
from tests.support.paths import PROJECT

pytestmark = pytest.mark.unit

SECTIONS = frozenset(
    name
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
)


def one_section_readers(path: Path, tree: ast.Module) -> list[str]:
    """Functions with a `Settings` parameter of which they read exactly one section and
    nothing else (no other attribute, not passed on whole)."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        arguments = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
        for parameter in arguments:
            if parameter.annotation is None or ast.unparse(parameter.annotation) != "Settings":
                continue
            read, whole = set(), False
            for node in ast.walk(fn):
                if not (isinstance(node, ast.Name) and node.id == parameter.arg):
                    continue
                parent = parents[node]
                if isinstance(parent, ast.Attribute) and parent.value is node:
                    read.add(parent.attr)
                else:
                    whole = True
            if not whole and len(read) == 1 and read <= SECTIONS:
                section = next(iter(read))
                found.append(
                    f"{path.relative_to(PROJECT)}:{fn.lineno} {fn.name} reads only "
                    f"settings.{section}: take the section"
                )
    return found


def library_modules() -> list[Path]:
    return [p for p in sorted((PROJECT / "mlstack").rglob("*.py")) if "cli" not in p.parts]


def test_functions_take_the_one_section_they_read() -> None:
    found = [
        line
        for path in library_modules()
        for line in one_section_readers(path, ast.parse(path.read_text()))
    ]
    assert not found, "\n".join(found)


def test_the_check_finds_a_function_that_reads_one_section(tmp_path: Path) -> None:
    source = (
        "def margin(settings: Settings) -> float:\n    return settings.gate.margin\n\n"
        "def both(settings: Settings) -> str:\n"
        "    return settings.gate.metric + settings.tuning.objective\n\n"
        "def hands_on(settings: Settings) -> object:\n    return other(settings)\n"
    )
    path = PROJECT / "mlstack" / "example.py"  # named as if in the library; not written
    found = one_section_readers(path, ast.parse(source))
    assert found == ["mlstack/example.py:1 margin reads only settings.gate: take the section"]
