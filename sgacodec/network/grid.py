"""The tile grid of an image (docs/method.md, "Tiled coding"): torch-free geometry.

An image of H x W pixels is padded to Hp x Wp, multiples of 64; y is Hp/16 x Wp/16 and z
Hp/64 x Wp/64. A grid of side T pixels (a multiple of 64; 0: one tile, the whole image) cuts the
padded image into tiles, row by row, the last row and column smaller:

    tile (i, j): pixels [i T, min((i + 1) T, Hp)) x [j T, min((j + 1) T, Wp)),
                 y      [i T/16, ...) and z [i T/64, ...) likewise

Each tile is one y stream in the file, and one unit of work for the analysis and h_s, which
compute it from the exact halo its receptive field needs (network/tiling.py). The synthesis g_s
works in blocks of at most SYNTHESIS_BLOCK pixels (a grid of its own, ``Grid.blocks``: smaller
crops run faster and in less memory); a tile's or a block's pixels are those of its rectangle
inside the image (the padding is never output).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..config import LATENT_MULTIPLE

Y_STRIDE = 16  # pixels per y element (g_a downsamples by 16)
SYNTHESIS_BLOCK = 256  # the side of g_s's blocks in tiled files (measured: docs/performance.md)


@dataclass(frozen=True)
class Tile:
    """One tile: its place in the grid, its y rectangle and its pixels (r0, r1, c0, c1)."""

    index: int
    row: int
    col: int
    y: tuple[int, int, int, int]
    pixels: tuple[int, int, int, int]


@dataclass(frozen=True)
class Grid:
    """The tile grid of an image of ``height`` x ``width`` with tiles of side ``tile`` pixels."""

    height: int
    width: int
    tile: int  # pixels, a multiple of 64; 0: the whole image is one tile

    def __post_init__(self):
        if self.tile < 0 or self.tile % LATENT_MULTIPLE:
            raise ValueError(f"tile size {self.tile} is not 0 or a multiple of {LATENT_MULTIPLE}")

    @property
    def padded(self) -> tuple[int, int]:
        return tuple(-(-n // LATENT_MULTIPLE) * LATENT_MULTIPLE for n in (self.height, self.width))

    @property
    def y_size(self) -> tuple[int, int]:
        return tuple(n // Y_STRIDE for n in self.padded)

    @property
    def z_size(self) -> tuple[int, int]:
        return tuple(n // LATENT_MULTIPLE for n in self.padded)

    @property
    def y_tile(self) -> tuple[int, int]:
        """The side of a (full) tile in y elements."""
        return self.y_size if self.tile == 0 else (self.tile // Y_STRIDE,) * 2

    @cached_property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of tiles."""
        return tuple(-(-n // t) for n, t in zip(self.y_size, self.y_tile))

    @cached_property
    def tiles(self) -> list[Tile]:
        (rows, cols), (th, tw), (yh, yw) = self.shape, self.y_tile, self.y_size
        out = []
        for i in range(rows):
            for j in range(cols):
                y = (i * th, min((i + 1) * th, yh), j * tw, min((j + 1) * tw, yw))
                pixels = (y[0] * Y_STRIDE, min(y[1] * Y_STRIDE, self.height),
                          y[2] * Y_STRIDE, min(y[3] * Y_STRIDE, self.width))
                out.append(Tile(len(out), i, j, y, pixels))
        return out

    def __len__(self) -> int:
        return len(self.tiles)

    @cached_property
    def blocks(self) -> "Grid":
        """The synthesis's grid: blocks of SYNTHESIS_BLOCK pixels within tiled grids (a multiple of
        it divides every tile side at least as large), the whole image for one tile."""
        if self.tile == 0 or self.tile <= SYNTHESIS_BLOCK:
            return self
        return Grid(self.height, self.width, SYNTHESIS_BLOCK)

    def row(self, i: int) -> list[Tile]:
        cols = self.shape[1]
        return self.tiles[i * cols : (i + 1) * cols]

    def covering(self, r0: int, r1: int, c0: int, c1: int) -> list[Tile]:
        """The tiles whose pixels meet the rectangle [r0, r1) x [c0, c1), row by row."""
        return [t for t in self.tiles if t.pixels[0] < r1 and r0 < t.pixels[1]
                and t.pixels[2] < c1 and c0 < t.pixels[3]]

    def meeting_y(self, r0: int, r1: int, c0: int, c1: int) -> list[Tile]:
        """The tiles whose y rectangles meet [r0, r1) x [c0, c1) (y elements)."""
        return [t for t in self.tiles if t.y[0] < r1 and r0 < t.y[1] and t.y[2] < c1 and c0 < t.y[3]]
