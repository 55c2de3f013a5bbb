"""Exact tiled execution of CompressAI's transforms (g_a, h_a, h_s, g_s).

A transform is an ``nn.Sequential`` of layers. To compute its output over a rectangle (a tile)
without the whole input in memory, each layer is called on a crop of its input that holds
everything the wanted outputs depend on, and its output is trimmed to what the next layer needs.
The crops are derived from the layers, never measured: rows and columns are independent, so each
axis is an interval problem.

Dependencies. For an output interval [lo, hi] (inclusive, global indices) a layer *needs* an
input interval, clipped to the input's domain [0, n_in) (what lies outside is zero padding or
nothing, not data):

- Conv2d (kernel k, stride s, padding p, dilation d, any groups): output o reads inputs
  s o - p + d j, j = 0..k-1, so [lo, hi] needs [s lo - p, s hi - p + d (k-1)];
  n_out = floor((n_in + 2p - d (k-1) - 1) / s) + 1.
- ConvTranspose2d (k, s, p, output padding op, dilation 1): input i reaches outputs
  s i - p .. s i - p + k - 1, so [lo, hi] needs [ceil((lo + p - k + 1) / s), floor((hi + p) / s)];
  n_out = (n_in - 1) s - 2p + k + op.
- PixelShuffle(r): output o is input floor(o / r); n_out = r n_in.
- pointwise layers (GDN, ReLU, ...): the identity. A chain (Sequential): the composition, each
  layer's input size from the previous ones' ``output_size``.
- a composite CompressAI block (ResidualBlock, AttentionBlock, ...) is a sum (or product) of
  branches, each a chain of its children, possibly with an identity skip: it needs the hull of
  what its branches need (``_BLOCKS`` lists the branches per class).

Alignment. Called on the crop [a, b) of its input (half-open from here on):

- a Conv2d with a % s == 0 gives the outputs a/s + j, exact where their inputs lie in [a, b) or
  outside the domain (its own zero padding is only right at the domain's edges). So the crop is
  [needs rounded down to a multiple of s, needs' end]: no rounding up is needed at the end, as
  the unclipped end s hi - p + d (k-1) + 1 already makes the output length formula reach hi, and
  a clipped one (b = n_in) reaches n_out - 1.
- a ConvTranspose2d gives the outputs s a + j, j < (b - a - 1) s + e with e = k - 2p + op (for
  CompressAI's deconvs e = s: outputs [s a, s b)). The crop is extended so that s a <= lo and
  s (b - 1) + e >= hi, which the needed interval alone need not satisfy when e != s or k < p + s.
- a PixelShuffle gives [r a, r b); a pointwise layer [a, b).
- a block is called whole on its crop, its inner layers untrimmed: its output o is exact if all
  of o's (hull) dependencies are in the crop, as for a single layer. The crop starts at the
  needed start rounded down to a multiple of the block's alignment (the stride product that
  keeps every inner strided conv aligned, ``_align``); every branch must produce the same span.

Execution (``run_tile``) is lazy and recursive: the last layer of a Sequential asks the layer
before it for exactly its crop, and so on down to the input reader; only the crops of one tile
live at a time. A layer with a ``forward_window(x, window)`` method (WinogradConv) computes only
the outputs kept, not its crop's whole output. sgacodec's float64 wrappers are recognised by
shape (nothing is imported from sgacodec): ``InFloat64`` (``module(x.double()).to(x.dtype)``)
converts each crop read from its input once and runs its module tiled; a module whose only
parameters are those of its ``.layer``, a Conv2d or ConvTranspose2d (TapConvTranspose2d,
WinogradConv), is that layer; one whose only child is ``.gdn`` (MatmulGDN) is pointwise.
Anything else raises ``UnsupportedLayer``: compute the whole image.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import nn

from .compressai_import import import_compressai

__all__ = ["UnsupportedLayer", "needs", "output_size", "scale", "halo", "run_tile", "tiles", "run_tiled"]


class UnsupportedLayer(ValueError):
    """A module whose dependencies this file cannot derive: compute the whole image instead."""


def _pointwise() -> tuple:
    """The layers computed value by value: activations and CompressAI's GDN (and inverse GDN)."""
    import_compressai()
    from compressai.layers import GDN

    return (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Identity, GDN)

# CompressAI blocks by class name: their branches, chains of child attributes (an attribute that
# is None, ResidualBlock's absent skip, or an empty chain is the identity). Children left out
# must be pointwise (ResidualUnit's relu, applied after its sum).
_BLOCKS = {
    "ResidualBlock": (("conv1", "leaky_relu", "conv2", "leaky_relu"), ("skip",)),
    "ResidualBlockWithStride": (("conv1", "leaky_relu", "conv2", "gdn"), ("skip",)),
    "ResidualBlockUpsample": (("subpel_conv", "leaky_relu", "conv", "igdn"), ("upsample",)),
    "AttentionBlock": (("conv_a",), ("conv_b",), ()),  # conv_a(x) * sigmoid(conv_b(x)) + x
    "ResidualUnit": (("conv",), ()),  # AttentionBlock's: relu(conv(x) + x)
}


def _kind(m: nn.Module):
    """(kind, payload): 'seq' or 'f64' [modules], 'block' [Sequential per branch], 'conv' or
    'deconv' the torch layer, 'shuffle' r, 'point' None. Raises UnsupportedLayer otherwise."""
    t, ours = type(m), type(m).__module__.startswith("compressai.")
    if t.forward is nn.Sequential.forward:
        return "seq", list(m)
    if t.__name__ == "InFloat64" and isinstance(getattr(m, "module", None), nn.Module):
        return "f64", [m.module]
    layer = getattr(m, "layer", None)
    if (isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
            and {id(p) for p in m.parameters()} == {id(p) for p in layer.parameters()}):
        m, t, ours = layer, type(layer), type(layer).__module__.startswith("compressai.")
    for cls, kind in ((nn.Conv2d, "conv"), (nn.ConvTranspose2d, "deconv")):
        if isinstance(m, cls) and (t.forward is cls.forward or ours):
            if isinstance(m.padding, str) or m.padding_mode != "zeros" or (kind == "deconv" and m.dilation != (1, 1)):
                raise UnsupportedLayer(f"{t.__name__}: padding {m.padding!r} ({m.padding_mode}), dilation {m.dilation}")
            return kind, m
    if isinstance(m, nn.PixelShuffle):
        return "shuffle", m.upscale_factor
    if isinstance(m, _pointwise()) or [n for n, _ in m.named_children()] == ["gdn"]:
        return "point", None
    if ours and t.__name__ in _BLOCKS:
        table = _BLOCKS[t.__name__]
        for name, child in m.named_children():
            if not any(name in branch for branch in table) and _kind(child)[0] != "point":
                raise UnsupportedLayer(f"{t.__name__} has a child {name!r} outside its table")
        return "block", [nn.Sequential(*(getattr(m, a) for a in branch if getattr(m, a) is not None))
                         for branch in table]
    raise UnsupportedLayer(f"cannot tile {t.__module__}.{t.__qualname__}")


def _params(layer, axis):
    """(k, s, p, d, op) of a Conv2d or ConvTranspose2d along ``axis``."""
    return tuple(getattr(layer, a)[axis] for a in ("kernel_size", "stride", "padding", "dilation", "output_padding"))


def _chain_sizes(mods, n, axis):
    sizes = [n]
    for m in mods:
        sizes.append(output_size(m, sizes[-1], axis))
    return sizes


def output_size(module: nn.Module, n_in: int, axis: int = 0) -> int:
    """Output length along ``axis`` for input length n_in: Conv2d floor((n + 2p - d(k-1) - 1)/s) + 1,
    ConvTranspose2d (n - 1)s - 2p + k + op, PixelShuffle r n, pointwise n, chains composed."""
    kind, x = _kind(module)
    if kind in ("seq", "f64"):
        return _chain_sizes(x, n_in, axis)[-1]
    if kind == "block":
        sizes = {output_size(branch, n_in, axis) for branch in x}
        if len(sizes) != 1:
            raise UnsupportedLayer(f"{type(module).__name__}: branches of lengths {sorted(sizes)}")
        return sizes.pop()
    if kind == "shuffle":
        return x * n_in
    if kind == "point":
        return n_in
    k, s, p, d, op = _params(x, axis)
    return (n_in + 2 * p - d * (k - 1) - 1) // s + 1 if kind == "conv" else (n_in - 1) * s - 2 * p + k + op


def _chain_needs(mods, lo, hi, n, axis):
    for m, n_m in zip(reversed(mods), reversed(_chain_sizes(mods, n, axis)[:-1])):
        lo, hi = needs(m, lo, hi, n_m, axis)
    return lo, hi


def needs(module: nn.Module, lo: int, hi: int, n_in: int, axis: int = 0) -> tuple[int, int]:
    """The input interval [lo_in, hi_in] (inclusive, clipped to [0, n_in)) that outputs [lo, hi]
    depend on along ``axis``: Conv2d [s lo - p, s hi - p + d(k-1)], ConvTranspose2d
    [ceil((lo + p - k + 1)/s), floor((hi + p)/s)], PixelShuffle [floor(lo/r), floor(hi/r)],
    pointwise [lo, hi]; chains composed, blocks the hull of their branches."""
    kind, x = _kind(module)
    if kind in ("seq", "f64"):
        return _chain_needs(x, lo, hi, n_in, axis)
    if kind == "block":
        ends = [needs(branch, lo, hi, n_in, axis) for branch in x]
        lo_in, hi_in = min(e[0] for e in ends), max(e[1] for e in ends)
    elif kind == "conv":
        k, s, p, d, _ = _params(x, axis)
        lo_in, hi_in = s * lo - p, s * hi - p + d * (k - 1)
    elif kind == "deconv":
        k, s, p, _, _ = _params(x, axis)
        lo_in, hi_in = -((k - 1 - p - lo) // s), (hi + p) // s
    elif kind == "shuffle":
        lo_in, hi_in = lo // x, hi // x
    else:
        lo_in, hi_in = lo, hi
    lo_in, hi_in = max(lo_in, 0), min(hi_in, n_in - 1)
    if lo_in > hi_in:
        raise UnsupportedLayer(f"{type(module).__name__}: outputs {lo}..{hi} depend on no input")
    return lo_in, hi_in


def _span(module, a, b, axis):
    """The global outputs [oa, ob) that calling ``module`` on the input crop [a, b) gives:
    Conv2d [a/s, a/s + floor((b - a + 2p - d(k-1) - 1)/s) + 1) (a % s == 0), ConvTranspose2d
    [s a, s (b - 1) + k - 2p + op), PixelShuffle [r a, r b), pointwise [a, b)."""
    kind, x = _kind(module)
    if kind in ("seq", "f64"):
        for m in x:
            a, b = _span(m, a, b, axis)
        return a, b
    if kind == "block":
        spans = {_span(branch, a, b, axis) for branch in x}
        if len(spans) != 1:
            raise UnsupportedLayer(f"{type(module).__name__}: branches give outputs {sorted(spans)}")
        return spans.pop()
    if kind == "shuffle":
        return x * a, x * b
    if kind == "point":
        return a, b
    k, s, p, d, op = _params(x, axis)
    if kind == "deconv":
        return s * a, s * (b - 1) + k - 2 * p + op
    if a % s:
        raise UnsupportedLayer(f"{type(module).__name__}: crop at {a} not aligned to its stride {s}")
    return a // s, a // s + (b - a + 2 * p - d * (k - 1) - 1) // s + 1


def _align(module, mod, axis):
    """The modulus that a crop's start must be a multiple of so that every strided conv inside is
    aligned and the output starts at a multiple of ``mod``."""
    kind, x = _kind(module)
    if kind in ("seq", "f64"):
        for m in reversed(x):
            mod = _align(m, mod, axis)
        return mod
    if kind == "block":
        return math.lcm(*(_align(branch, mod, axis) for branch in x))
    if kind in ("conv", "deconv"):
        s = _params(x, axis)[1]
        return s * mod if kind == "conv" else mod // math.gcd(mod, s)
    return mod // math.gcd(mod, x) if kind == "shuffle" else mod


def _crop(module, kind, x, lo, hi, n, axis):
    """The input crop [a, b) to call ``module`` on for its outputs [lo, hi) (module docstring)."""
    a, b = needs(module, lo, hi - 1, n, axis)
    b += 1
    if kind == "conv":
        a -= a % _params(x, axis)[1]
    elif kind == "deconv":
        k, s, p, _, op = _params(x, axis)
        a, b = min(a, lo // s), max(b, -((k - 2 * p + op - hi) // s) + 1)
    elif kind == "block":
        a -= a % _align(module, 1, axis)
    b = min(b, n)
    oa, ob = _span(module, a, b, axis)
    if oa > lo or ob < hi:
        raise UnsupportedLayer(f"{type(module).__name__}: crop [{a}, {b}) gives [{oa}, {ob}), not [{lo}, {hi})")
    return a, b


def _run(module, read, n, lo, hi):
    """``module``'s output over [lo, hi) ((row, col) pairs, half-open), its input of size n
    given by read(lo, hi) over any rectangle."""
    kind, x = _kind(module)
    if kind == "seq":
        for m in x[:-1]:
            read, n = _reader(m, read, n), tuple(output_size(m, n[i], i) for i in (0, 1))
        return _run(x[-1], read, n, lo, hi) if x else read(lo, hi)
    if kind == "f64":
        dtypes = []

        def read64(lo_, hi_):
            crop = read(lo_, hi_)
            dtypes.append(crop.dtype)
            return crop.double()

        out = _run(x[0], read64, n, lo, hi)
        return out.to(dtypes[0])
    crop = [_crop(module, kind, x, lo[i], hi[i], n[i], i) for i in (0, 1)]
    span = [_span(module, *crop[i], i) for i in (0, 1)]
    inputs = read((crop[0][0], crop[1][0]), (crop[0][1], crop[1][1]))
    forward_window = getattr(module, "forward_window", None)
    if forward_window is not None:  # a layer that computes only the outputs kept (WinogradConv)
        y = forward_window(inputs, tuple((lo[i] - span[i][0], hi[i] - span[i][0]) for i in (0, 1)))
        span = [(lo[i], hi[i]) for i in (0, 1)]
    else:
        y = module(inputs)
    if tuple(y.shape[-2:]) != (span[0][1] - span[0][0], span[1][1] - span[1][0]):
        raise UnsupportedLayer(f"{type(module).__name__} gave {tuple(y.shape[-2:])}, not the spans {span}")
    return y[..., lo[0] - span[0][0]:hi[0] - span[0][0], lo[1] - span[1][0]:hi[1] - span[1][0]]


def _reader(module, read, n):
    return lambda lo, hi: _run(module, read, n, lo, hi)


def run_tile(module: nn.Module, x, out_lo, out_hi, in_size=None) -> torch.Tensor:
    """``module(x)[..., out_lo[0]:out_hi[0], out_lo[1]:out_hi[1]]``, computing only what that
    rectangle needs, layer by layer. ``x`` is the whole input [B, C, H, W], or a callable
    read(r0, r1, c0, c1) returning that input rectangle (inside the domain; it may be modified in
    place) with ``in_size`` = (H, W). Gradients are recorded unless the caller disables them."""
    if isinstance(x, torch.Tensor):
        whole, in_size = x, tuple(x.shape[-2:])
        read = lambda lo, hi: whole[..., lo[0]:hi[0], lo[1]:hi[1]].clone()  # layers may work in place
    elif in_size is None:
        raise TypeError("run_tile: in_size is needed when x is a callable")
    else:
        read = lambda lo, hi: x(lo[0], hi[0], lo[1], hi[1])
    size = [output_size(module, in_size[i], i) for i in (0, 1)]
    if not all(0 <= out_lo[i] < out_hi[i] <= size[i] for i in (0, 1)):
        raise ValueError(f"run_tile: [{out_lo}, {out_hi}) is not inside the output {tuple(size)}")
    return _run(module, read, tuple(in_size), tuple(out_lo), tuple(out_hi))


def tiles(size, tile) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (lo, hi) rectangles, half-open (row, col) pairs, of a grid of ``tile``-sized tiles over
    an output of ``size``, row by row; the last row and column are smaller."""
    return [((r, c), (min(r + tile[0], size[0]), min(c + tile[1], size[1])))
            for r in range(0, size[0], tile[0]) for c in range(0, size[1], tile[1])]


def run_tiled(module: nn.Module, x, tile, in_size=None) -> torch.Tensor:
    """``module(x)`` computed tile by tile (``run_tile`` on each of ``tiles``) and stitched."""
    in_size = tuple(x.shape[-2:]) if isinstance(x, torch.Tensor) else in_size
    if in_size is None:
        raise TypeError("run_tiled: in_size is needed when x is a callable")
    size = tuple(output_size(module, in_size[i], i) for i in (0, 1))
    out = None
    for lo, hi in tiles(size, tile):
        y = run_tile(module, x, lo, hi, in_size)
        out = y.new_empty(*y.shape[:-2], *size) if out is None else out
        out[..., lo[0]:hi[0], lo[1]:hi[1]] = y
    return out


_BIG = 720720 * 64  # a multiple of every stride up to 16 and of their products up to 2^10


def scale(module: nn.Module, axis: int = 0) -> Fraction:
    """Output length per input length along ``axis`` (1/16 for g_a, 16 for g_s), from
    output_size(2n) - output_size(n) over n for n a large multiple of every stride."""
    return Fraction(output_size(module, 2 * _BIG, axis) - output_size(module, _BIG, axis), _BIG)


def halo(module: nn.Module) -> tuple[tuple[int, int], tuple[int, int]]:
    """((before, after) along rows, (before, after) along columns): how far, in input units, the
    inputs an output tile needs reach beyond the tile's image under the scale S = p/q (output o's
    image is [floor(o q/p), ceil((o + 1) q/p) - 1]), the worst over the p phases, away from edges."""
    out = []
    for axis in (0, 1):
        s = scale(module, axis)
        p, q, n = s.numerator, s.denominator, 2 * _BIG
        o0 = output_size(module, n, axis) // (2 * p) * p
        sides = []
        for o in range(o0, o0 + p):
            lo_in, hi_in = needs(module, o, o, n, axis)
            sides.append((o * q // p - lo_in, hi_in - (-(-(o + 1) * q // p) - 1)))
        out.append((max(b for b, _ in sides), max(a for _, a in sides)))
    return tuple(out)
