"""The documentation names things that exist: every test a page names is a test of the suite."""

from __future__ import annotations

import ast
import re

from .support import ROOT


def defined_tests() -> set[str]:
    names = set()
    for path in (ROOT / "tests").glob("*.py"):
        tree = ast.parse(path.read_text())
        names |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    return names


def test_every_test_the_docs_name_exists():
    known = defined_tests()
    named = {(page.name, name) for page in (ROOT / "docs").glob("*.md")
             for name in re.findall(r"(?<![/\w])(test_[a-z0-9_]+)\b(?!\.py)", page.read_text())}
    missing = sorted(f"{page}: {name}" for page, name in named if name not in known)
    assert not missing, missing


def test_every_test_file_the_docs_name_exists():
    named = {(page.name, path) for page in (ROOT / "docs").glob("*.md")
             for path in re.findall(r"\b(tests/[\w/]+\.py)\b", page.read_text())}
    missing = sorted(f"{page}: {path}" for page, path in named if not (ROOT / path).exists())
    assert not missing, missing
