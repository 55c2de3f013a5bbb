import pytest

from sgacodec.codec.container import Bitstream, expected_shapes, pack, unpack
from sgacodec.errors import BitstreamError
from sgacodec.models.loaded import ModelId


def sample(height=217, width=333):
    z_shape, y_shape = expected_shapes(height, width)
    return Bitstream(ModelId("checkpoint", "mbt2018-mean", "mse", 0, bytes(range(8))), height, width,
                     z_shape, y_shape, b"recon-h!", b"zzz-string", b"y" * 1000)


def test_round_trip():
    bs = sample()
    assert unpack(pack(bs)) == bs
    assert bs.z_shape == (4, 6) and bs.y_shape == (16, 24)


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


def test_declared_sizes_are_validated_before_allocation():
    import struct
    import zlib

    bs = sample()
    data = pack(bs)
    body = bytearray(data[:-4])
    # image size field follows magic(4) version/kind/len(3) name metric/quality(2) sha(8)
    offset = 4 + 3 + len(bs.model.name) + 2 + 8
    body[offset : offset + 8] = struct.pack(">II", 1 << 30, 1 << 30)
    forged = bytes(body) + struct.pack(">I", zlib.crc32(bytes(body)))
    with pytest.raises(BitstreamError, match="out of range"):
        unpack(forged)
