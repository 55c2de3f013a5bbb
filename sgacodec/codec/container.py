"""The sgacodec file format (version 2), all integers big-endian.

    magic "SGAC" | version u8 | model kind u8 | model name: u8 length + UTF-8 | metric u8
    | quality u8 | weights sha256, first 8 bytes | height u32 | width u32
    | z height u16 | z width u16 | y height u16 | y width u16 | reconstruction hash 8 bytes
    | z string: u32 length + bytes | y string: u32 length + bytes | CRC-32 of all before, u32

Every declared size is checked against limits and the file length before anything is allocated.

The version also fixes the arithmetic both sides use for the hyper-synthesis h_s (which gives the
entropy coder's scale indexes and means), the synthesis g_s, the scale table and the rANS tables:
float64 in version 2, float32 in version 1 (still decoded; see network/coding_net.py).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..config import LATENT_MULTIPLE
from ..errors import BitstreamError
from ..models.loaded import ModelId
from ..models.zoo_table import METRICS  # its order is part of the file format

MAGIC = b"SGAC"
VERSION = 2  # what this build writes
READABLE_VERSIONS = (1, 2)
MODEL_KINDS = ("zoo", "embedded", "checkpoint")
MAX_SIDE = 1 << 15  # 32768 pixels per side
MAX_PIXELS = 1 << 26  # 67 M pixels (8192 x 8192): the largest image the encoder accepts


@dataclass(frozen=True)
class Bitstream:
    model: ModelId
    height: int
    width: int
    z_shape: tuple[int, int]
    y_shape: tuple[int, int]
    recon_hash: bytes  # 8 bytes: sha256 prefix of the decoded RGB pixels
    z_string: bytes
    y_string: bytes
    version: int = VERSION


def check_size(height: int, width: int) -> None:
    """Raise BitstreamError unless an image of this size can be coded (encoder and decoder agree)."""
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE) or height * width > MAX_PIXELS:
        raise BitstreamError(f"image size {width}x{height} is out of range (at most {MAX_SIDE} "
                             f"pixels a side and {MAX_PIXELS} pixels)")


def expected_shapes(height: int, width: int, multiple: int = LATENT_MULTIPLE) -> tuple[tuple, tuple]:
    """Latent shapes for an image padded to ``multiple``: z is 1/64 and y 1/16 of the padded size."""
    zh, zw = -(-height // multiple), -(-width // multiple)
    return (zh, zw), (zh * 4, zw * 4)


def pack(bs: Bitstream) -> bytes:
    check_size(bs.height, bs.width)
    if bs.version not in READABLE_VERSIONS:
        raise ValueError(f"cannot write file version {bs.version}")
    name = bs.model.name.encode()
    if len(name) > 255 or len(bs.model.weights_sha) != 8 or len(bs.recon_hash) != 8:
        raise ValueError("model name longer than 255 bytes, or hash of the wrong length")
    body = b"".join(
        (
            MAGIC,
            struct.pack(">BBB", bs.version, MODEL_KINDS.index(bs.model.kind), len(name)),
            name,
            struct.pack(">BB", METRICS.index(bs.model.metric), bs.model.quality),
            bs.model.weights_sha,
            struct.pack(">II", bs.height, bs.width),
            struct.pack(">HHHH", *bs.z_shape, *bs.y_shape),
            bs.recon_hash,
            struct.pack(">I", len(bs.z_string)),
            bs.z_string,
            struct.pack(">I", len(bs.y_string)),
            bs.y_string,
        )
    )
    return body + struct.pack(">I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BitstreamError(f"truncated file: {what} runs past the end")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def unpack(data: bytes) -> Bitstream:
    """Parse and validate a file; raises BitstreamError with a one-line reason."""
    if len(data) == 0:
        raise BitstreamError("empty file")
    if not data.startswith(MAGIC):
        raise BitstreamError("not an sgacodec file (bad magic)")
    if len(data) < len(MAGIC) + 1:
        raise BitstreamError("truncated file: no version")
    version = data[len(MAGIC)]
    if version not in READABLE_VERSIONS:
        raise BitstreamError(f"unsupported sgacodec file version {version} (this build reads "
                             f"{', '.join(map(str, READABLE_VERSIONS))})")
    if len(data) < 8:
        raise BitstreamError("truncated file: header")
    body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
    if zlib.crc32(body) != crc:
        raise BitstreamError("corrupted file: checksum mismatch (truncated or altered)")
    r = _Reader(body)
    r.take(len(MAGIC) + 1, "header")
    kind, name_len = r.unpack(">BB", "header")
    if kind >= len(MODEL_KINDS):
        raise BitstreamError(f"unknown model kind {kind}")
    try:
        name = r.take(name_len, "model name").decode()
    except UnicodeDecodeError:
        raise BitstreamError("model name is not UTF-8") from None
    metric, quality = r.unpack(">BB", "model metric")
    if metric >= len(METRICS):
        raise BitstreamError(f"unknown metric {metric}")
    weights_sha = r.take(8, "model hash")
    height, width = r.unpack(">II", "image size")
    try:
        check_size(height, width)
    except BitstreamError as exc:
        raise BitstreamError(f"declared {exc}") from None
    zh, zw, yh, yw = r.unpack(">HHHH", "latent shapes")
    z_shape, y_shape = expected_shapes(height, width)
    if (zh, zw) != z_shape or (yh, yw) != y_shape:
        raise BitstreamError("latent shapes do not match the image size")
    recon_hash = r.take(8, "reconstruction hash")
    (z_len,) = r.unpack(">I", "z length")
    z_string = r.take(z_len, "z string")
    (y_len,) = r.unpack(">I", "y length")
    y_string = r.take(y_len, "y string")
    if r.pos != len(body):
        raise BitstreamError("trailing bytes after the y string")
    model = ModelId(MODEL_KINDS[kind], name, METRICS[metric], quality, weights_sha)
    return Bitstream(model, height, width, z_shape, y_shape, recon_hash, z_string, y_string, version)
