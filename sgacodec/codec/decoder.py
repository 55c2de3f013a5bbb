"""Files back to pixels with the model's stock CompressAI decoder (docs/format.md), checked
against the reconstruction hash their encoder stored.

    decoded = decode(data)                       # .rgb, .header, .exact
    decoder = Decoder(checkpoint=None)           # many files: each parsed once, models loaded once
    for data in files:
        decoded = decoder.decode(data)
    strips = decoder.strips(data)                # the same, strip by strip (never held whole)
    for strip in strips: ...                     # then strips.exact
"""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

import numpy as np

from ..config import coding_timeout
from ..errors import DecodeError, ModelError, ResourceError
from ..models.loaded import LoadedModel
from ..models.loading import load_for_bitstream
from ..network import streams
from ..network.checks import synthesis_channels
from ..network.coding_net import coding_net
from ..network.grid import Grid
from ..network.latent_model import LatentModel
from . import container, isolate, memory
from .encoder import tile_pool
from .pixels import ReconHash, to_uint8
from .tiled import TileDecoder

MISMATCH_TEXT = ("decoded pixels differ from what the encoder computed (reconstruction hash mismatch): "
                 "this machine computes the model's arithmetic differently from the encoder's "
                 "(other PyTorch build or CPU; usually a few pixels by one level)")


class Decoded(NamedTuple):
    """A decoded file: its pixels, its header, and whether the pixels are exactly those its
    encoder computed (the reconstruction hash matched; None when not checked)."""

    rgb: np.ndarray
    header: container.Bitstream
    exact: bool | None

    @property
    def warning(self) -> str | None:
        """Why these pixels are not the encoder's (the hash did not match), or None."""
        return mismatch_warning(self.exact)


def mismatch_warning(exact: bool | None) -> str | None:
    """What a decode whose hash check gave ``exact`` says: MISMATCH_TEXT when it did not match."""
    return MISMATCH_TEXT if exact is False else None


def decode(data: bytes, model: LoadedModel | None = None, checkpoint=None, verify: bool = True,
           strict: bool = False, allow_download: bool = False, region=None,
           on_progress: Callable[[int], None] | None = None) -> Decoded:
    """Decode an sgacodec file with the model's stock decoder: (RGB uint8, header, exact).

    The pixels are checked against the encoder's reference decode (a hash in the file): ``exact``
    says whether they match; with ``strict`` a mismatch raises DecodeError instead;
    ``verify=False`` skips the check (``exact`` None). A zoo model the file names is read from
    torch.hub's cache, never downloaded unless ``allow_download``. ``region`` (x, y, width,
    height in pixels): only that rectangle, decoding only the tiles it and its halo need (the
    same pixels as a full decode's; ``exact`` None: the hash covers the whole image). Work that
    needs more memory than allowed (memory.py) is refused before anything is allocated.
    ``on_progress(n)``: n more tiles done (``tiles_to_decode`` says how many there are).
    """
    header = container.unpack(data)
    if model is None:
        model = load_for_bitstream(header.model, checkpoint, allow_download)
    return decode_parsed(header, model, verify, strict, region, on_progress)


def tiles_to_decode(header: container.Bitstream, region=None) -> int:
    """How many blocks a decode of the file (or of ``region``) synthesises (its progress' total)."""
    if header.version < 3:
        return 1
    blocks = Grid(header.height, header.width, header.tile).blocks
    bounds = region_bounds(header, region)
    return len(blocks.covering(*bounds)) if bounds else len(blocks)


def region_bounds(header: container.Bitstream, region) -> tuple[int, int, int, int] | None:
    """(r0, r1, c0, c1) of a region (x, y, width, height) clipped to the image; None for none."""
    if region is None:
        return None
    x, y, w, h = (int(v) for v in region)
    if w < 1 or h < 1 or x < 0 or y < 0 or x >= header.width or y >= header.height:
        raise DecodeError(f"region {x},{y},{w},{h} is not inside the {header.width}x{header.height} image")
    return y, min(y + h, header.height), x, min(x + w, header.width)


def decode_parsed(header: container.Bitstream, model: LoadedModel, verify: bool = True,
                  strict: bool = False, region=None, on_progress: Callable[[int], None] | None = None) -> Decoded:
    """``decode`` of a file already parsed into ``header``, with its model loaded."""
    strips = Strips(header, model, verify, strict, region, on_progress)
    rgb = None
    for strip in strips:
        if rgb is None:
            rgb, row = np.empty((strips.height, strips.width, 3), np.uint8), 0
        rgb[row : row + len(strip)] = strip
        row += len(strip)
    return Decoded(rgb, header, strips.exact)


class Strips:
    """A file's pixels (or ``region``'s) as uint8 RGB row strips [h, width, 3], top to bottom,
    each handed over as soon as it is decoded while the next is computed (in a forked child
    where available): a decode that holds a bounded part of the image. After the last strip,
    ``exact`` says whether the whole image matched the encoder's hash (None: a region, or not
    verified); with ``strict`` a mismatch raises DecodeError there instead. Errors (damaged data,
    memory) are raised where the strips stop. Versions 1 and 2 come as one strip."""

    def __init__(self, header: container.Bitstream, model: LoadedModel, verify: bool = True,
                 strict: bool = False, region=None, on_progress: Callable[[int], None] | None = None):
        if model.identity.weights_sha != header.model.weights_sha:
            raise ModelError(f"model mismatch: the file needs {header.model.describe()}, "
                             f"not {model.identity.describe()}")
        self.header, self.verify, self.strict, self.on_progress = header, verify, strict, on_progress
        self.bounds = region_bounds(header, region)
        r0, r1, c0, c1 = self.bounds or (0, header.height, 0, header.width)
        self.height, self.width = r1 - r0, c1 - c0
        self.exact: bool | None = None
        # Untrusted strings: padded, checked, and decoded in a child process where possible, because
        # CompressAI's rANS decoder reads past the end of a forged string (network/streams.py).
        net = coding_net(model.net, header.version)
        self._run = (_tiled_run(net, header, self.bounds) if header.version >= 3
                     else _legacy_run(net, header, self.bounds))

    def __iter__(self) -> Iterator[np.ndarray]:
        header = self.header
        hashed = ReconHash() if self.verify and self.bounds is None else None
        timeout = coding_timeout(256 * header.y_shape[0] * header.y_shape[1])
        try:
            for strip in isolate.stream(self._run, timeout=timeout, on_progress=self.on_progress):
                if hashed is not None:
                    hashed.update(strip)
                yield strip
        except isolate.OutOfMemory as exc:
            raise ResourceError(f"not enough memory to decode {header.width}x{header.height} ({exc})") from None
        except isolate.IsolatedError as exc:
            legacy = ("; a version 1 file, coded in float32, may not decode on a CPU other than its "
                      "encoder's (docs/format.md)") if header.version < 2 else ""
            raise DecodeError(f"the entropy-coded data does not decode: {exc}{legacy}") from None
        self.exact = hashed.digest() == header.recon_hash if hashed is not None else None
        if self.strict and self.exact is False:
            raise DecodeError(MISMATCH_TEXT)

    @property
    def warning(self) -> str | None:
        """Why the pixels are not the encoder's (the hash did not match), or None."""
        return mismatch_warning(self.exact)


def _legacy_run(net, header: container.Bitstream, bounds):
    """Versions 1 and 2: the stock decompress() on the whole image (then the region's crop)."""
    memory.check(memory.image_bytes(synthesis_channels(net), header.height, header.width,
                                    per_pixel=memory.LEGACY_BYTES_PER_PIXEL),
                 f"decoding {header.width}x{header.height}")
    r0, r1, c0, c1 = bounds or (0, header.height, 0, header.width)

    def run():
        x_hat = streams.decompress_untrusted(net, header.y_strings[0], header.z_string, header.z_shape)
        yield to_uint8(x_hat[0, :, r0:r1, c0:c1])

    return run


def _tiled_run(net, header: container.Bitstream, bounds):
    """Version 3: z^ at once, then each row of tiles the region meets: its y streams (and those its
    halo reaches) decoded, its pixels synthesised, the tiles of a row in parallel."""
    grid = Grid(header.height, header.width, header.tile)
    context = LatentModel(net).has_context
    expected = 1 if context else len(grid)
    if len(header.y_strings) != expected:
        raise DecodeError(f"the file holds {len(header.y_strings)} y stream(s); this model's grid needs {expected}")
    workers = memory.check_coding(synthesis_channels(net), grid, "decoding")

    def run():
        with isolate.single_thread(), tile_pool(workers) as pool:
            decoder = TileDecoder.from_streams(net, grid, context, header.z_string, header.y_strings, pool,
                                               on_tile=isolate.progress)
            yield from decoder.strips(bounds)

    return run


class Decoder:
    """Decodes many files: each file is parsed once, and each model a file names is loaded once
    (``checkpoint``: the one checkpoint-coded files need; ``allow_download``: zoo weights not in
    torch.hub's cache may be downloaded)."""

    def __init__(self, checkpoint=None, allow_download: bool = False, verify: bool = True, strict: bool = False):
        self.checkpoint, self.allow_download = checkpoint, allow_download
        self.verify, self.strict = verify, strict
        self.models: dict = {}

    def model_for(self, header: container.Bitstream) -> LoadedModel:
        if header.model not in self.models:
            self.models[header.model] = load_for_bitstream(header.model, self.checkpoint, self.allow_download)
        return self.models[header.model]

    def decode(self, data: bytes, region=None, on_progress: Callable[[int], None] | None = None) -> Decoded:
        header = container.unpack(data)
        return decode_parsed(header, self.model_for(header), self.verify, self.strict, region, on_progress)

    def strips(self, data: bytes, region=None, on_progress: Callable[[int], None] | None = None) -> Strips:
        """``decode`` strip by strip (Strips): the image is never held whole."""
        header = container.unpack(data)
        return Strips(header, self.model_for(header), self.verify, self.strict, region, on_progress)
