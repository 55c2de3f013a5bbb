"""Where results go: output paths planned and checked before any work, and files written
atomically (never a partial file) or streamed to stdout.

    outputs = plan_outputs(["a.png", "b.png"], "coded/", ".bin")   # coded/a.bin, coded/b.bin
    check_outputs(["a.png", "b.png"], outputs, force=False)         # OutputError: one line
    write_output(outputs[0], data, force=False)
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .errors import OutputError  # noqa: F401 - raised here, defined with the other errors

STDIO = "-"


def plan_outputs(inputs: list[str], output: str | None, suffix: str, directory: bool = False) -> list[str]:
    """Where each input's output goes: a file, a directory (several inputs, an existing directory,
    a path ending in '/', or ``directory``: inputs named by a folder or glob), stdout ('-'), or
    beside the input with ``suffix``."""
    many = len(inputs) > 1 or directory or (output or "").endswith(("/", os.sep))
    if output == STDIO:
        if many:
            raise OutputError("-o - (stdout) takes a single input")
        return [STDIO]
    if output is not None and (many or Path(output).is_dir()):
        out_dir = Path(output)
        out_dir.mkdir(parents=True, exist_ok=True)
        names = [("stdin" if p == STDIO else Path(p).stem) + suffix for p in inputs]
        if len(set(names)) != len(names):
            raise OutputError(f"two inputs would write the same file in {out_dir}; rename them")
        return [str(out_dir / n) for n in names]
    if output is not None:
        return [output]
    if STDIO in inputs:
        raise OutputError("reading stdin needs -o FILE or -o -")
    return [str(Path(p).with_suffix(suffix)) for p in inputs]


def check_outputs(inputs: list[str], outputs: list[str], force: bool) -> None:
    """Refuse, before any work, an output that is an input, a directory, or (without ``force``)
    an existing file."""
    sources = [Path(p) for p in inputs if p != STDIO and Path(p).exists()]
    for dst in outputs:
        if dst == STDIO:
            continue
        if Path(dst).exists() and any(Path(dst).samefile(src) for src in sources):
            raise OutputError(f"{dst}: refusing to overwrite an input")
        if Path(dst).is_dir():
            raise OutputError(f"{dst} is a directory")
        if Path(dst).exists() and not force:
            raise OutputError(f"{dst} exists; pass --force to overwrite")


def write_output(dst: str, data: bytes, force: bool = True) -> None:
    """Stdout, or a file written atomically; without ``force`` an output that appeared since the
    check is not replaced."""
    if dst == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        atomic_write(dst, data, overwrite=force)
    except FileExistsError:
        raise OutputError(f"{dst} exists; pass --force to overwrite") from None


def atomic_write(path, data: bytes, overwrite: bool = True) -> None:
    """Write via a temporary file in the same folder, then rename: never a partial file, even when
    interrupted (the temporary file is removed on any exception, Ctrl-C included). Without
    ``overwrite``, an existing ``path`` is left alone and FileExistsError is raised."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic, and fails when path exists
            except FileExistsError:
                raise
            except OSError:  # no hard links on this file system
                if path.exists():
                    raise FileExistsError(str(path)) from None
                os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def remove_leftovers(paths) -> int:
    """Remove the temporary files of atomic writes of ``paths`` that were cut short (a process
    killed mid-write cannot clean up after itself); one directory listing per folder. Returns
    how many were removed."""
    by_folder: dict[Path, set[str]] = {}
    for p in paths:
        if p != STDIO:
            by_folder.setdefault(Path(p).parent, set()).add(Path(p).name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not (entry.name.startswith(".") and entry.name.endswith(".part")):
                continue
            name, dot, _ = entry.name[1 : -len(".part")].rpartition(".")  # '.NAME.XXXXXXXX.part'
            if dot and name in names:
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
