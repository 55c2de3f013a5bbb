"""Importing CompressAI's models, entropy models and rANS coder without the rest of its package.

``import compressai`` runs ``compressai/__init__.py``, which imports every subpackage at once:
datasets and transforms (through ``compressai.registry``: torchvision, torch_geometric, which
imports ``torch._dynamo``, pandas), point-cloud code, and ``compressai.entropy_models``, which
imports scipy.stats. No decode or encode uses any of these but scipy.stats, and that only in
``GaussianConditional.update()``; together they cost more CPU than importing torch itself
(docs/performance.md, "Start-up and decode").

``import_compressai()`` imports the same modules of the same installed CompressAI, less the eager imports:

- ``compressai/__init__.py`` and ``compressai/registry/__init__.py`` run as written except their
  one statement importing subpackages (``from compressai import (datasets, ...)`` and
  ``from .transforms import ...``); each package gets a module ``__getattr__`` (PEP 562) that
  imports a skipped name on first use, so ``compressai.zoo``, ``compressai.datasets`` or
  ``compressai.registry.TRANSFORMS`` still work, loaded when asked for;
- ``compressai.models`` then imports as usual; while ``compressai.entropy_models`` runs its
  ``import scipy.stats``, that name stands for an empty placeholder module, removed right after,
  so scipy.stats is imported by scipy's own lazy submodule loading the first time
  ``update()`` uses it.

It does so only for the CompressAI versions whose package layout was checked
(``COMPRESSAI_CHECKED``), and only when each statement it leaves out is found exactly as expected;
with any other version or layout, or when compressai is already imported, it is the plain
``import compressai.models``. The modules of sgacodec.network are the only ones that touch
CompressAI's internals (tests/test_architecture.py).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import threading
import types
import warnings

# CompressAI versions whose package layout this module, and the private APIs the network package
# uses, were checked against: other versions take the plain import.
COMPRESSAI_CHECKED = ("1.2.6", "1.2.8")

_lock = threading.Lock()
_how: str | None = None  # "partial" or "full": how compressai was imported by import_compressai()


def import_compressai() -> types.ModuleType:
    """``compressai.models``, imported without CompressAI's unused subpackages where possible."""
    global _how
    with _lock:
        if _how is None:
            how = "full"
            if "compressai" not in sys.modules and installed_version() in COMPRESSAI_CHECKED:
                try:
                    _import_partially()
                    how = "partial"
                except Exception:  # another layout, or any surprise: the plain
                    _forget_compressai()  # import below starts clean, and raises what is wrong
            if how == "full":
                with warnings.catch_warnings():  # a torchvision built for another PyTorch says so
                    warnings.filterwarnings("ignore", message="Failed to load image Python extension")
                    importlib.import_module("compressai.models")
            _how = how
        return sys.modules["compressai.models"]


def how_imported() -> str | None:
    """'partial' (this module's import), 'full' (the plain import), or None (not yet)."""
    return _how


def installed_version(distribution: str = "compressai") -> str | None:
    """An installed distribution's version, from its metadata (None: not installed)."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


class _LayoutChanged(Exception):
    """The package is not laid out as this module expects: take the plain import."""


def _import_partially() -> None:
    compressai = _package_without("compressai", lambda node: node.level == 0 and node.module == "compressai")
    compressai.__getattr__ = _import_on_access("compressai", skipped=None)
    registry = _package_without("compressai.registry",
                                lambda node: node.level == 1 and node.module == "transforms")
    registry.__getattr__ = _import_on_access("compressai.registry", skipped=("TRANSFORMS", "register_transform"))
    _import_deferring_scipy_stats("compressai.entropy_models")
    importlib.import_module("compressai.models")


def _package_without(name: str, skip) -> types.ModuleType:
    """Package ``name``, registered and executed without the one top-level ``from ... import``
    statement ``skip`` selects (which must import only submodules and names)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.submodule_search_locations:
        raise _LayoutChanged(f"{name} is not a package")
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read(), spec.origin)
    kept = [node for node in tree.body if not (isinstance(node, ast.ImportFrom) and skip(node))]
    if len(kept) != len(tree.body) - 1:
        raise _LayoutChanged(f"{spec.origin}: the statement to leave out is not there once")
    tree.body = kept
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        exec(compile(tree, spec.origin, "exec"), module.__dict__)  # the package's own code
    except ImportError as exc:
        raise _LayoutChanged(str(exc)) from None
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)  # as the import system does
    return module


def _import_on_access(package: str, skipped):
    """A module ``__getattr__``: a submodule imported on first access, or (registry) the names
    its left-out statement imported from ``.transforms``."""

    def __getattr__(name: str):
        if skipped is not None and name in skipped:
            return getattr(importlib.import_module(f"{package}.transforms"), name)
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__


def _import_deferring_scipy_stats(name: str) -> None:
    """Import ``name`` (whose ``import scipy.stats`` binds only the name ``scipy``) without
    importing scipy.stats, when scipy loads its submodules on first attribute access."""
    try:
        import scipy
    except ImportError:
        return  # CompressAI's own import then says what is missing
    if "scipy.stats" in sys.modules or "__getattr__" not in vars(scipy):
        importlib.import_module(name)
        return
    placeholder = types.ModuleType("scipy.stats", "stands for scipy.stats while CompressAI imports")
    sys.modules["scipy.stats"] = placeholder
    try:
        importlib.import_module(name)
    finally:
        if sys.modules.get("scipy.stats") is placeholder:
            del sys.modules["scipy.stats"]
        if vars(scipy).get("stats") is placeholder:
            delattr(scipy, "stats")


def _forget_compressai() -> None:
    """Undo a partial import that stopped half way, so the plain import starts clean."""
    for name in [n for n in sys.modules if n == "compressai" or n.startswith("compressai.")]:
        del sys.modules[name]
