"""The coding network run tile by tile (docs/method.md, "Tiled coding"): the analysis of an image,
the entropy coding of y tile by tile, and the decoding and synthesis of the tiles a region needs.

    y, z = analyse(model.net, image, grid)                         # whole latents, tile by tile
    z_string, y_strings, y_hat = code_streams(coding, y, z, grid, context, pool)
    decoder = TileDecoder.from_streams(coding, grid, context, z_string, y_strings, pool)
    for strip in decoder.strips(region):                             # uint8 rows, top to bottom
        ...

Every transform is the model's own modules, called tile by tile on crops that hold the exact
halo each tile's receptive field needs (network/tiling.py), so tiled outputs equal the
whole-image ones up to float rounding; the encoder and the decoder compute each tile the same
way (the grid is in the file), so they agree exactly. Each tile's y is one rANS stream coded with
the scales and means h_s computes for that tile, and decodes alone. Context models (mbt2018,
cheng2020-*) keep CompressAI's sequential y coding over the whole image (one stream); their
transforms are tiled.
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor
from typing import Callable, Iterator

import numpy as np
import torch

from ..network import streams
from ..network.grid import Grid, Tile
from ..network.tiling import needs, run_tile
from .pixels import to_uint8


def pixel_reader(image: np.ndarray) -> Callable:
    """read(r0, r1, c0, c1): the [1, 3, h, w] float32 crop of the image padded right and bottom by
    edge replication (what pixels.pad gives the whole image), converted from uint8 crop by crop."""
    height, width = image.shape[:2]

    def read(r0, r1, c0, c1):
        rows = np.minimum(np.arange(r0, r1), height - 1)
        cols = np.minimum(np.arange(c0, c1), width - 1)
        crop = image[rows[:, None], cols[None, :]]
        return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float().div_(255.0)[None]

    return read


def analyse(net, image, grid: Grid, has_means: bool = True,
            pool: Executor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, z) of one RGB uint8 image (the pixels converted crop by crop, never the whole image in
    float), or of a batch of padded images already in float [B, 3, Hp, Wp] on any device: g_a tile
    by tile, then h_a (on |y| for ScaleHyperprior) tile by tile, the tiles in parallel on ``pool``
    when given."""
    if isinstance(image, torch.Tensor):
        source, size = image, None
    else:
        source, size = pixel_reader(image), grid.padded
    y = _tiled(lambda t: run_tile(net.g_a, source, t.y[::2], t.y[1::2], in_size=size), grid, grid.y_size, pool)
    source = y if has_means else y.abs()
    return y, _tiled(lambda t: run_tile(net.h_a, source, [v // 4 for v in t.y[::2]], [v // 4 for v in t.y[1::2]]),
                     grid, grid.z_size, pool, scale=4)


def _tiled(compute: Callable, grid: Grid, size, pool: Executor | None, scale: int = 1) -> torch.Tensor:
    """The whole output [1, C, *size] of ``compute(tile)`` over every tile (its y rectangle divided
    by ``scale``), each written into its place; the first tile gives the channel count."""
    @torch.no_grad()  # grad mode is per thread
    def place(tile: Tile) -> None:
        r0, r1, c0, c1 = (v // scale for v in tile.y)
        out[..., r0:r1, c0:c1] = compute(tile)

    with torch.no_grad():
        first = compute(grid.tiles[0])
    out = first.new_empty(first.size(0), first.size(1), *size)
    r0, r1, c0, c1 = (v // scale for v in grid.tiles[0].y)
    out[..., r0:r1, c0:c1] = first
    rest = grid.tiles[1:]
    list(pool.map(place, rest) if pool is not None else map(place, rest))
    return out


def tile_params(coding, z_hat: torch.Tensor, tile: Tile) -> torch.Tensor:
    """h_s's output over one tile's y rectangle, from the decoded z^."""
    r0, r1, c0, c1 = tile.y
    return run_tile(coding.h_s, z_hat, (r0, c0), (r1, c1))


def whole_params(coding, z_hat: torch.Tensor, grid: Grid) -> torch.Tensor:
    """h_s's output over the whole y, computed tile by tile (for context models' sequential coder)."""
    out = None
    for tile in grid.tiles:
        part = tile_params(coding, z_hat, tile)
        if out is None:
            out = part.new_empty(1, part.size(1), *grid.y_size)
        r0, r1, c0, c1 = tile.y
        out[..., r0:r1, c0:c1] = part
    return out


@torch.no_grad()
def code_streams(coding, y: torch.Tensor, z: torch.Tensor, grid: Grid, context: bool,
                 pool: Executor) -> tuple[bytes, list[bytes], torch.Tensor]:
    """One image's latents [1, ...] into its z string and its y strings (one per tile, or one for a
    context model), with y^ as the decoder will decode it."""
    z_string, z_hat = streams.encode_z(coding, z)
    if context:
        params = whole_params(coding, z_hat, grid)
        string = streams.encode_y_context(coding, y, params)
        return z_string, [string], streams.decode_y_context(coding, string, params, grid.y_size)
    y_hat = torch.empty_like(y)

    @torch.no_grad()  # grad mode is per thread: each worker's own
    def code(tile: Tile) -> bytes:
        r0, r1, c0, c1 = tile.y
        scales, means = streams.split_params(coding, tile_params(coding, z_hat, tile))
        part = y[..., r0:r1, c0:c1].contiguous()
        y_hat[..., r0:r1, c0:c1] = streams.quantized_y(part, means)
        return streams.encode_y(coding, part, scales, means)

    return z_string, list(pool.map(code, grid.tiles)), y_hat


def synthesize(coding, read_y: Callable, grid: Grid, tile: Tile) -> np.ndarray:
    """One synthesis block's (or tile's) pixels, uint8 [h, w, 3]: g_s over its rectangle inside
    the image."""
    r0, r1, c0, c1 = tile.pixels
    with torch.no_grad():
        x_hat = run_tile(coding.g_s, read_y, (r0, c0), (r1, c1), in_size=grid.y_size)
    return to_uint8(x_hat[0].clamp_(0, 1))


class TileDecoder:
    """Decodes one file's tiles: z^ at once, each y tile when a synthesis needs it (with h_s over
    that tile), each synthesis block's pixels from the y^ its halo reaches. ``strips`` yields the
    image (or a region of it) as row strips, top to bottom, each row of blocks computed in parallel
    on ``pool`` and only the y^ of the tile rows its halo reaches kept."""

    def __init__(self, coding, grid: Grid, pool: Executor, on_tile: Callable[[], None] | None = None):
        self.coding, self.grid, self.pool = coding, grid, pool
        self.on_tile = on_tile or (lambda: None)  # called once per tile synthesised
        self.z_hat, self.y_strings = None, None
        self.y_hat: dict[int, torch.Tensor] = {}
        self.lock = threading.Lock()

    @classmethod
    def from_streams(cls, coding, grid: Grid, context: bool, z_string: bytes, y_strings, pool: Executor,
                     on_tile: Callable[[], None] | None = None) -> "TileDecoder":
        """The decoder of a file's streams (untrusted: decoded twice where CompressAI allows)."""
        self = cls(coding, grid, pool, on_tile)
        self.y_strings = list(y_strings)
        # the minimal-filtering layers' weights, transformed on the workers while z decodes here
        warming = [pool.submit(m.transformed_weights, m.layer.weight.dtype) for m in coding.modules()
                   if hasattr(m, "transformed_weights")]
        self.z_hat = streams.decode_z(coding, z_string, grid.z_size)
        for done in warming:
            done.result()
        if context:  # one sequential stream: the whole y^ at once
            whole = streams.decode_y_context(coding, self.y_strings[0], whole_params(coding, self.z_hat, grid),
                                             grid.y_size)
            self._keep_all(whole)
        return self

    @classmethod
    def from_y_hat(cls, coding, grid: Grid, y_hat: torch.Tensor, pool: Executor) -> "TileDecoder":
        """The synthesis of known y^ (the encoder's, which is what its streams decode to)."""
        self = cls(coding, grid, pool)
        self._keep_all(y_hat)
        return self

    def _keep_all(self, y_hat: torch.Tensor) -> None:
        """Every tile's y^ as a view of the whole ``y_hat`` (read, never written: ``read_y`` copies
        from it), not a copy: copies doubled the encoder's y^ (144 MB more at 48 MP)."""
        for tile in self.grid.tiles:
            r0, r1, c0, c1 = tile.y
            self.y_hat[tile.index] = y_hat[..., r0:r1, c0:c1]
        self.y_strings = None  # nothing to decode, nothing to evict

    @torch.no_grad()
    def _decode_y(self, tile: Tile) -> None:
        scales, means = streams.split_params(self.coding, tile_params(self.coding, self.z_hat, tile))
        y_hat = streams.decode_y(self.coding, self.y_strings[tile.index], scales, means)
        with self.lock:
            self.y_hat[tile.index] = y_hat

    def y_tiles_for(self, tile: Tile) -> list[Tile]:
        """The y tiles a tile's synthesis reads: those its g_s dependencies meet."""
        (yh, yw), (r0, r1, c0, c1) = self.grid.y_size, tile.pixels
        rows = needs(self.coding.g_s, r0, r1 - 1, yh, 0)
        cols = needs(self.coding.g_s, c0, c1 - 1, yw, 1)
        return self.grid.meeting_y(rows[0], rows[1] + 1, cols[0], cols[1] + 1)

    def read_y(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """The y^ crop [1, M, r1 - r0, c1 - c0] from the decoded tiles it meets."""
        parts = self.grid.meeting_y(r0, r1, c0, c1)
        first = self.y_hat[parts[0].index]
        out = first.new_empty(1, first.size(1), r1 - r0, c1 - c0)
        for t in parts:
            a0, a1, b0, b1 = t.y
            i0, i1, j0, j1 = max(a0, r0), min(a1, r1), max(b0, c0), min(b1, c1)
            part = self.y_hat[t.index][..., i0 - a0 : i1 - a0, j0 - b0 : j1 - b0]
            out[..., i0 - r0 : i1 - r0, j0 - c0 : j1 - c0] = part
        return out

    def image(self, region: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """The whole image, or ``region`` (r0, r1, c0, c1), uint8 [h, w, 3], filled strip by strip."""
        r0, r1, c0, c1 = region or (0, self.grid.height, 0, self.grid.width)
        out, row = None, 0
        for strip in self.strips(region):
            if out is None:
                out = np.empty((r1 - r0, c1 - c0, strip.shape[2]), dtype=np.uint8)
            out[row : row + strip.shape[0]] = strip
            row += strip.shape[0]
        return out

    def strips(self, region: tuple[int, int, int, int] | None = None) -> Iterator[np.ndarray]:
        """uint8 strips [h, w, 3] of the image, or of ``region`` (r0, r1, c0, c1), top to bottom."""
        r0, r1, c0, c1 = region or (0, self.grid.height, 0, self.grid.width)
        wanted = self.grid.blocks.covering(r0, r1, c0, c1)  # synthesis blocks
        rows = sorted({t.row for t in wanted})
        blocks = {i: [t for t in wanted if t.row == i] for i in rows}
        needed = {i: {y.index: y for t in blocks[i] for y in self.y_tiles_for(t)} for i in rows}
        pending: dict = {}  # y tiles being decoded: their futures

        def decode(tiles) -> None:
            for k, y in tiles.items():
                if k not in self.y_hat and k not in pending:
                    pending[k] = self.pool.submit(self._decode_y, y)

        def synth(tile: Tile) -> np.ndarray:
            out = synthesize(self.coding, self.read_y, self.grid, tile)
            self.on_tile()
            return out

        def strip_of(tiles, synthesised) -> np.ndarray:
            parts = [f.result() for f in synthesised]  # the blocks of a row
            top, bottom = max(tiles[0].pixels[0], r0), min(tiles[0].pixels[1], r1)
            strip = np.empty((bottom - top, c1 - c0, parts[0].shape[2]), dtype=np.uint8)
            for t, part in zip(tiles, parts):
                a, b = max(t.pixels[2], c0), min(t.pixels[3], c1)
                inside = slice(top - t.pixels[0], bottom - t.pixels[0]), slice(a - t.pixels[2], b - t.pixels[2])
                strip[:, a - c0 : b - c0] = part[inside]
            return strip

        in_flight: list = []  # (row, its blocks, their futures): at most this row and the one before
        for n, i in enumerate(rows):
            decode(needed[i])
            for k in needed[i]:
                if k in pending:
                    pending.pop(k).result()
            keep_from = min(y.row for j in [i] + [row for row, _, _ in in_flight] for y in needed[j].values())
            for k in [k for k in self.y_hat if self.y_strings and self.grid.tiles[k].row < keep_from]:
                del self.y_hat[k]  # rows above the halos of the rows in flight, and the rows below
            if n + 1 < len(rows):  # the next row's y tiles, queued before this row's blocks so
                decode(needed[rows[n + 1]])  # that the next row's blocks can follow on without a gap
            in_flight.append((i, blocks[i], [self.pool.submit(synth, t) for t in blocks[i]]))
            if len(in_flight) > 1:  # the row before: its blocks ran while this row's were queued
                _, tiles, synthesised = in_flight.pop(0)
                yield strip_of(tiles, synthesised)
        for _, tiles, synthesised in in_flight:
            yield strip_of(tiles, synthesised)
