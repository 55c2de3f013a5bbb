"""The shape of the code, checked: no import cycles, modules of one idea, a CLI over the public
API, CompressAI's internals in its adapter (hyperprior.py, float64.py and its import, _compressai.py), and no
global state changed by importing sgacodec."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .support import ROOT, python

PACKAGE = ROOT / "sgacodec"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """'sgacodec.cli.encode' -> its file."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(name: str, path: Path) -> set[str]:
    """The sgacodec modules ``name`` imports, anywhere in the file (inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES}
    return found - {name}


MODULES = modules()


def test_no_import_cycles():
    graph = {name: imported(name, path) for name, path in MODULES.items()}
    # an import of a package's submodule runs the package's __init__ first
    for name in MODULES:
        for dep in list(graph[name]):
            parent = dep.rpartition(".")[0]
            if parent in MODULES and parent != name and not name.startswith(parent + "."):
                graph[name].add(parent)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_modules_hold_one_idea():
    """No module over MAX_LINES lines unless its docstring says why it needs them."""
    long = [f"{name}: {len(path.read_text().splitlines())} lines" for name, path in MODULES.items()
            if len(path.read_text().splitlines()) > MAX_LINES
            and "one idea" not in (ast.get_docstring(ast.parse(path.read_text())) or "")]
    assert not long, long


def test_the_cli_calls_only_the_public_api():
    for name, path in MODULES.items():
        if not name.startswith("sgacodec.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:  # from ..x import y: the library
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, f"{name} imports private {private} from {node.module}"
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                raise AssertionError(f"{name} uses the private attribute .{node.attr}")


# attributes with a leading underscore that are not CompressAI's (the standard library's)
NOT_COMPRESSAI = {"_exit", "_value2member_map_"}
PUBLIC_COMPRESSAI = {"compressai", "compressai.models", "compressai.losses", "compressai.entropy_models"}


COMPRESSAI_ADAPTER = {"sgacodec.network.latent_model", "sgacodec.network.coding_net",
                      "sgacodec.network.compressai_import"}


def test_compressai_internals_are_used_in_the_adapter_only():
    for name, path in MODULES.items():
        if name in COMPRESSAI_ADAPTER:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id == "self" or node.attr in NOT_COMPRESSAI:
                    continue
                raise AssertionError(f"{name}:{node.lineno} uses the private attribute .{node.attr}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("compressai"):
                assert node.module in PUBLIC_COMPRESSAI, f"{name} imports from {node.module}"
                assert not any(a.name.startswith("_") for a in node.names), f"{name}: {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("compressai") or alias.name in PUBLIC_COMPRESSAI, name


@pytest.mark.slow
def test_importing_sgacodec_changes_no_global_state():
    """No warnings filter (or anything else) is installed by importing any sgacodec module."""
    names = [n for n in MODULES if not n.endswith("__main__")]
    res = python("import warnings, torch, compressai.models\n"
                 "before = list(warnings.filters)\n"
                 f"import importlib\nfor name in {names!r}:\n    importlib.import_module(name)\n"
                 "from sgacodec.network.latent_model import LatentModel\n"
                 "assert list(warnings.filters) == before, set(warnings.filters) ^ set(before)\n")
    assert res.returncode == 0, res.stderr.decode()
