"""How much memory coding an image needs, and whether this machine may spend it.

The synthesis transform of the coding network (g_s in float64, docs/method.md "Entropy coding")
is the largest allocation of both sides. Tiled files (version 3) hold one block of it per worker;
the whole image (``--tile-size 0``, versions 1 and 2) holds it for every pixel. The constants
below are peaks measured with ``getrusage`` for the shipped models (N = 128 channels), checked
against each path's estimate by ``benchmarks/memory_estimates.py`` (docs/reliability.md,
"Memory"). A small file can declare a large image (2.5 kB
for a flat 1024 x 1024 one), so every decode and encode is checked against the limit before
anything is allocated:

    check(image_bytes(channels=128, height=1024, width=1024), "decoding 1024x1024")

The limit is the memory available (Linux: MemAvailable, a cgroup's memory.max, ``ulimit -v``), or
``SGACODEC_MEMORY_LIMIT`` (``8G``, ``500M``, a number of bytes, or ``off``).
"""

from __future__ import annotations

import os
import re
import resource

from ..config import environ
from ..errors import ResourceError

LIMIT_ENV = "SGACODEC_MEMORY_LIMIT"
# A refinement of the whole image (not in tiles): bytes per padded pixel beside the process, with
# N = 128 channels (it grows with the number of channels); the float64 synthesis before minimal
# filtering (2.1 GB per megapixel measured, rounded up), which the refinement stayed below.
BYTES_PER_PIXEL = 2400
# Versions 1 and 2 (CompressAI's own compress() and decompress() on the whole image), likewise.
# Measured at 3 MP: 580 to 870 for version 1 (float32, the stock transposed convolutions; its
# peak varied from run to run), 700 to 770 for version 2 (float64).
LEGACY_BYTES_PER_PIXEL = 800
REFERENCE_CHANNELS = 128
UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def image_bytes(channels: int, height: int, width: int, multiple: int = 64,
                per_pixel: int = BYTES_PER_PIXEL) -> int:
    """Peak memory, in bytes, of refining one whole image with a g_s of ``channels`` (or, with
    ``per_pixel=LEGACY_BYTES_PER_PIXEL``, of coding or decoding a version 1 or 2 file)."""
    padded = -(-height // multiple) * multiple * -(-width // multiple) * multiple
    return padded * per_pixel * max(channels, 1) // REFERENCE_CHANNELS


# Tiled coding (version 3), per path (docs/reliability.md, "Memory"; benchmarks/large_photos.py
# measures each against its estimate). What every process holds (torch, CompressAI, the model and
# its float64 coding network), one worker's tile (its float64 synthesis, per pixel of the tile with
# its halo, N = 128), and what the image holds per pixel, by path: the decoder's alpha plane and
# the rows in flight (its pixels stream into the PNG; decode() holds them whole, 3 bytes), the
# encoder's input pixels (as Pillow read them and as an array), y, y^ (float32 latents of M = 192
# channels at 1/256 of the pixels: 3 bytes each) and its reconstruction, some of them both in the
# CLI's process and in its coding child: 25 to 35 bytes measured from 3 to 48 MP.
PROCESS_BYTES = 450 << 20
TILE_BYTES_PER_PIXEL = 1200
# One tile that is the whole image (--tile-size 0): g_s over all of it at once, per padded pixel.
# Less than a block's per-pixel figure, which includes what every block holds whatever its size
# (the transforms' scratch buffers); measured about 530 with the image's share.
WHOLE_IMAGE_BYTES_PER_PIXEL = 540
TILE_HALO = 64  # pixels added to a tile's side for its halo, in the estimate
IMAGE_BYTES_PER_PIXEL = {"decode": 4, "encode": 32, "refine": 64}
# Refinement in tiles: one batch of tiles forward and backward in float32 (autograd keeps g_s's and
# h_s's activations), per pixel of a tile with its halo; the image's share adds the image in float
# (12 bytes a pixel), the latents, their gradients, Adam's moments, the best iterate and the noise.
REFINE_TILE_BYTES_PER_PIXEL = 1800


def tile_bytes(channels: int, rows: int, cols: int, per_pixel: int = TILE_BYTES_PER_PIXEL) -> int:
    """Peak memory of one worker computing one tile of ``rows`` x ``cols`` pixels with its halo:
    (rows + halo)(cols + halo) per_pixel, scaled by the channels."""
    return (rows + TILE_HALO) * (cols + TILE_HALO) * per_pixel * max(channels, 1) // REFERENCE_CHANNELS


def synthesis_bytes(channels: int, grid) -> int:
    """Peak memory of one worker's synthesis on ``grid``: a block with its halo (``tile_bytes``),
    or for a grid of one tile the whole padded image at WHOLE_IMAGE_BYTES_PER_PIXEL."""
    if grid.blocks.tile:
        return tile_bytes(channels, *_extent(grid, grid.blocks.tile))
    height, width = grid.padded
    return height * width * WHOLE_IMAGE_BYTES_PER_PIXEL * max(channels, 1) // REFERENCE_CHANNELS


def _extent(grid, side: int | None) -> tuple[int, int]:
    """The rows and columns of the largest piece of ``grid``'s padded image that one worker
    computes: a square of ``side`` pixels clipped to the image, or the whole image (None or 0)."""
    height, width = grid.padded
    return (min(side, height), min(side, width)) if side else (height, width)


def workers_for(channels: int, grid) -> int:
    """Tiles computed at once: one per CPU, as many as the memory allows (at least one)."""
    return fitting(synthesis_bytes(channels, grid), max(1, min(os.cpu_count() or 1, len(grid.blocks))))


def estimate(path: str, channels: int, grid, workers: int | None = None, batch: int = 1) -> int:
    """The peak memory of ``path`` ('encode' without refinement, 'refine': encoding with a
    refinement in tiles, or 'decode') on ``grid``'s image: the process, the image's per-pixel
    share, and the workers' tiles (a synthesis block each, or the whole image when it is one tile;
    refinement: ``batch`` tiles forward and backward, then coding)."""
    workers = workers or max(1, min(os.cpu_count() or 1, len(grid.blocks)))
    height, width = grid.padded
    coding = workers * synthesis_bytes(channels, grid)
    if path == "refine":
        coding = max(coding, batch * tile_bytes(channels, *_extent(grid, grid.tile), REFINE_TILE_BYTES_PER_PIXEL))
    return PROCESS_BYTES + height * width * IMAGE_BYTES_PER_PIXEL[path] + coding


def check_coding(channels: int, grid, what: str) -> int:
    """How many tiles may be computed at once, refusing before anything is allocated when even
    one worker's tile and the image's share do not fit (``what``: 'encoding' or 'decoding')."""
    path = "decode" if what.startswith("decod") else "encode"
    needed = estimate(path, channels, grid, workers=1) - PROCESS_BYTES  # the process holds its own already
    check(needed, f"{what} {grid.width}x{grid.height}")
    return workers_for(channels, grid)


def parse_size(text: str) -> int | None:
    """'8G' -> bytes; 'off' -> None (no limit). ResourceError for anything else."""
    text = text.strip().lower()
    if text in ("off", "none", "0"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", text)
    if not match:
        raise ResourceError(f"{LIMIT_ENV}={text!r} is not a size (for example 8G, 500M, or off)")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def available_bytes() -> int | None:
    """What this process may still allocate: the least of MemAvailable, the cgroup's remaining
    memory and the address-space limit; None when none of them is known."""
    found = []
    meminfo = _read("/proc/meminfo") or ""
    match = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.M)
    if match:
        found.append(int(match.group(1)) << 10)
    limit, current = _read("/sys/fs/cgroup/memory.max"), _read("/sys/fs/cgroup/memory.current")
    if limit and current and limit.strip().isdigit() and current.strip().isdigit():
        found.append(max(int(limit) - int(current), 0))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        status = _read("/proc/self/status") or ""
        match = re.search(r"^VmSize:\s+(\d+) kB", status, re.M)
        found.append(max(soft - (int(match.group(1)) << 10 if match else 0), 0))
    return min(found) if found else None


def allowed_bytes() -> int | None:
    """The memory sgacodec may use for one image: SGACODEC_MEMORY_LIMIT, else what is available."""
    setting = environ(LIMIT_ENV)
    if setting is not None:
        return parse_size(setting)
    return available_bytes()


def human(n: int) -> str:
    """Bytes for people: '2.4 GB', '300 MB'."""
    return f"{n / (1 << 30):.1f} GB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MB"


def check(needed: int, what: str) -> None:
    """ResourceError, before anything is allocated, when ``needed`` bytes exceed the limit."""
    allowed = allowed_bytes()
    if allowed is not None and needed > allowed:
        source = f"{LIMIT_ENV} allows" if environ(LIMIT_ENV) else "this machine has"
        raise ResourceError(f"{what} needs about {human(needed)} of memory and {source} "
                            f"{human(allowed)}; refused (set {LIMIT_ENV} to change the limit)")


def fitting(needed_each: int, most: int) -> int:
    """How many computations of ``needed_each`` bytes may run at once (at least 1, at most ``most``)."""
    allowed = allowed_bytes()
    if allowed is None or needed_each <= 0:
        return most
    return max(1, min(most, allowed // needed_each))


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_FREED = 1 << 30


def keep_freed_memory() -> bool:
    """Has glibc's malloc serve large blocks from its heap and keep freed memory for the next ones
    (``mallopt``: M_MMAP_THRESHOLD and M_TRIM_THRESHOLD at 1 GiB), for this process; False where
    there is no glibc. By default every block over 32 MB is mapped afresh, which the kernel zeroes
    page by page, and coding allocates such blocks for every tile (g_s's and h_s's float64
    intermediates of a block and their transforms). Called in the coding child (isolate.py), whose
    allocations are a few tiles' worth, and nowhere else: in the CLI's own process the refinement's
    many sizes of blocks left the heap fragmented and raised the refinement's peak, and a library
    caller's process is not ours to change."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_FREED) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED))
    except (OSError, AttributeError):
        return False
