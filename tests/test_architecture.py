"""The shape of the code, checked: no import cycles, modules of one idea (a size gate with an
explicit allowlist), a CLI over the public API only, CompressAI (and its internals) in its
adapter (sgacodec.network) only, the environment read in config only, and no global state changed
by importing sgacodec. Each rule is a function over one module's source that returns its
violations, so that the rules' own tests below show each escape is caught."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .support import ROOT, python

PACKAGE = ROOT / "sgacodec"
MAX_LINES = 400
# Modules allowed over MAX_LINES, each with its reason (none today: add one only with a reason).
LONG_MODULES: dict[str, str] = {}
ADAPTER = "sgacodec.network"  # the only package that imports CompressAI or touches its internals
CONFIG = "sgacodec.config"  # the only module that reads the environment
# attributes with a leading underscore that are not CompressAI's (the standard library's)
NOT_COMPRESSAI = {"_exit", "_value2member_map_"}


def modules() -> dict[str, Path]:
    """'sgacodec.cli.encode' -> its file."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = modules()


def package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def absolute(node: ast.ImportFrom, package: str) -> str:
    """The module an ImportFrom imports from, absolute."""
    if not node.level:
        return node.module or ""
    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(anchor + ([node.module] if node.module else []))


def imported(name: str, path: Path) -> set[str]:
    """The sgacodec modules ``name`` imports, anywhere in the file (inside functions too)."""
    package = package_of(name, path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = absolute(node, package)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES}
    return found - {name}


def public_names() -> dict[str, set[str]]:
    """The public API the CLI may use: sgacodec's ``__all__`` and sgacodec.evaluation's."""
    import sgacodec
    import sgacodec.evaluation

    return {"sgacodec": set(sgacodec.__all__), "sgacodec.evaluation": set(sgacodec.evaluation.__all__)}


# --- the rules: (module name, source) -> violations -------------------------------------------

def cli_import_violations(name: str, source: str, public: dict[str, set[str]], is_package: bool = False) -> list[str]:
    """The CLI imports from the library only names of its public API (``public``: module -> names),
    from sgacodec or sgacodec.evaluation, never a module of it (``from ..codec import x``)."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = absolute(node, package)
            if module.startswith("sgacodec.cli") or not module.startswith("sgacodec"):
                continue
            allowed = public.get(module)
            if allowed is None:
                found.append(f"{name} imports from {module}, which is not the public API")
                continue
            found += [f"{name} imports {a.name} from {module}, not a public name" for a in node.names
                      if a.name not in allowed]
        elif isinstance(node, ast.Import):
            found += [f"{name} imports the module {a.name}" for a in node.names
                      if a.name.startswith("sgacodec.") and not a.name.startswith("sgacodec.cli")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"{name}:{node.lineno} uses the private attribute .{node.attr}")
    return found


def private_by_name(node: ast.AST) -> str | None:
    """getattr(x, "_private"), hasattr, setattr, delattr: the private name reached by a string."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
        text = node.args[1].value
        if text.startswith("_") and not text.startswith("__"):
            return text
    return None


def compressai_violations(name: str, source: str) -> list[str]:
    """Outside the adapter (sgacodec.network): no CompressAI import at all, no private attribute
    of anything but self (by attribute or by name), no private name imported from anywhere."""
    if name == ADAPTER or name.startswith(ADAPTER + "."):
        return []
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{name} imports {a.name}" for a in node.names if a.name.split(".")[0] == "compressai"]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] == "compressai" and not node.level:
                found.append(f"{name} imports from {node.module}")
            found += [f"{name} imports the private {a.name} from {node.module}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id == "self") and node.attr not in NOT_COMPRESSAI:
                found.append(f"{name}:{node.lineno} uses the private attribute .{node.attr}")
        elif private_by_name(node):
            found.append(f"{name}:{node.lineno} reaches the private {private_by_name(node)!r} by name")
    return found


def environment_violations(name: str, source: str) -> list[str]:
    """Only config reads the environment (os.environ, os.getenv); everything else asks config."""
    if name == CONFIG:
        return []
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb") \
                and isinstance(node.value, ast.Name) and node.value.id == "os":
            found.append(f"{name}:{node.lineno} reads os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os" \
                and any(a.name in ("environ", "getenv") for a in node.names):
            found.append(f"{name}:{node.lineno} imports the environment from os")
    return found


def size_violations(name: str, source: str, allowed: dict[str, str] = LONG_MODULES) -> list[str]:
    """No module over MAX_LINES lines unless the allowlist names it, with its reason (a docstring
    saying "one idea" is no exemption)."""
    lines = len(source.splitlines())
    return [f"{name}: {lines} lines (at most {MAX_LINES})"] if lines > MAX_LINES and name not in allowed else []


# --- the rules applied to the package ---------------------------------------------------------

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
    found = [v for name, path in MODULES.items() for v in size_violations(name, path.read_text())]
    assert not found, found
    assert all(LONG_MODULES.values()), "each allowed long module needs its reason"


def test_the_cli_calls_only_the_public_api():
    public = public_names()
    found = [v for name, path in MODULES.items() if name.startswith("sgacodec.cli")
             for v in cli_import_violations(name, path.read_text(), public, path.name == "__init__.py")]
    assert not found, found


def test_the_public_api_resolves():
    """Every name of sgacodec.__all__ and sgacodec.evaluation.__all__ exists."""
    import sgacodec
    import sgacodec.evaluation

    for module in (sgacodec, sgacodec.evaluation):
        missing = [n for n in module.__all__ if getattr(module, n, None) is None]
        assert not missing, (module.__name__, missing)


def test_compressai_is_used_in_the_adapter_only():
    found = [v for name, path in MODULES.items() for v in compressai_violations(name, path.read_text())]
    assert not found, found


def test_the_environment_is_read_in_config_only():
    found = [v for name, path in MODULES.items() for v in environment_violations(name, path.read_text())]
    assert not found, found


# --- the rules' own tests: each escape the rules exist for is caught --------------------------

PUBLIC = {"sgacodec": {"encode", "config", "load_model"}, "sgacodec.evaluation": {"aggregate"}}


@pytest.mark.parametrize("source", [
    "from ..hyperprior import LatentModel",  # a library module, not the public API
    "from ..network.latent_model import LatentModel",
    "from sgacodec.codec import _coding_pool",
    "from sgacodec.codec.encoder import encode_batch",
    "from .. import _coding_pool",  # a private name of the package itself
    "from .. import code_latents",  # a name the public API does not list
    "from ..evaluation.bd import fmt",  # evaluation's modules: only its public names
    "import sgacodec.codec.decoder",
    "def f(x):\n    return x._private",
])
def test_cli_escapes_are_caught(source):
    assert cli_import_violations("sgacodec.cli.encode", source, PUBLIC)


@pytest.mark.parametrize("source", [
    "from .. import encode, config",
    "from ..evaluation import aggregate",
    "from sgacodec import load_model",
    "from .options import model_options",
])
def test_the_public_api_passes(source):
    assert not cli_import_violations("sgacodec.cli.encode", source, PUBLIC)


@pytest.mark.parametrize("source", [
    "import compressai.models",
    "import compressai",
    "from compressai.entropy_models import EntropyBottleneck",
    "from compressai.zoo import image_models",
    "def f(eb):\n    return getattr(eb, '_quantized_cdf')",
    "def f(eb):\n    setattr(eb, '_offset', 1)",
    "def f(eb):\n    return eb._quantized_cdf",
    "from sgacodec.codec.encoder import _coding_pool",
])
def test_compressai_escapes_are_caught(source):
    for module in ("sgacodec.cli.encode", "sgacodec.codec.encoder"):
        assert compressai_violations(module, source)
    assert not compressai_violations("sgacodec.network.latent_model", source)


def test_self_and_dunder_attributes_are_not_compressai_internals():
    assert not compressai_violations("sgacodec.codec.encoder", "class A:\n    def f(self):\n        return self._x, "
                                     "type(self).__name__, getattr(self, '__dict__')")


@pytest.mark.parametrize("source", ["import os\nos.environ.get('X')", "import os\nos.getenv('X')",
                                    "from os import environ", "import os\nx = os.environ['X']"])
def test_environment_escapes_are_caught(source):
    assert environment_violations("sgacodec.codec.memory", source)
    assert not environment_violations("sgacodec.config", source)


def test_a_long_module_is_caught_whatever_its_docstring_says():
    source = '"""A module of one idea, long because its parts are read together."""\n' + "x = 1\n" * MAX_LINES
    assert size_violations("sgacodec.codec.targets", source)
    assert not size_violations("sgacodec.codec.targets", source, {"sgacodec.codec.targets": "a reason"})
    assert not size_violations("sgacodec.codec.targets", "x = 1\n" * MAX_LINES)


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
