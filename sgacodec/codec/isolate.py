"""Running the stock decoder on untrusted bytes without letting it take the process down.

CompressAI's rANS decoder (C++) does not bounds-check its input: a forged or corrupted string that
declares a large latent reads past the end of its buffer, which can segfault the interpreter
(found by scripts/fuzz_bitstreams.py). Two defences, both used by ``decoder.decode``:

- ``decompress_untrusted``: each entropy-coded string is padded (see ``pad_string``), so that a
  forged string reads padding instead of whatever memory follows, and decoded twice, with 0x00
  and with 0x55 padding (no 0xF nibble, which would keep the bypass coder reading). A valid
  string is read exactly to its end, so the padding never changes a valid decode; when the two
  decodes differ, the data runs past its end and the file is refused before the synthesis
  transform runs (a forged file that declares a huge image with a few bytes of data is refused
  after entropy decoding alone).
- ``call``: on Linux the decode runs in a forked child process, with one torch thread (OpenMP's
  thread pool does not survive a fork). A crash, a hang past the time limit, or an allocation
  failure there becomes an ``IsolatedError`` with one line, and the parent process carries on.
  Elsewhere, or with ``SGACODEC_ISOLATE=0``, the decode runs in-process.

The encoder's entropy coding (``codec.code_latents``) runs through ``call`` too: CompressAI's rANS
encoder, given a symbol it cannot code (a NaN cast to an integer), loops in C++ where neither
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
from typing import Callable

import numpy as np

from ..config import environ
from ..errors import one_line


class IsolatedError(RuntimeError):
    """The isolated computation failed: crashed, timed out, or raised; the message is one line."""


class OutOfMemory(IsolatedError):
    """The isolated computation ran out of memory (an allocation failed, or the child was killed)."""


OUT_OF_MEMORY = "out of memory (an allocation failed)"


class CorruptData(ValueError):
    """Entropy-coded data that cannot be what an encoder wrote."""


def available() -> bool:
    return sys.platform.startswith("linux") and environ("SGACODEC_ISOLATE", "1") != "0"


def pad_string(data: bytes, n_symbols: int, fill: int = 0) -> bytes:
    """``data`` followed by enough ``fill`` bytes that a runaway rANS decoder reads them, not memory.

    Past the data, a symbol reads at most two 32-bit words (one renormalisation for the symbol,
    one for its few bypass nibbles when ``fill`` has no 0xF nibble); bypass runs driven by the
    data itself read at most 15 nibbles per data nibble.
    """
    return bytes(data) + bytes([fill]) * (8 * max(int(n_symbols), 0) + 16 * len(data) + 1024)


def _decode_twice(decode, string: bytes, n_symbols: int, what: str):
    """Entropy-decode with zero padding and with 0x55 padding: a valid string is read exactly to its
    end, so the two agree; when they differ the data runs past the end (truncated or forged)."""
    import torch

    a = decode(pad_string(string, n_symbols, 0))
    b = decode(pad_string(string, n_symbols, 0x55))
    if not torch.equal(a, b):
        raise CorruptData(f"the {what} string ends before its data does (truncated or forged file)")
    return a


def decompress_untrusted(net, y_string: bytes, z_string: bytes, z_shape):
    """The model's stock ``decompress([[y], [z]], z_shape)["x_hat"]`` for untrusted strings.

    Both strings are padded; each is entropy-decoded twice (see ``_decode_twice``) so that data
    that runs past its end is refused before the synthesis transform runs on it. For context
    models (mbt2018, cheng2020-*), whose y decoding is interleaved with the network, only the z
    string is decoded twice; their y string is padded and decoded once.
    """
    import torch

    from ..network.compressai_import import import_compressai

    models = import_compressai()
    MeanScaleHyperprior, ScaleHyperprior = models.MeanScaleHyperprior, models.ScaleHyperprior
    eb, gc = net.entropy_bottleneck, net.gaussian_conditional
    z_shape = tuple(z_shape)
    n_z = eb.channels * z_shape[0] * z_shape[1]
    n_y = getattr(net, "M", 320) * 16 * z_shape[0] * z_shape[1]
    with torch.no_grad():
        z_hat = _decode_twice(lambda s: eb.decompress([s], z_shape), z_string, n_z, "z")
        method = type(net).decompress
        if method not in (ScaleHyperprior.decompress, MeanScaleHyperprior.decompress):
            strings = [[pad_string(y_string, n_y)], [pad_string(z_string, n_z)]]
            return net.decompress(strings, z_shape)["x_hat"]
        if method is MeanScaleHyperprior.decompress:  # the same steps as compressai's decompress()
            scales_hat, means_hat = net.h_s(z_hat).chunk(2, 1)
            indexes = gc.build_indexes(scales_hat)
            y_hat = _decode_twice(lambda s: gc.decompress([s], indexes, means=means_hat), y_string, n_y, "y")
        else:
            indexes = gc.build_indexes(net.h_s(z_hat))
            y_hat = _decode_twice(lambda s: gc.decompress([s], indexes, z_hat.dtype), y_string, n_y, "y")
        return net.g_s(y_hat).clamp_(0, 1)


ALLOCATION_FAILURES = ("can't allocate memory", "DefaultCPUAllocator", "std::bad_alloc")


def is_allocation_failure(exc: BaseException) -> bool:
    """A MemoryError, or torch's RuntimeError for a failed allocation."""
    return isinstance(exc, MemoryError) or any(text in str(exc) for text in ALLOCATION_FAILURES)


def _first_line(exc: BaseException) -> str:
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


def _pack(value) -> bytes:
    if isinstance(value, list):
        return b"L" + struct.pack(">Q", len(value)) + b"".join(_pack(v) for v in value)
    if isinstance(value, bytes):
        return b"B" + struct.pack(">Q", len(value)) + value
    return (b"A" + struct.pack(">B", value.ndim) + struct.pack(f">{value.ndim}Q", *value.shape)
            + value.tobytes())


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
        return np.frombuffer(take(n), dtype=np.uint8).reshape(shape).copy(), pos + n
    raise IsolatedError("the child process sent an incomplete result")


_IN_CHILD = False


def in_child() -> bool:
    """Whether this code runs in a child that ``call`` forked (threads started by the parent do
    not exist here)."""
    return _IN_CHILD


def call(fn: Callable[[], object], timeout: float, what: str = "decoding"):
    """``fn()``, computed in a forked child where available: a uint8 array, bytes, or a list of
    them (nested lists too). A crash, a run past ``timeout`` seconds or an exception there is an
    IsolatedError of one line; Ctrl-C or SIGTERM in the parent stops the child too."""
    if not available():
        try:
            with single_thread():
                return _normalise(fn())
        except (RuntimeError, ValueError, IndexError, OverflowError, MemoryError, TypeError) as exc:
            raise (OutOfMemory if is_allocation_failure(exc) else IsolatedError)(_first_line(exc)) from None
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compute, send, and leave without running the parent's exit handlers
        code = 1
        try:
            global _IN_CHILD
            _IN_CHILD = True
            os.close(read_fd)
            import faulthandler

            faulthandler.disable()  # a crash here is reported by the parent in one line
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            import torch

            torch.set_num_threads(1)
            try:
                payload = b"K" + _pack(_normalise(fn()))
            except BaseException as exc:  # reported to the parent as one line
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
                raise IsolatedError(f"{what} took longer than {timeout:.0f} s; stopped")
            ready, _, _ = select.select([read_fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(read_fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # SIGCHLD ignored: reaped already; the payload tells
            status = 0
        done = True
    finally:  # a timeout, Ctrl-C or SIGTERM (SystemExit) in the parent: the child goes too
        os.close(read_fd)
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
    payload = b"".join(chunks)
    if payload[:1] == b"E":
        message = payload[1:].decode("utf-8", "replace")
        raise (OutOfMemory if message == OUT_OF_MEMORY else IsolatedError)(message)
    if payload[:1] != b"K":
        raise IsolatedError(f"the {what} process exited without a result")
    value, end = _unpack(payload, 1)
    if end != len(payload):
        raise IsolatedError(f"the {what} process sent an incomplete result")
    return value
