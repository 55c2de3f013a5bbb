"""The container (sgacodec/codec/container.py, docs/format.md): version 3's chunks, the limits
checked before anything is allocated, and versions 1 and 2 still read."""

import dataclasses
import struct
import zlib

import pytest

from sgacodec.codec.container import (
    CHUNK_LIMITS,
    MAGIC,
    Bitstream,
    chunk,
    expected_shapes,
    pack,
    tile_count,
    unpack,
    varint,
)
from sgacodec.errors import BitstreamError
from sgacodec.models.loaded import ModelId


def sample(height=217, width=333, tile=64, **fields):
    z_shape, y_shape = expected_shapes(height, width)
    streams = tuple(bytes([i]) * (10 + i) for i in range(tile_count(height, width, tile)))
    return Bitstream(ModelId("checkpoint", "mbt2018-mean", "mse", 0, bytes(range(8))), height, width,
                     z_shape, y_shape, b"recon-h!", b"zzz-string", streams, tile=tile, **fields)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_round_trip():
    bs = sample(metadata={"icc": b"profile", "exif": b"II*\0exif", "xmp": b"<x/>", "alpha": b"png"})
    assert unpack(pack(bs)) == bs
    assert bs.z_shape == (4, 6) and bs.y_shape == (16, 24) and len(bs.y_strings) == 4 * 6
    one = sample(tile=0)
    assert len(one.y_strings) == 1 and unpack(pack(one)) == one
    assert unpack(pack(sample(grayscale=True))).grayscale


def test_versions_1_and_2_are_still_read():
    for version in (1, 2):
        bs = dataclasses.replace(sample(tile=0), version=version)
        data = pack(bs)
        assert data[4] == version and unpack(data) == bs


def test_every_truncation_is_rejected():
    data = pack(sample())
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:n])


def test_bit_flips_are_rejected():
    data = bytearray(pack(sample()))
    for pos in range(0, len(data), 7):
        flipped = bytearray(data)
        flipped[pos] ^= 0x10
        with pytest.raises(BitstreamError):
            unpack(bytes(flipped))


@pytest.mark.parametrize("data,message", [
    (b"", "empty"), (b"\x89PNG\r\n\x1a\nxxxxxxxx", "magic"), (b"SGAC\x07rest-of-it", "version"),
])
def test_foreign_files(data, message):
    with pytest.raises(BitstreamError, match=message):
        unpack(data)


def test_unknown_optional_chunks_are_skipped_unknown_required_ones_refused():
    body = pack(sample())[:-4]
    skipped = unpack(with_crc(body + chunk(b"zzzz", b"from the future")))
    assert skipped == dataclasses.replace(sample(), skipped=(("zzzz", 15),))
    with pytest.raises(BitstreamError, match="unknown required chunk ZZZZ"):
        unpack(with_crc(body + chunk(b"ZZZZ", b"needed to decode")))


@pytest.mark.parametrize("change,message", [
    (lambda b: b + chunk(b"ZSTR", b"again"), "appears twice"),
    (lambda b: MAGIC + b"\x03" + chunk(b"ZSTR", b"z") + b[5:], "first chunk is not HEAD"),
    (lambda b: b + chunk(b"exif", b"x" * (CHUNK_LIMITS[b"exif"] + 1)), "more than its limit"),
    (lambda b: b + b"abcd" + struct.pack(">I", 1 << 31), "runs past the end"),
    (lambda b: b + b"\x00\x01\x02\x03" + struct.pack(">I", 0), "bad chunk type"),
])
def test_malformed_chunks_are_refused(change, message):
    with pytest.raises(BitstreamError, match=message):
        unpack(with_crc(change(pack(sample())[:-4])))


def test_the_streams_must_fit_the_grid():
    bs = sample()
    with pytest.raises(BitstreamError, match="y streams for a grid"):
        unpack(pack(dataclasses.replace(bs, y_strings=bs.y_strings[:-1])))
    assert len(unpack(pack(dataclasses.replace(bs, y_strings=bs.y_strings[:1]))).y_strings) == 1  # context models
    with pytest.raises(ValueError):
        pack(dataclasses.replace(bs, tile=100))  # not a multiple of 64


def test_declared_sizes_are_validated_before_allocation():
    data = pack(sample())
    body = bytearray(data[:-4])
    # HEAD's image size follows: magic(4) version(1) type(4) length(4) kind/len(2) name metric/quality(2) sha(8)
    offset = 4 + 1 + 8 + 2 + len("mbt2018-mean") + 2 + 8
    assert struct.unpack(">II", body[offset : offset + 8]) == (217, 333)
    body[offset : offset + 8] = struct.pack(">II", 1 << 30, 1 << 30)
    with pytest.raises(BitstreamError, match="out of range"):
        unpack(with_crc(bytes(body)))
    bs = sample()
    before = pack(bs)[: pack(bs).index(b"YSTR")]
    rest = b"".join(varint(len(s)) for s in bs.y_strings) + b"".join(bs.y_strings)
    with pytest.raises(BitstreamError, match="declares"):  # a billion streams declared
        unpack(with_crc(before + chunk(b"YSTR", varint(1 << 30) + rest)))
    with pytest.raises(BitstreamError, match="varint"):  # a count that never ends
        unpack(with_crc(before + chunk(b"YSTR", b"\xff" * 6 + rest)))
