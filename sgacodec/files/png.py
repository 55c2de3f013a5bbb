"""A streaming PNG writer: rows go in strip by strip, the file comes out with bounded memory.

Pillow writes a PNG only from a whole image in memory, while the decoder of a very large photo
has it a row of tiles at a time. ``PNGWriter`` takes strips of rows, filters them (numpy, a strip at a
time), deflates them (zlib) and writes IDAT chunks of at most ``idat_size`` bytes as the
compressed data grows. It filters at most ``BATCH_BYTES`` of raw rows at a time, so it holds
about 9 MB whatever the image's size (measured with tracemalloc), plus the caller's strip:

    with open("out.png", "wb") as f, PNGWriter(f, width, height, "RGB", icc_profile=icc) as png:
        for strip in strips:                 # uint8 [n, width, 3]
            png.write_rows(strip)
    write_png("small.png", array, exif=exif) # a whole array at once

8 bits per sample, modes "L", "LA", "RGB", "RGBA", no interlacing. Each row gets the filter
(None, Sub, Up, Average, Paeth) whose output has the least sum of absolute values taken as signed
bytes: the heuristic of libpng and Pillow. Deflate runs with Pillow's settings (the Z_FILTERED
strategy, memLevel 9), so sizes match Pillow's at the same ``compress_level`` (within 0.5 %
on photos). At levels 2 to 9 it is zlib-ng's (the ``zlib-ng`` package, a dependency; Python's
zlib where it is missing): the same format and sizes, about twice as fast as zlib at level 6
(benchmarks/png_deflate.py). ``workers=N`` deflates in N threads (see PNGWriter).

Metadata, all before the first IDAT: ``icc_profile`` as iCCP (name b"ICC profile"), ``exif``
as eXIf (raw TIFF bytes; a leading b"Exif\\0\\0", as Pillow and JPEG's APP1 carry it, is
stripped), ``xmp`` as an uncompressed iTXt chunk with keyword "XML:com.adobe.xmp" (the Adobe
convention that Pillow and exiftool read).
"""

from __future__ import annotations

import os
import struct
import zlib

try:
    from zlib_ng import zlib_ng
except ImportError:  # Python's zlib: the same stream, slower
    zlib_ng = None
from pathlib import Path

import numpy as np

__all__ = ["PNGWriter", "write_png", "MODES"]

MODES = {"L": (0, 1), "LA": (4, 2), "RGB": (2, 3), "RGBA": (6, 4)}  # mode: (colour type, channels)
SIGNATURE = b"\x89PNG\r\n\x1a\n"
BATCH_BYTES = 1 << 19  # raw bytes filtered at once: temporaries stay in cache, memory bounded


def _deflater(level: int):
    """The zlib module that deflates at ``level``: zlib-ng at 2 to 9 (and -1, the default 6), the
    same sizes as zlib in about half the time; zlib at 0 and 1, where zlib-ng's fastest strategy
    makes photos half as large again."""
    return zlib_ng if zlib_ng is not None and (level == -1 or level >= 2) else zlib


def _chunk(kind: bytes, data: bytes | bytearray | memoryview = b"") -> bytes:
    return b"".join((struct.pack(">I", len(data)), kind, data,
                     struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))))


def _cost(f: np.ndarray) -> np.ndarray:
    """Per row, the sum of |byte| with bytes read as signed: min(v, 256 - v) is |int8(v)| as uint8."""
    return np.abs(f.view(np.int8)).view(np.uint8).sum(axis=1, dtype=np.uint32)


def filter_rows(buf: np.ndarray, n: int, length: int, bpp: int) -> np.ndarray:
    """PNG-filtered rows, [n, 1 + length] uint8, each with its cheapest filter. ``buf`` is 1-D
    uint8: ``bpp`` zeros, the row above the first (zeros at the top of the image), the n rows.
    Every filter is computed on flat, contiguous views (fast); the first pixel of each row, whose
    left neighbours are then wrongly the end of the row above, is redone at the end. Names as in
    the PNG specification: x the byte, a its left, b its upper and c its upper-left neighbour."""
    N = n * length
    o = bpp + length
    x, a, b, c = buf[o:o + N], buf[o - bpp:o - bpp + N], buf[bpp:bpp + N], buf[:N]
    out = np.empty((5, N), np.uint8)
    out[0] = x
    np.subtract(x, a, out=out[1])
    np.subtract(x, b, out=out[2])
    avg = a >> 1
    avg += b >> 1
    avg += a & b & 1
    np.subtract(x, avg, out=out[3])
    ac = a.astype(np.int16)
    ac -= c
    bc = b.astype(np.int16)
    bc -= c
    pc = ac + bc
    np.abs(pc, out=pc)
    np.abs(ac, out=ac)
    np.abs(bc, out=bc)
    m1 = bc <= ac
    m1 &= bc <= pc          # pa <= pb and pa <= pc: predict a
    m2 = ac <= pc                           # pb <= pc: predict b, else c
    m1u = np.negative(m1.view(np.uint8))
    m2u = np.negative(m2.view(np.uint8))
    pred = (b & m2u) | (c & ~m2u)
    pred &= ~m1u
    pred |= a & m1u
    np.subtract(x, pred, out=out[4])
    out = out.reshape(5, n, length)
    # the first pixel of each row has no left neighbour (a = c = 0)
    xs, bs = out[0, :, :bpp], buf[bpp:bpp + N].reshape(n, length)[:, :bpp]
    out[1, :, :bpp] = xs
    np.subtract(xs, bs >> 1, out=out[3, :, :bpp])
    out[4, :, :bpp] = out[2, :, :bpp]
    best = np.argmin(np.stack([_cost(out[k]) for k in range(5)]), axis=0)
    rows = np.empty((n, 1 + length), np.uint8)
    rows[:, 0] = best
    rows[:, 1:] = out[best, np.arange(n)]
    return rows


class PNGWriter:
    """Writes a PNG to a binary file object strip by strip; see the module docstring.

    ``workers`` > 1 deflates segments of about ``BATCH_BYTES`` in that many threads (zlib and
    numpy release the GIL), each segment primed with the last 32 KiB before it, as pigz does: the
    image data are still one zlib stream, within 0.1 % of the single-threaded size.
    """

    def __init__(self, file, width: int, height: int, mode: str = "RGB", *, icc_profile: bytes | None = None,
                 exif: bytes | None = None, xmp: bytes | str | None = None, compress_level: int = 6,
                 idat_size: int = 1 << 20, workers: int = 1):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if not (0 < width < 2**31 and 0 < height < 2**31):
            raise ValueError(f"{width}x{height}: a PNG's sides are 1 to 2**31 - 1 pixels")
        if not -1 <= compress_level <= 9:
            raise ValueError(f"compress_level {compress_level} is not -1 to 9")
        self.file, self.width, self.height, self.mode = file, width, height, mode
        colour_type, self.channels = MODES[mode]
        self.row_bytes = width * self.channels
        self.rows_written = 0
        self.closed = False
        self._level, self._idat_size = compress_level, max(1, idat_size)
        self._prev = np.zeros(self.row_bytes, np.uint8)  # the row above the next one
        self._pending = bytearray()  # compressed bytes not yet in an IDAT chunk
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._pool, self._jobs = ThreadPoolExecutor(workers, "pngstream"), []
            self._max_jobs, self._adler, self._tail = 2 * workers, 1, b""
            self._pending += _deflater(compress_level).compressobj(compress_level, zlib.DEFLATED, 15, 9,
                                                                   zlib.Z_FILTERED).flush()[:2]
        else:
            self._pool = None
            self._z = _deflater(compress_level).compressobj(compress_level, zlib.DEFLATED, 15, 9, zlib.Z_FILTERED)
        head = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))]
        if icc_profile:
            head.append(_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(bytes(icc_profile))))
        if exif:
            exif = bytes(exif)
            head.append(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
        if xmp:
            xmp = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
            head.append(_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp))
        file.write(b"".join(head))

    def write_rows(self, rows: np.ndarray) -> None:
        """Appends a strip of rows: uint8 [n, width, channels] ([n, width] also for "L")."""
        if self.closed:
            raise ValueError("write_rows on a closed PNGWriter")
        rows = np.asarray(rows)
        if rows.dtype != np.uint8:
            raise ValueError(f"rows must be uint8, not {rows.dtype}")
        if rows.ndim == 2 and self.channels == 1:
            rows = rows[:, :, None]
        if rows.ndim != 3 or rows.shape[1:] != (self.width, self.channels):
            raise ValueError(f"rows of shape {rows.shape}; expected [n, {self.width}, {self.channels}]"
                             f" for {self.mode}")
        n, length, bpp = rows.shape[0], self.row_bytes, self.channels
        if self.rows_written + n > self.height:
            raise ValueError(f"{self.rows_written + n} rows written to an image {self.height} high")
        step = max(1, BATCH_BYTES // length)
        for start in range(0, n, step):
            part = rows[start:start + step]
            m = len(part)
            buf = np.empty(bpp + (m + 1) * length, np.uint8)
            buf[:bpp] = 0
            buf[bpp:bpp + length] = self._prev
            buf[bpp + length:].reshape(m, self.width, bpp)[:] = part
            self._prev = buf[-length:].copy()
            self._deflate(filter_rows(buf, m, length, bpp))
        self.rows_written += n

    def _deflate(self, data, final: bool = False) -> None:
        if self._pool is None:
            self._pending += self._z.flush() if final else self._z.compress(data)
        else:
            data = data.tobytes() if isinstance(data, np.ndarray) else data
            self._adler = zlib.adler32(data, self._adler)
            self._jobs.append(self._pool.submit(_deflate_segment, data, self._tail, self._level, final))
            self._tail = data[-32768:] if len(data) >= 32768 else (self._tail + data)[-32768:]
            while self._jobs and (final or len(self._jobs) >= self._max_jobs or self._jobs[0].done()):
                self._pending += self._jobs.pop(0).result()
            if final:
                self._pending += struct.pack(">I", self._adler)
        self._flush_idat(final)

    def _flush_idat(self, final: bool) -> None:
        size, pending = self._idat_size, self._pending
        whole = len(pending) if final else len(pending) - len(pending) % size
        if whole:
            with memoryview(pending) as view:
                self.file.write(b"".join(_chunk(b"IDAT", view[i:i + size]) for i in range(0, whole, size)))
            del pending[:whole]

    def close(self) -> None:
        """Ends the image (IEND); ValueError unless exactly ``height`` rows were written. The file
        object stays open (it is the caller's)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.rows_written != self.height:
                raise ValueError(f"{self.rows_written} rows written to an image {self.height} high")
            self._deflate(b"", final=True)
            self.file.write(_chunk(b"IEND"))
            if hasattr(self.file, "flush"):
                self.file.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> "PNGWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # an error is on its way: leave the file as it is, raise nothing more
            self.closed = True
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)


def _deflate_segment(data: bytes, primer: bytes, level: int, final: bool) -> bytes:
    """Raw deflate of one segment of the stream: primed with the 32 KiB before it, ended on a byte
    boundary (Z_SYNC_FLUSH), or with the last block (Z_FINISH)."""
    z = _deflater(level).compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_FILTERED, *([primer] if primer else []))
    return z.compress(data) + z.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


def deflate_workers(size: int) -> int:
    """Threads that deflate a PNG of ``size`` bytes of pixels: up to 4 CPUs above 4 MiB, else one."""
    return min(os.cpu_count() or 1, 4) if size > 1 << 22 else 1


def write_png(file, array: np.ndarray, mode: str | None = None, **options) -> None:
    """Writes a whole uint8 array ([H, W] or [H, W, C], C in 1-4) as a PNG to a path or a binary
    file object; ``options`` are PNGWriter's (icc_profile, exif, xmp, compress_level)."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"array of shape {array.shape} is not [H, W] or [H, W, 1-4]")
    mode = mode or {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
    if isinstance(file, (str, Path)):
        with open(file, "wb") as f:
            write_png(f, array, mode, **options)
        return
    with PNGWriter(file, array.shape[1], array.shape[0], mode, **options) as png:
        png.write_rows(array)
