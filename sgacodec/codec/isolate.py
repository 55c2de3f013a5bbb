"""Running the coder on untrusted bytes, and CompressAI's rANS encoder, without letting either
take the process down.

CompressAI's rANS decoder (C++) does not bounds-check its input: a forged or corrupted string reads
past the end of its buffer, which can segfault the interpreter (found by scripts/fuzz_bitstreams.py).
Two defences, both used by the decoder: every string is padded and decoded twice
(network/streams.py), and, here, ``call`` runs the decode in a forked child process on Linux, with
one torch thread (OpenMP's thread pool does not survive a fork); ``stream`` does the same for a
computation that sends its result in pieces (the decoded image, row strip by row strip), each
handed to the parent as soon as it is sent. A crash, a hang past the time
limit, or an allocation failure there becomes an ``IsolatedError`` with one line, and the parent
carries on. Elsewhere, or with ``SGACODEC_ISOLATE=0``, the decode runs in-process.

The encoder's entropy coding (``encoder.code_latents``) runs through ``call`` too: CompressAI's
rANS encoder, given a symbol it cannot code (a NaN cast to an integer), loops in C++ where neither
Ctrl-C nor SIGTERM reaches it; in a child it is bounded by a time limit and killed with the parent.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import struct
import sys
import time
from typing import Callable, Iterable, Iterator

import numpy as np

from ..config import environ
from ..errors import one_line


class IsolatedError(RuntimeError):
    """The isolated computation failed: crashed, timed out, or raised; the message is one line."""


class OutOfMemory(IsolatedError):
    """The isolated computation ran out of memory (an allocation failed, or the child was killed)."""


OUT_OF_MEMORY = "out of memory (an allocation failed)"


def available() -> bool:
    return sys.platform.startswith("linux") and environ("SGACODEC_ISOLATE", "1") != "0"


ALLOCATION_FAILURES = ("can't allocate memory", "DefaultCPUAllocator", "std::bad_alloc")


def is_allocation_failure(exc: BaseException) -> bool:
    """A MemoryError, or torch's RuntimeError for a failed allocation."""
    return isinstance(exc, MemoryError) or any(text in str(exc) for text in ALLOCATION_FAILURES)


def _first_line(exc: BaseException) -> str:
    from ..network.streams import CorruptData

    if is_allocation_failure(exc):
        return OUT_OF_MEMORY
    return one_line(exc, typed=not isinstance(exc, CorruptData))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


@contextlib.contextmanager
def single_thread():
    """Run torch on one CPU thread inside the block: the entropy-coding side (h_s, index building,
    the reference reconstruction) runs like this on the encoder and the decoder alike, so the
    thread count can never make the two compute different scales."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --- results sent from the child: uint8 arrays, bytes, and lists of them (never pickle) -------

def _normalise(value):
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return np.ascontiguousarray(value, dtype=np.uint8)


def _pack(value) -> list:
    """The buffers that encode ``value`` (an array's own memory, not a copy of it)."""
    if isinstance(value, list):
        return [b"L" + struct.pack(">Q", len(value))] + [b for v in value for b in _pack(v)]
    if isinstance(value, bytes):
        return [b"B" + struct.pack(">Q", len(value)), value]
    return [b"A" + struct.pack(">B", value.ndim) + struct.pack(f">{value.ndim}Q", *value.shape),
            memoryview(value).cast("B")]


def _unpack(payload: bytes, pos: int = 0):
    """(value, next position); IsolatedError when the payload is incomplete."""
    def take(n):
        if pos + n > len(payload):
            raise IsolatedError("the child process sent an incomplete result")
        return payload[pos : pos + n]

    tag = take(1)
    pos += 1
    if tag == b"L":
        (count,) = struct.unpack(">Q", take(8))
        pos += 8
        items = []
        for _ in range(count):
            item, pos = _unpack(payload, pos)
            items.append(item)
        return items, pos
    if tag == b"B":
        (n,) = struct.unpack(">Q", take(8))
        pos += 8
        return bytes(take(n)), pos + n
    if tag == b"A":
        ndim = take(1)[0]
        pos += 1
        shape = struct.unpack(f">{ndim}Q", take(8 * ndim))
        pos += 8 * ndim
        n = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(take(n), dtype=np.uint8).reshape(shape), pos + n  # a view of the payload
    raise IsolatedError("the child process sent an incomplete result")


_IN_CHILD = False
MAX_RESULT_BYTES = 1 << 36  # what a child may send back (a decoded image of the largest size, and more)


def in_child() -> bool:
    """Whether this code runs in a child that ``call`` forked (threads started by the parent do
    not exist here)."""
    return _IN_CHILD


_PROGRESS: dict = {}  # the way ``progress`` reports: a callback in-process, a pipe in a child


def progress(done: int = 1) -> None:
    """Report ``done`` more units of work of the computation ``call`` runs (its ``on_progress``
    hears them in the parent; thread-safe)."""
    report = _PROGRESS.get("report")
    if report is not None:
        report(done)


def call(fn: Callable[[], object], timeout: float, what: str = "decoding",
         on_progress: Callable[[int], None] | None = None):
    """``fn()``, computed in a forked child where available: a uint8 array, bytes, or a list of
    them (nested lists too). A crash, a run past ``timeout`` seconds or an exception there is an
    IsolatedError of one line; Ctrl-C or SIGTERM in the parent stops the child too. What ``fn``
    reports with ``progress(n)`` reaches ``on_progress(n)`` (in the parent's thread)."""
    [value] = stream(lambda: [fn()], timeout, what, on_progress)
    return value


def stream(fn: Callable[[], Iterable], timeout: float, what: str = "decoding",
           on_progress: Callable[[int], None] | None = None) -> Iterator:
    """The items of the iterable ``fn()`` (each what ``call`` returns), computed in a forked child
    where available and yielded here as the child sends them, while it computes the next: the
    parent holds one item at a time. ``timeout`` bounds the whole run; failures as in ``call``
    (raised where the items stop). Stopping early (an error in the consumer) stops the child."""
    if not available():
        yield from _in_process(fn, on_progress)
        return
    read_fd, write_fd = os.pipe()
    progress_read, progress_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compute, send, and leave without running the parent's exit handlers
        code = 1
        try:
            os.close(read_fd)
            os.close(progress_read)
            _child(fn, write_fd, progress_write)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    os.close(progress_write)
    os.set_blocking(progress_read, False)
    done, status = False, 0
    try:
        messages = _messages(read_fd, progress_read, timeout, what, on_progress)
        for kind, payload in messages:
            if kind == b"P":
                value, end = _unpack(memoryview(payload), 0)
                if end != len(payload):
                    raise IsolatedError(f"the {what} process sent an incomplete result")
                yield value
            elif kind == b"E":
                message = payload.decode("utf-8", "replace")
                raise (OutOfMemory if message == OUT_OF_MEMORY else IsolatedError)(message)
            elif kind == b"D":
                break
            else:
                raise IsolatedError(f"the {what} process exited without a result")
        else:  # the pipe closed before the end: the child died, its status says how
            kind = None
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # SIGCHLD ignored: reaped already; the messages tell
            status = 0
        done = True
    finally:  # a timeout, an error, Ctrl-C or SIGTERM (SystemExit) in the parent: the child goes too
        os.close(read_fd)
        os.close(progress_read)
        if not done:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGINT:  # Ctrl-C reached the child first: the parent stops as well
            raise KeyboardInterrupt
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGKILL:  # the kernel's out-of-memory killer, most likely
            raise OutOfMemory(f"the {what} process was killed ({name}, out of memory?)")
        raise IsolatedError(f"the {what} process crashed ({name}, invalid data)")
    if kind != b"D":
        raise IsolatedError(f"the {what} process exited without a result")


_CAUGHT = (RuntimeError, ValueError, IndexError, OverflowError, MemoryError, TypeError)


def _in_process(fn: Callable[[], Iterable], on_progress) -> Iterator:
    """``stream`` without a child: the items computed here, on one torch thread, with the same
    errors (only the computation's own: an error in the consumer passes through unchanged)."""
    _PROGRESS["report"] = on_progress
    try:
        with single_thread():
            try:
                items = iter(fn())
            except _CAUGHT as exc:
                raise (OutOfMemory if is_allocation_failure(exc) else IsolatedError)(_first_line(exc)) from None
        while True:
            with single_thread():
                try:
                    item = _normalise(next(items))
                except StopIteration:
                    return
                except _CAUGHT as exc:
                    raise (OutOfMemory if is_allocation_failure(exc) else IsolatedError)(_first_line(exc)) from None
            yield item
    finally:
        _PROGRESS.pop("report", None)


def _child(fn: Callable[[], Iterable], write_fd: int, progress_write: int) -> None:
    """In the forked child: each item of ``fn()`` sent as a message P, then D; or E and one line."""
    global _IN_CHILD
    _IN_CHILD = True
    import threading

    from .memory import keep_freed_memory

    keep_freed_memory()

    lock = threading.Lock()

    def report(done: int) -> None:
        with lock:
            _write_all(progress_write, struct.pack(">I", done))

    _PROGRESS["report"] = report
    import faulthandler

    faulthandler.disable()  # a crash here is reported by the parent in one line
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import torch

    torch.set_num_threads(1)

    def send(kind: bytes, buffers: list) -> None:
        _write_all(write_fd, kind + struct.pack(">Q", sum(len(b) for b in buffers)))
        for buffer in buffers:
            _write_all(write_fd, buffer)

    try:
        for item in fn():
            send(b"P", _pack(_normalise(item)))
        send(b"D", [])
    except BaseException as exc:  # reported to the parent as one line
        send(b"E", [_first_line(exc).encode("utf-8", "replace")])


def _messages(read_fd: int, progress_read: int, timeout: float, what: str, on_progress) -> Iterator:
    """(kind, payload) of each message the child sends (kind, 8-byte length, payload), read in
    place; what it reports on the progress pipe goes to ``on_progress`` meanwhile. Ends when
    the child closes the pipe; IsolatedError past ``timeout`` seconds from the start."""
    deadline = time.monotonic() + timeout
    head, payload, filled = bytearray(), None, 0
    heard, watched = bytearray(), [read_fd, progress_read]
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise IsolatedError(f"{what} took longer than {timeout:.0f} s; stopped")
        ready, _, _ = select.select(watched, [], [], min(left, 1.0))
        if progress_read in ready:
            try:
                chunk = os.read(progress_read, 4096)
                heard += chunk
                if not chunk:  # the child closed it (exited): stop watching
                    watched = [read_fd]
            except BlockingIOError:
                pass
            whole = len(heard) - len(heard) % 4
            if whole and on_progress is not None:
                on_progress(sum(struct.unpack(f">{whole // 4}I", heard[:whole])))
            del heard[:whole]
        if read_fd not in ready:
            continue
        if payload is None:  # the kind and the length, then the payload read in place
            chunk = os.read(read_fd, 9 - len(head))
            if not chunk:
                return
            head += chunk
            if len(head) == 9:
                length = struct.unpack(">Q", head[1:])[0]
                if length > MAX_RESULT_BYTES:
                    raise IsolatedError(f"the {what} process sent more than it may")
                payload, filled = bytearray(length), 0
            else:
                continue
        if filled < len(payload):
            with memoryview(payload) as view:
                n = os.readv(read_fd, [view[filled : filled + (1 << 24)]])
            if n == 0:
                return
            filled += n
        if filled == len(payload):
            yield bytes(head[:1]), payload
            head, payload = bytearray(), None
