"""The function package stays readable by the figures docs/clip-engine.md states: no module
of the clip engine over 450 lines, no function over 60 lines or above radon's grade C
(complexity 20), and every module's maintainability index 20 or more."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from radon.complexity import cc_visit
from radon.metrics import mi_visit

PACKAGE = Path(__file__).parents[2] / "functions" / "clipsearch" / "clipsearch"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_ENGINE_LINES = 450
MAX_FUNCTION_LINES = 60
MAX_COMPLEXITY = 20  # the top of grade C
MIN_MAINTAINABILITY = 20.0


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_the_package_is_where_the_figures_look():
    assert len(MODULES) > 40
    assert PACKAGE / "clipping" / "cutter.py" in MODULES


@pytest.mark.parametrize("path", sorted((PACKAGE / "clipping").glob("*.py")), ids=_name)
def test_no_clip_engine_module_is_over_450_lines(path: Path):
    assert len(path.read_text().splitlines()) <= MAX_ENGINE_LINES


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_every_function_is_short_and_at_most_grade_c(path: Path):
    code = path.read_text()
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
    tangled = [f"{b.name} ({b.complexity})" for b in _blocks(code) if b.complexity > MAX_COMPLEXITY]
    assert tangled == []


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_every_module_keeps_a_maintainability_index_of_20(path: Path):
    assert mi_visit(path.read_text(), multi=True) >= MIN_MAINTAINABILITY


def _blocks(code: str) -> list[Any]:
    """Functions and methods, each once (radon lists a class's methods under it too)."""
    out = []
    for block in cc_visit(code):
        out.append(block)
        out.extend(getattr(block, "methods", []))
        out.extend(getattr(block, "closures", []))
    return out
