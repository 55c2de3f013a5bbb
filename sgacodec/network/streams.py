"""Entropy-coded streams: latents into CompressAI's rANS strings and back, the way its stock
``compress()``/``decompress()`` code them, for one tile of y (or the whole image) at a time, and
with untrusted strings decoded safely.

    string, z_hat = encode_z(net, z)                 z_hat = decode_z(net, string, z.shape[-2:])
    scales, means = split_params(net, h_s_output)    (ScaleHyperprior: means None)
    string = encode_y(net, y, scales, means)         y_hat = decode_y(net, string, scales, means)
    y_hat == quantized_y(y, means)                   what decoding the string gives, without decoding

CompressAI's rANS decoder (C++) does not bounds-check its input: a forged or corrupted string
reads past the end of its buffer. So every untrusted string is padded (``pad_string``) and decoded
twice, with 0x00 and 0x55 padding (``decode_twice``): a valid string is read exactly to its end, so
the two agree; when they differ the data runs past its end and the file is refused before any
synthesis runs. Context models (mbt2018, cheng2020-*) code y sequentially with their context
network (``encode_y_context``, ``decode_y_context``): their string is padded and decoded once.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .checks import MAX_LATENT

CONTEXT_KERNEL, CONTEXT_PADDING = 5, 2  # CompressAI's context prediction (mbt2018, cheng2020)


class CorruptData(ValueError):
    """Entropy-coded data that cannot be what an encoder wrote."""


def pad_string(data: bytes, n_symbols: int, fill: int = 0) -> bytes:
    """``data`` followed by enough ``fill`` bytes that a runaway rANS decoder reads them, not memory.

    Past the data, a symbol reads at most two 32-bit words (one renormalisation for the symbol,
    one for its few bypass nibbles when ``fill`` has no 0xF nibble); bypass runs driven by the
    data itself read at most 15 nibbles per data nibble.
    """
    return bytes(data) + bytes([fill]) * (8 * max(int(n_symbols), 0) + 16 * len(data) + 1024)


def decode_twice(decode, string: bytes, n_symbols: int, what: str) -> list[int]:
    """``decode(padded string)``, a list of symbols, with zero padding and with 0x55 padding,
    which must agree."""
    a = decode(pad_string(string, n_symbols, 0))
    b = decode(pad_string(string, n_symbols, 0x55))
    if a != b:
        raise CorruptData(f"the {what} string ends before its data does (truncated or forged file)")
    return a


@torch.no_grad()
def encode_z(net, z: torch.Tensor) -> tuple[bytes, torch.Tensor]:
    """z [1, N, h, w] -> (its string, z^ as the decoder will see it)."""
    eb = net.entropy_bottleneck
    [string] = eb.compress(z)
    return string, eb.decompress([string], tuple(z.shape[-2:]))


def _decode_symbols(model, string: bytes, indexes: list[int], what: str) -> torch.Tensor:
    """The int32 symbols [len(indexes)] of an untrusted ``string`` coded with ``model``'s (an
    EntropyBottleneck's or a GaussianConditional's) tables at ``indexes``: its rANS decoder called
    as CompressAI's ``EntropyModel.decompress`` calls it, the tables converted to lists once for
    both decodes (``decode_twice``), the symbols compared as lists and converted by numpy (a
    third of torch.tensor's time, with the interpreter lock held)."""
    tables = (indexes, model._quantized_cdf.tolist(), model._cdf_length.reshape(-1).int().tolist(),
              model._offset.reshape(-1).int().tolist())
    symbols = decode_twice(lambda s: model.entropy_coder.decode_with_indexes(s, *tables), string, len(indexes), what)
    return torch.from_numpy(np.fromiter(symbols, np.int32, len(symbols)))


@torch.no_grad()
def decode_z(net, string: bytes, z_shape) -> torch.Tensor:
    """z^ [1, N, h, w] of an untrusted string: what ``eb.decompress([string], z_shape)`` computes
    (channel c's symbols coded with table c, plus its median), decoded by ``_decode_symbols``."""
    eb, (height, width) = net.entropy_bottleneck, tuple(z_shape)
    eb._check_cdf_size(), eb._check_cdf_length(), eb._check_offsets_size()  # an updated model
    channels = eb._quantized_cdf.size(0)
    indexes = np.repeat(np.arange(channels, dtype=np.int32), height * width).tolist()  # _build_indexes
    values = _decode_symbols(eb, string, indexes, "z").reshape(1, channels, height, width)
    medians = eb._get_medians().detach().reshape(1, channels, 1, 1)
    return eb.dequantize(values, medians, medians.dtype)


def split_params(net, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(scales, means) of h_s's output: MeanScaleHyperprior's chunks, ScaleHyperprior's scales."""
    from .compressai_import import import_compressai

    if isinstance(net, import_compressai().MeanScaleHyperprior):
        scales, means = params.chunk(2, 1)
        return scales, means
    return params, None


def _check_params(scales: torch.Tensor, means: torch.Tensor | None) -> None:
    for t in (scales, scales if means is None else means):
        if not torch.isfinite(t).all() or t.abs().max() > MAX_LATENT:
            raise ValueError("the hyper-synthesis gives NaN, infinite or absurd scales or means; "
                             "the model's h_s is broken")


def scale_indexes(gc, scales: torch.Tensor) -> torch.Tensor:
    """CompressAI's ``gc.build_indexes(scales)``, int32: per scale (lower-bounded as it does), the
    number of scale-table entries but the last that are below it. build_indexes counts them with a
    pass over the scales per entry (64); one binary search gives the same integers
    (tests/test_streams.py)."""
    scales = gc.lower_bound_scale(scales)
    table = gc.scale_table[:-1].to(scales.dtype)
    return torch.searchsorted(table, scales.contiguous()).int()


@torch.no_grad()
def encode_y(net, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None) -> bytes:
    """One tile of y [1, M, h, w] (or the whole) with its h_s scales and means -> its string."""
    _check_params(scales, means)
    gc = net.gaussian_conditional
    [string] = gc.compress(y, scale_indexes(gc, scales), means=means)
    return string


def quantized_y(y: torch.Tensor, means: torch.Tensor | None) -> torch.Tensor:
    """y^ = round(y - mu) + mu (or round(y)): exactly what decoding ``encode_y``'s string gives
    (GaussianConditional codes round(y - mu) as integers and adds mu back)."""
    if means is None:
        return torch.round(y)
    return torch.round(y - means).to(means.dtype) + means


@torch.no_grad()
def decode_y(net, string: bytes, scales: torch.Tensor, means: torch.Tensor | None) -> torch.Tensor:
    """y^ of one tile from an untrusted string and the tile's h_s scales and means: what
    ``gc.decompress([string], indexes, means=means)`` computes (its rANS decoder called the same
    way, its ``dequantize``), decoded by ``_decode_symbols``."""
    _check_params(scales, means)
    gc = net.gaussian_conditional
    indexes = scale_indexes(gc, scales)
    values = _decode_symbols(gc, string, indexes.reshape(-1).tolist(), "y").reshape(indexes.shape)
    return gc.dequantize(values, means, scales.dtype)


@torch.no_grad()
def encode_y_context(net, y: torch.Tensor, params: torch.Tensor) -> bytes:
    """A context model's whole y [1, M, h, w] with h_s's output -> its sequential string
    (CompressAI's own autoregressive coder, as its compress() runs it)."""
    _check_params(params, None)
    y_padded = F.pad(y, (CONTEXT_PADDING,) * 4)
    return net._compress_ar(y_padded, params, y.size(2), y.size(3), CONTEXT_KERNEL, CONTEXT_PADDING)


@torch.no_grad()
def decode_y_context(net, string: bytes, params: torch.Tensor, y_shape) -> torch.Tensor:
    """A context model's y^ [1, M, h, w] from its (untrusted, padded) string, as its
    decompress() decodes it: sequentially, each symbol's mean from the context of those before."""
    _check_params(params, None)
    height, width = y_shape
    p = CONTEXT_PADDING
    y_hat = torch.zeros((1, net.M, height + 2 * p, width + 2 * p), dtype=params.dtype)
    net._decompress_ar(pad_string(string, net.M * height * width), y_hat, params, height, width,
                       CONTEXT_KERNEL, p)
    return F.pad(y_hat, (-p,) * 4)


def decompress_untrusted(net, y_string: bytes, z_string: bytes, z_shape):
    """Files of versions 1 and 2: the model's stock ``decompress([[y], [z]], z_shape)["x_hat"]``
    for untrusted strings, the whole image at once. Both strings are padded; each is decoded
    twice (``decode_twice``) before the synthesis runs, except a context model's y string (padded,
    decoded once, interleaved with its network)."""
    from .compressai_import import import_compressai

    models = import_compressai()
    MeanScaleHyperprior, ScaleHyperprior = models.MeanScaleHyperprior, models.ScaleHyperprior
    eb = net.entropy_bottleneck
    z_shape = tuple(z_shape)
    n_z = eb.channels * z_shape[0] * z_shape[1]
    n_y = getattr(net, "M", 320) * 16 * z_shape[0] * z_shape[1]
    with torch.no_grad():
        z_hat = decode_z(net, z_string, z_shape)
        method = type(net).decompress
        if method not in (ScaleHyperprior.decompress, MeanScaleHyperprior.decompress):
            strings = [[pad_string(y_string, n_y)], [pad_string(z_string, n_z)]]
            return net.decompress(strings, z_shape)["x_hat"]
        scales, means = split_params(net, net.h_s(z_hat))
        return net.g_s(decode_y(net, y_string, scales, means)).clamp_(0, 1)
