"""The sgacodec file format (docs/format.md), all integers big-endian.

Version 3 (written now): a container of typed chunks, each with its length.

    magic "SGAC" | version u8 = 3 | chunk ... | CRC-32 of everything before it, u32
    chunk = type: 4 ASCII bytes | length u32 | payload

A chunk type beginning with an upper-case letter is required: a reader that does not know it
refuses the file. A lower-case one is optional: a reader that does not know it skips it. So later
fields need no new version. HEAD comes first; each type appears at most once.

    HEAD  model kind u8 | model name: u8 length + UTF-8 | metric u8 | quality u8
          | weights sha256, first 8 bytes | height u32 | width u32 | tile u16 | colour u8
          | reconstruction hash 8 bytes
    ZSTR  the z stream (CompressAI EntropyBottleneck)
    YSTR  stream count | that many lengths | the streams, concatenated: one per tile of the grid,
          row by row (GaussianConditional), or one for the whole image (context models); the count
          and the lengths are unsigned LEB128 varints (7 bits a byte, low first: 1 to 5 bytes)
    iccp  an ICC colour profile            exif  EXIF (the TIFF header onward)
    xmp   an XMP packet (UTF-8)            alph  the alpha plane, a grayscale PNG of the image's size

``tile`` is the tile grid's side in pixels (a multiple of 64; 0: the whole image is one tile);
``colour`` 0 is RGB, 1 grayscale (coded as three equal channels, decoded as one). Versions 1 and
2 (a fixed layout with one z and one y string, z and y shapes stored) are still read.

Every declared size is checked against limits and the file's length before anything is allocated.
The version also fixes the arithmetic both sides use for h_s, g_s and the coder's tables: float64
in versions 2 and 3, float32 in version 1 (network/coding_net.py).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from ..config import LATENT_MULTIPLE
from ..errors import BitstreamError
from ..models.loaded import ModelId
from ..models.zoo_table import METRICS  # its order is part of the file format

MAGIC = b"SGAC"
VERSION = 3  # what this build writes
READABLE_VERSIONS = (1, 2, 3)
MODEL_KINDS = ("zoo", "embedded", "checkpoint")
COLOURS = ("rgb", "grayscale")
MAX_SIDE = 65535  # pixels per side (the header's u16 latent grid and tile fields allow it)
MAX_PIXELS = 1 << 30  # 1.07 G pixels (32768 x 32768)
LEGACY_MAX_SIDE, LEGACY_MAX_PIXELS = 1 << 15, 1 << 26  # versions 1 and 2
MAX_TILE = 65472  # the largest multiple of 64 in a u16
# The largest payload of each optional chunk sgacodec writes (and reads): checked before reading.
CHUNK_LIMITS = {b"iccp": 16 << 20, b"exif": 1 << 20, b"xmp ": 16 << 20, b"alph": 256 << 20}
METADATA = {b"iccp": "icc", b"exif": "exif", b"xmp ": "xmp", b"alph": "alpha"}  # chunk -> name


@dataclass(frozen=True)
class Bitstream:
    """One parsed file: its header, its entropy-coded streams and its metadata."""

    model: ModelId
    height: int
    width: int
    z_shape: tuple[int, int]
    y_shape: tuple[int, int]
    recon_hash: bytes  # 8 bytes: sha256 prefix of the decoded pixels (RGB, or gray), row-major
    z_string: bytes
    y_strings: tuple[bytes, ...]  # one per tile, row by row, or one for the whole image
    version: int = VERSION
    tile: int = 0  # the tile grid's side in pixels; 0: one tile, the whole image
    grayscale: bool = False
    metadata: dict = field(default_factory=dict)  # 'icc', 'exif', 'xmp', 'alpha' -> bytes
    skipped: tuple = ()  # the optional chunks not known to this build: (type, length)

    @property
    def chunk_sizes(self) -> dict[str, int]:
        """Bytes of each stream and metadata chunk, for reports (``sgacodec info``)."""
        sizes = {"z": len(self.z_string), "y": sum(len(s) for s in self.y_strings)}
        sizes.update({name: len(value) for name, value in self.metadata.items()})
        return sizes


def check_size(height: int, width: int, version: int = VERSION) -> None:
    """Raise BitstreamError unless an image of this size can be coded (encoder and decoder agree)."""
    side, pixels = (MAX_SIDE, MAX_PIXELS) if version >= 3 else (LEGACY_MAX_SIDE, LEGACY_MAX_PIXELS)
    if not (1 <= height <= side and 1 <= width <= side) or height * width > pixels:
        raise BitstreamError(f"image size {width}x{height} is out of range (at most {side} "
                             f"pixels a side and {pixels} pixels)")


def expected_shapes(height: int, width: int, multiple: int = LATENT_MULTIPLE) -> tuple[tuple, tuple]:
    """Latent shapes for an image padded to ``multiple``: z is 1/64 and y 1/16 of the padded size."""
    zh, zw = -(-height // multiple), -(-width // multiple)
    return (zh, zw), (zh * 4, zw * 4)


def tile_count(height: int, width: int, tile: int) -> int:
    """Tiles in the grid of an image (one for ``tile`` 0): ceil(padded side / tile) per side."""
    if tile == 0:
        return 1
    (zh, zw), _ = expected_shapes(height, width)
    per = tile // LATENT_MULTIPLE
    return -(-zh // per) * -(-zw // per)


def check_tile(tile: int) -> None:
    if tile != 0 and not (LATENT_MULTIPLE <= tile <= MAX_TILE and tile % LATENT_MULTIPLE == 0):
        raise BitstreamError(f"tile size {tile} is not 0 or a multiple of {LATENT_MULTIPLE} up to {MAX_TILE}")


def _model_fields(model: ModelId) -> bytes:
    name = model.name.encode()
    if len(name) > 255 or len(model.weights_sha) != 8:
        raise ValueError("model name longer than 255 bytes, or hash of the wrong length")
    return (struct.pack(">BB", MODEL_KINDS.index(model.kind), len(name)) + name
            + struct.pack(">BB", METRICS.index(model.metric), model.quality) + model.weights_sha)


def chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def pack(bs: Bitstream) -> bytes:
    """The file of ``bs`` in its version (3: chunks; 1 and 2: the fixed layout, for tests)."""
    check_size(bs.height, bs.width, bs.version)
    if bs.version not in READABLE_VERSIONS:
        raise ValueError(f"cannot write file version {bs.version}")
    if len(bs.recon_hash) != 8:
        raise ValueError("reconstruction hash of the wrong length")
    if bs.version < 3:
        if len(bs.y_strings) != 1:
            raise ValueError("versions 1 and 2 hold one y string")
        body = b"".join((MAGIC, bytes([bs.version]), _model_fields(bs.model), struct.pack(">II", bs.height, bs.width),
                         struct.pack(">HHHH", *bs.z_shape, *bs.y_shape), bs.recon_hash,
                         struct.pack(">I", len(bs.z_string)), bs.z_string,
                         struct.pack(">I", len(bs.y_strings[0])), bs.y_strings[0]))
        return body + struct.pack(">I", zlib.crc32(body))
    check_tile(bs.tile)
    head = (_model_fields(bs.model) + struct.pack(">IIHB", bs.height, bs.width, bs.tile, int(bs.grayscale))
            + bs.recon_hash)
    ystr = varint(len(bs.y_strings)) + b"".join(varint(len(s)) for s in bs.y_strings) + b"".join(bs.y_strings)
    parts = [MAGIC, bytes([bs.version]), chunk(b"HEAD", head), chunk(b"ZSTR", bs.z_string), chunk(b"YSTR", ystr)]
    names = {name: kind for kind, name in METADATA.items()}
    for name, value in bs.metadata.items():
        if name not in names:
            raise ValueError(f"unknown metadata {name!r}")
        if len(value) > CHUNK_LIMITS[names[name]]:
            raise ValueError(f"{name} of {len(value)} bytes is larger than the format allows")
        parts.append(chunk(names[name], bytes(value)))
    body = b"".join(parts)
    return body + struct.pack(">I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes, what: str = "file"):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BitstreamError(f"truncated {self.what}: {what} runs past the end")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def done(self) -> bool:
        return self.pos == len(self.data)


def _read_model(r: _Reader) -> ModelId:
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
    return ModelId(MODEL_KINDS[kind], name, METRICS[metric], quality, r.take(8, "model hash"))


def _read_size(r: _Reader, version: int) -> tuple[int, int]:
    height, width = r.unpack(">II", "image size")
    try:
        check_size(height, width, version)
    except BitstreamError as exc:
        raise BitstreamError(f"declared {exc}") from None
    return height, width


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
    if len(data) < 9:
        raise BitstreamError("truncated file: header")
    body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
    if zlib.crc32(body) != crc:
        raise BitstreamError("corrupted file: checksum mismatch (truncated or altered)")
    r = _Reader(body)
    r.take(len(MAGIC) + 1, "header")
    return _unpack_chunks(r, version) if version >= 3 else _unpack_legacy(r, version)


def _unpack_legacy(r: _Reader, version: int) -> Bitstream:
    model = _read_model(r)
    height, width = _read_size(r, version)
    zh, zw, yh, yw = r.unpack(">HHHH", "latent shapes")
    z_shape, y_shape = expected_shapes(height, width)
    if (zh, zw) != z_shape or (yh, yw) != y_shape:
        raise BitstreamError("latent shapes do not match the image size")
    recon_hash = r.take(8, "reconstruction hash")
    (z_len,) = r.unpack(">I", "z length")
    z_string = r.take(z_len, "z string")
    (y_len,) = r.unpack(">I", "y length")
    y_string = r.take(y_len, "y string")
    if not r.done():
        raise BitstreamError("trailing bytes after the y string")
    return Bitstream(model, height, width, z_shape, y_shape, recon_hash, z_string, (y_string,), version)


def _unpack_chunks(r: _Reader, version: int) -> Bitstream:
    chunks: dict[bytes, bytes] = {}
    skipped = []
    while not r.done():
        kind = r.take(4, "chunk type")
        (length,) = r.unpack(">I", "chunk length")
        if not all(0x20 <= c < 0x7F for c in kind):
            raise BitstreamError(f"bad chunk type {kind!r}")
        if kind in chunks:
            raise BitstreamError(f"chunk {kind.decode()} appears twice")
        if not chunks and kind != b"HEAD":
            raise BitstreamError("the first chunk is not HEAD")
        if kind in CHUNK_LIMITS and length > CHUNK_LIMITS[kind]:
            raise BitstreamError(f"chunk {kind.decode()} declares {length} bytes, more than its limit")
        payload = r.take(length, f"chunk {kind.decode()}")
        if kind in (b"HEAD", b"ZSTR", b"YSTR") or kind in METADATA:
            chunks[kind] = payload
        elif kind[:1].isupper():
            raise BitstreamError(f"unknown required chunk {kind.decode()} (written by a newer sgacodec?)")
        else:
            chunks[kind] = b""
            skipped.append((kind.decode(errors="replace"), length))
    for kind in (b"HEAD", b"ZSTR", b"YSTR"):
        if kind not in chunks:
            raise BitstreamError(f"missing chunk {kind.decode()}")
    head = _Reader(chunks[b"HEAD"], "HEAD chunk")
    model = _read_model(head)
    height, width = _read_size(head, version)
    tile, colour = head.unpack(">HB", "tile and colour")
    check_tile(tile)
    if colour >= len(COLOURS):
        raise BitstreamError(f"unknown colour {colour}")
    recon_hash = head.take(8, "reconstruction hash")
    if not head.done():
        raise BitstreamError("trailing bytes in the HEAD chunk")
    y_strings = _read_streams(chunks[b"YSTR"])
    count = tile_count(height, width, tile)
    if len(y_strings) not in (1, count) or tile == 0 and len(y_strings) != 1:
        raise BitstreamError(f"{len(y_strings)} y streams for a grid of {count} tiles")
    z_shape, y_shape = expected_shapes(height, width)
    metadata = {METADATA[k]: v for k, v in chunks.items() if k in METADATA}
    return Bitstream(model, height, width, z_shape, y_shape, recon_hash, chunks[b"ZSTR"], y_strings, version,
                     tile, bool(colour), metadata, tuple(skipped))


def varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits a byte, the lowest first, the high bit set on all but the last."""
    if n < 0:
        raise ValueError("a varint is not negative")
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _read_varint(r: _Reader, what: str) -> int:
    value = 0
    for shift in range(0, 35, 7):  # at most 5 bytes: 35 bits, more than any length here
        (byte,) = r.take(1, what)
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise BitstreamError(f"{what}: a varint longer than 5 bytes")


def _read_streams(payload: bytes) -> tuple[bytes, ...]:
    r = _Reader(payload, "YSTR chunk")
    count = _read_varint(r, "stream count")
    if count == 0 or count > len(payload):
        raise BitstreamError(f"YSTR declares {count} streams in {len(payload)} bytes")
    lengths = [_read_varint(r, "stream length") for _ in range(count)]
    if sum(lengths) != len(payload) - r.pos:
        raise BitstreamError("the y streams' lengths do not add up to the YSTR chunk")
    return tuple(r.take(n, "y stream") for n in lengths)


def with_metadata(data: bytes, metadata: dict, grayscale: bool = False) -> bytes:
    """A version 3 file with its metadata chunks (``metadata``: 'icc', 'exif', 'xmp', 'alpha' ->
    bytes) and colour replaced; the coded streams and the reconstruction hash are the same."""
    from dataclasses import replace

    header = unpack(data)
    if header.version < 3:
        raise ValueError("metadata needs file version 3")
    return pack(replace(header, metadata=dict(metadata), grayscale=grayscale))
