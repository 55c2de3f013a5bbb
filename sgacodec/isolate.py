"""Running the stock decoder on untrusted bytes without letting it take the process down.

CompressAI's rANS decoder (C++) does not bounds-check its input: a forged or corrupted string that
declares a large latent reads past the end of its buffer, which can segfault the interpreter
(found by scripts/fuzz_bitstreams.py). Two defences, both used by ``codec.decode``:

- ``pad_string``: zeros appended to each entropy-coded string. A valid string is read exactly to
  its end, so the padding never changes a valid decode; a forged one reads zeros instead of
  whatever memory follows (4 bytes per symbol covers the common runaway cases).
- ``call``: on Linux the decode runs in a forked child process, with one torch thread (OpenMP's
  thread pool does not survive a fork). A crash, a hang past the time limit, or an allocation
  failure there becomes an ``IsolatedError`` with one line, and the parent process carries on.
  Elsewhere, or with ``SGACODEC_ISOLATE=0``, the decode runs in-process.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import sys
import time
from typing import Callable

import numpy as np


class IsolatedError(RuntimeError):
    """The isolated computation failed: crashed, timed out, or raised; the message is one line."""


def available() -> bool:
    return sys.platform.startswith("linux") and os.environ.get("SGACODEC_ISOLATE", "1") != "0"


def pad_string(data: bytes, n_symbols: int) -> bytes:
    """``data`` followed by enough zeros that a runaway rANS decoder reads zeros, not memory."""
    return bytes(data) + bytes(4 * max(int(n_symbols), 0) + 64)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def call(fn: Callable[[], np.ndarray], timeout: float) -> np.ndarray:
    """``fn()`` (a uint8 array), computed in a forked child where available."""
    if not available():
        try:
            return np.ascontiguousarray(fn(), dtype=np.uint8)
        except (RuntimeError, ValueError, IndexError, OverflowError, MemoryError, TypeError) as exc:
            raise IsolatedError(_first_line(exc)) from None
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compute, send, and leave without running the parent's exit handlers
        code = 1
        try:
            os.close(read_fd)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            import torch

            torch.set_num_threads(1)
            try:
                arr = np.ascontiguousarray(fn(), dtype=np.uint8)
                payload = (b"K" + struct.pack(">B", arr.ndim) + struct.pack(f">{arr.ndim}Q", *arr.shape)
                           + arr.tobytes())
            except BaseException as exc:  # noqa: BLE001 - reported to the parent as one line
                payload = b"E" + _first_line(exc).encode("utf-8", "replace")
            _write_all(write_fd, payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks, done = [], False
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise IsolatedError(f"decoding took longer than {timeout:.0f} s; stopped")
            ready, _, _ = select.select([read_fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(read_fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
        done = True
    finally:
        os.close(read_fd)
        if not done:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        reason = "out of memory?" if sig == signal.SIGKILL else "invalid data"
        raise IsolatedError(f"the decoder crashed ({name}, {reason})")
    payload = b"".join(chunks)
    if payload[:1] == b"E":
        raise IsolatedError(payload[1:].decode("utf-8", "replace"))
    if payload[:1] != b"K" or len(payload) < 2:
        raise IsolatedError("the decoder exited without a result")
    ndim = payload[1]
    shape = struct.unpack(f">{ndim}Q", payload[2 : 2 + 8 * ndim])
    body = payload[2 + 8 * ndim :]
    if len(body) != int(np.prod(shape, dtype=np.int64)):
        raise IsolatedError("the decoder sent an incomplete result")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()
