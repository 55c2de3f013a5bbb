"""Tensors derived from a model, cached in the user's cache folder and checked on every read.

``tensors(kind, key, build, valid)`` returns what ``build()`` returns, from the file
``<cache>/<kind>/<key>.safetensors`` when that file holds exactly it: the file records the key it
was built for and a SHA-256 of its tensors, both compared on every read, and ``valid`` checks the
tensors' structure. A missing file, one built for another key (stale), one whose content no longer
matches its hash (damaged or altered), or one that fails ``valid`` is rebuilt and rewritten. The
key must name everything the tensors are derived from (inputs and the versions of the code that
computes them), so that a hit is what ``build()`` would return now.

The folder is ``$XDG_CACHE_HOME/sgacodec`` (default ``~/.cache/sgacodec``); ``SGACODEC_CACHE=0``
turns caching off. Writes are atomic (a temporary file renamed into place), so processes decoding
in parallel never read a partial file; a folder that cannot be written means no caching, never
an error. The hash detects damage and edits that do not recompute it; whoever can write this
folder can also write the user's other files, so it is not a defence against that user.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

from ..config import environ

FORMAT = "1"  # of the cache files themselves


def folder() -> Path | None:
    """The cache folder, or None when caching is off."""
    if environ("SGACODEC_CACHE", "1") == "0":
        return None
    base = environ("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sgacodec"


def digest(key: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the key and of each tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256(f"{FORMAT}\0{key}\0".encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def tensors(kind: str, key: str, build: Callable[[], dict[str, torch.Tensor]],
            valid: Callable[[dict[str, torch.Tensor]], bool]) -> dict[str, torch.Tensor]:
    """``build()``'s tensors, read from the cache when it holds them for ``key``, else built and
    written there. ``key``: letters, digits, '-' and '_' only (a file name)."""
    if not key or not all(c.isalnum() or c in "-_" for c in key):
        raise ValueError(f"not a cache key: {key!r}")
    root = folder()
    path = root / kind / f"{key}.safetensors" if root is not None else None
    if path is not None:
        cached = _read(path, key)
        if cached is not None and valid(cached):
            return cached
    built = build()
    if path is not None:
        _write(path, key, built)
    return built


def _read(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The file's tensors when it is a cache file for ``key`` whose content matches its hash."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            found = {name: f.get_tensor(name) for name in f.keys()}
    except (OSError, SafetensorError, ValueError, RuntimeError):
        return None  # missing or unreadable
    if meta.get("format") != FORMAT or meta.get("key") != key:
        return None  # stale: built for other inputs or versions
    if meta.get("sha256") != digest(key, found):
        return None  # damaged or altered
    return found


def _write(path: Path, key: str, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    meta = {"format": FORMAT, "key": key, "sha256": digest(key, tensors)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # a read-only or full disk: no caching
