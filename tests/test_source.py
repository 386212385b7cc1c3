"""The project's own modules: a second top-level definition of a name silently replaces the first
(a helper added to actions/common.py once shadowed an older one of the same name and broke booking)."""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("actions", "bots", "channels", "console", "nlu", "scripts", "bench")


def defined_twice(source: str) -> list[str]:
    names = Counter(node.name for node in ast.parse(source).body
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
    return sorted(name for name, count in names.items() if count > 1)


def test_a_name_defined_twice_is_found():
    assert defined_twice("def a():\n    pass\n\n\nclass B:\n    pass\n\n\nasync def a():\n    pass\n") == ["a"]
    assert defined_twice("def a():\n    pass\n\n\ndef b():\n    pass\n") == []


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for package in PACKAGES
                                        for p in (ROOT / package).rglob("*.py")))
def test_no_module_defines_a_name_twice(path):
    assert defined_twice((ROOT / path).read_text(encoding="utf-8")) == []
