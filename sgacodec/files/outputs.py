"""Where results go: output paths planned and checked before any work, files written atomically
(never a partial file), streams (stdout, a FIFO, a character device) written in place, and JSON
records that strict parsers accept.

    outputs = plan_outputs(["a.png", "b.png"], "coded/", ".bin")   # coded/a.bin, coded/b.bin
    check_outputs(["a.png", "b.png"], outputs, force=False)         # OutputError: one line
    write_output(outputs[0], data, force=False, protected=input_identities(inputs))
    with open_output(outputs[1], force=False) as f:                # the same, written piece by piece
        f.write(part_one); f.write(part_two)

The rules (docs/reliability.md, "No data lost"):

- Only regular files are ever replaced (with ``force``). An existing FIFO or character device
  (``-o /dev/null``, ``-o >(ssh host 'cat > a.bin')``), and a link to an open file descriptor
  (``-o /dev/stdout``, ``/dev/fd/3``), are written to in place, like ``-o -``, without ``force``;
  block devices, sockets and directories are refused. A symbolic link to a file is written
  through: the file it points to is replaced, the link stays.
- No two inputs write the same output (``a.png`` and ``a.jpg`` beside each other, the same file
  named twice, two names of one file), and no output is an input: compared by device and inode,
  so symbolic links, hard links, ``./a`` and ``a``, and the file stdin was read from all count.
- Every output's folder exists and is writable before any work (``-o newdir/``, with the slash, is
  a folder and is created).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import OutputError

STDIO = "-"


def plan_outputs(inputs: list[str], output: str | None, suffix: str, directory: bool = False) -> list[str]:
    """Where each input's output goes: a file, a directory (several inputs, an existing directory,
    a path ending in '/', created, or ``directory``: inputs named by a folder or glob), stdout
    ('-'), or beside the input with ``suffix``. Two inputs that would write the same output are
    refused here."""
    many = len(inputs) > 1 or directory
    if output == STDIO:
        if many:
            raise OutputError("-o - (stdout) takes a single input")
        return [STDIO]
    if output is not None and (many or output.endswith(("/", os.sep)) or Path(output).is_dir()):
        out_dir = Path(output)
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputError(f"{output} is not a directory (several inputs need -o DIRECTORY)")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{output}: cannot create the directory ({exc.strerror or exc})") from None
        outputs = [str(out_dir / (("stdin" if p == STDIO else Path(p).stem) + suffix)) for p in inputs]
    elif output is not None:
        outputs = [output]
    elif STDIO in inputs:
        raise OutputError("reading stdin needs -o FILE or -o -")
    else:
        outputs = [str(Path(p).with_suffix(suffix)) for p in inputs]
    _refuse_collisions(inputs, outputs)
    return outputs


def _same_place(path: str):
    """A key equal for two names of one file: (device, inode) when it exists, else the real path."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return os.path.realpath(path)


def _refuse_collisions(inputs: list[str], outputs: list[str]) -> None:
    seen: dict = {}
    for src, dst in zip(inputs, outputs):
        if dst == STDIO or output_kind(dst) == "stream":
            continue
        key = _same_place(dst)
        if key in seen:
            raise OutputError(f"{seen[key]} and {src} would both write {dst}; encode them separately "
                              "or rename one")
        seen[key] = src


def input_identities(inputs: list[str]) -> frozenset:
    """(device, inode) of every input file, and of the file stdin reads when an input is '-'."""
    found = set()
    for path in inputs:
        try:
            st = os.fstat(sys.stdin.fileno()) if path == STDIO else os.stat(path)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            continue
        if stat.S_ISREG(st.st_mode):
            found.add((st.st_dev, st.st_ino))
    return frozenset(found)


def descriptor_link(path: str) -> bool:
    """Whether ``path`` leads, through symbolic links, to /proc/PID/fd/N: an open file descriptor
    (/dev/stdout, /dev/fd/3, /proc/self/fd/1). Replacing such a path would replace the link (as
    root, /dev/stdout itself), never the file the descriptor is open on."""
    current = os.path.abspath(path)
    for _ in range(40):
        if re.fullmatch(r"/proc/[^/]+/fd", os.path.realpath(os.path.dirname(current))):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    return False


def output_kind(path: str) -> str:
    """'missing', 'file', 'directory', 'stream' (a FIFO, a character device or a link to an open
    file descriptor, written in place), or what else it is ('block device', 'socket'), following
    symbolic links."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "missing"
    if descriptor_link(path) and not stat.S_ISDIR(mode):
        return "stream"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return "stream"
    return "block device" if stat.S_ISBLK(mode) else "socket" if stat.S_ISSOCK(mode) else "special file"


def check_outputs(inputs: list[str], outputs: list[str], force: bool) -> None:
    """Refuse, before any work, an output that is an input, a directory, a special file other
    than a FIFO or character device, (without ``force``) an existing file, or one whose folder is
    missing or not writable."""
    protected, folders = input_identities(inputs), set()
    for dst in outputs:
        if dst == STDIO:
            continue
        kind = output_kind(dst)
        if kind == "stream":  # written in place, like stdout; but not into an input (>> a.png)
            if _same_place(dst) in protected:
                raise OutputError(f"{dst}: refusing to write into an input")
            continue
        if kind == "directory":
            raise OutputError(f"{dst} is a directory")
        if kind == "file" and _same_place(dst) in protected:
            raise OutputError(f"{dst}: refusing to overwrite an input")
        if kind not in ("file", "missing"):
            raise OutputError(f"{dst} is a {kind}; sgacodec writes regular files, FIFOs and "
                              "character devices only")
        if kind == "file" and not force:
            raise OutputError(f"{dst} exists; pass --force to overwrite")
        if os.path.dirname(dst) not in folders:
            check_writable(dst, " (-o DIR/, ending in /, creates a directory)")
            folders.add(os.path.dirname(dst))


def check_writable(dst: str, hint: str = "") -> None:
    """OutputError unless ``dst``'s folder exists and a file can be created there (tried: a
    read-only file system or a permission refuses even root's mode bits)."""
    folder = os.path.dirname(dst) or "."
    if not os.path.isdir(folder):
        raise OutputError(f"{dst}: the folder {folder} does not exist{hint}")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".sgacodec-check."):
            pass
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write in {folder} ({exc.strerror or exc})") from None


def prepare_directory(path: str) -> None:
    """Create an output directory when missing and check that files can be written there."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the directory ({exc.strerror or exc})") from None
    check_writable(os.path.join(path, "x"))


def write_output(dst: str, data: bytes, force: bool = True, protected: frozenset = frozenset()) -> None:
    """Stdout, a stream (FIFO or character device) written in place, or a file written
    atomically; without ``force`` an output that appeared since the check is not replaced, and a
    file in ``protected`` (input_identities) never is."""
    with open_output(dst, force, protected) as f:
        f.write(data)


@contextlib.contextmanager
def open_output(dst: str, force: bool = True, protected: frozenset = frozenset()) -> Iterator:
    """``write_output`` for data written piece by piece into the binary file object this yields:
    a file's pieces go to its temporary file as they come (the file appears whole, when the
    block ends without an error, or not at all); stdout's and a stream's are kept in memory and
    written at the end (an error leaves them untouched)."""
    if dst == STDIO or output_kind(dst) == "stream":
        buf = io.BytesIO()
        yield buf
        if dst == STDIO:
            sys.stdout.buffer.write(buf.getbuffer())
            sys.stdout.buffer.flush()
        else:
            _write_stream(dst, buf.getbuffer())
        return
    try:
        with atomic_file(dst, overwrite=force, protected=protected) as f:
            yield f
    except FileExistsError:
        raise OutputError(f"{dst} exists; pass --force to overwrite") from None


def _write_stream(dst: str, data: bytes) -> None:
    """Write into an existing FIFO or character device (a FIFO blocks until a reader opens it), or
    into the file an open descriptor's link names (appended: a shell's ``>`` left it empty, its
    ``>>`` wants the end)."""
    on_descriptor = descriptor_link(dst)
    fd = os.open(dst, os.O_WRONLY | os.O_NOCTTY | (os.O_APPEND if on_descriptor else 0))
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or (on_descriptor and stat.S_ISREG(mode))):
            raise OutputError(f"{dst} is no longer a FIFO or device; not written")  # replaced since
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def atomic_write(path, data: bytes, overwrite: bool = True, protected: frozenset = frozenset()) -> None:
    """Write via a temporary file in the same folder, then rename: never a partial file, even when
    interrupted (the temporary file is removed on any exception, Ctrl-C included). Without
    ``overwrite``, an existing ``path`` is left alone and FileExistsError is raised. Only a
    regular file is ever replaced, never one in ``protected`` (OutputError); a symbolic link is
    written through (the file it points to is replaced, in that file's folder)."""
    with atomic_file(path, overwrite, protected) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path, overwrite: bool = True, protected: frozenset = frozenset()) -> Iterator:
    """``atomic_write`` of what is written into the binary file object this yields: the file
    appears under ``path`` when the block ends without an error, and never otherwise."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
            os.fsync(f.fileno())
        if overwrite:
            _check_replaceable(path, protected)
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


def _check_replaceable(path: Path, protected: frozenset) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise OutputError(f"{path} is not a regular file; not replaced")
    if _same_place(str(path)) in protected:
        raise OutputError(f"{path}: refusing to overwrite an input")


def json_line(record: dict) -> str:
    """One JSON line that strict parsers accept: a NaN or infinite number becomes null (an
    infinite PSNR, for an exactly reproduced image, among them)."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(record), allow_nan=False)


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
