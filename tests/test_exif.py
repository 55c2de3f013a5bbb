"""exif_orientation: Orientation read and reset in place, both byte orders, with and without the
APP1 prefix; only the value's bytes change; malformed and fuzzed blobs never raise."""

import random
import struct

import pytest
from PIL import Image

from sgacodec.files.exif import orientation, with_orientation_reset


def pillow_exif(o, endian="<", gps=True):
    e = Image.Exif()
    e.endian = endian
    e[0x010F], e[0x0110], e[0x0132] = "Canon", "Canon EOS 5D Mark IV", "2024:05:06 07:08:09"
    if o is not None:
        e[0x0112] = o
    if gps:
        g = e.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = "N", (48.0, 51.0, 29.5), "E", (2.0, 17.0, 40.2)
    return e.tobytes()  # b"Exif\0\0" + TIFF


def tags(blob):
    e = Image.Exif()
    e.load(blob if blob.startswith(b"Exif\0\0") else b"Exif\0\0" + blob)
    return dict(e), dict(e.get_ifd(0x8825))


def big_endian_by_hand(o, kind=3, count=1, ifd_at=16):
    """An MM blob built with struct: IFD0 (Make, Orientation) at an unusual offset, Make's string
    stored after the IFD, then an empty next-IFD pointer."""
    make = b"Nikon Corp\0"
    entries = 2
    after = ifd_at + 2 + 12 * entries + 4
    head = b"MM\0*" + struct.pack(">I", ifd_at) + b"\xAA" * (ifd_at - 8)
    ifd = struct.pack(">H", entries)
    ifd += struct.pack(">HHII", 0x010F, 2, len(make), after)
    ifd += struct.pack(">HHI", 0x0112, kind, count) + struct.pack(">H", o) + b"\xBB\xCC"
    return head + ifd + struct.pack(">I", 0) + make


def changed(a, b):
    assert len(a) == len(b)
    return [i for i in range(len(a)) if a[i] != b[i]]


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("prefix", [True, False])
def test_pillow_blobs_all_orientations(endian, prefix):
    for o in range(1, 9):
        blob = pillow_exif(o, endian)
        assert blob[6:8] == (b"II" if endian == "<" else b"MM")
        if not prefix:
            blob = blob[6:]
        assert orientation(blob) == o
        out = with_orientation_reset(blob)
        assert orientation(out) == 1
        diff = changed(blob, out)
        if o == 1:
            assert out == blob
        else:  # the low byte of the SHORT: the first byte for II, the second for MM
            assert len(diff) == 1
            assert out[diff[0]] == 1 and blob[diff[0]] == o
            assert out[diff[0] - (0 if endian == "<" else 1):][:2] == struct.pack(endian + "H", 1)
        before, after = tags(blob), tags(out)
        before[0].pop(0x0112), after[0].pop(0x0112)
        assert before == after and before[1][1] == "N"


def test_no_orientation_and_not_exif():
    blob = pillow_exif(None)
    assert orientation(blob) is None and with_orientation_reset(blob) is blob
    for junk in (b"", b"Exif\0\0", b"hello world, not exif", b"II*\0", None, 12):
        assert orientation(junk) is None
        assert with_orientation_reset(junk) is junk


def test_hand_built_big_endian():
    blob = big_endian_by_hand(8)
    assert orientation(blob) == 8 and orientation(b"Exif\0\0" + blob) == 8
    out = with_orientation_reset(blob)
    assert changed(blob, out) == [blob.index(b"\0\x08\xBB\xCC") + 1]
    assert out.endswith(b"Nikon Corp\0") and tags(out)[0][0x010F] == "Nikon Corp"
    # wrong type (LONG) or count: not trusted, left alone
    for bad in (big_endian_by_hand(6, kind=4), big_endian_by_hand(6, count=2), big_endian_by_hand(6, kind=7)):
        assert orientation(bad) is None and with_orientation_reset(bad) is bad
    # out-of-range value: not an orientation, but reset still writes the valid 1
    odd = big_endian_by_hand(9)
    assert orientation(odd) is None and orientation(with_orientation_reset(odd)) == 1
    # IFD0 offset before the header's end, or past the end; IFD truncated
    assert orientation(b"MM\0*" + struct.pack(">I", 4) + blob[8:]) is None
    assert orientation(b"MM\0*" + struct.pack(">I", 10**6) + blob[8:]) is None
    assert with_orientation_reset(blob[:30]) == blob[:30]


def test_fuzz_never_raises():
    rng = random.Random(1234)
    seeds = [pillow_exif(6), pillow_exif(3, ">"), big_endian_by_hand(5), pillow_exif(8)[6:]]
    for i in range(600):
        blob = bytearray(rng.choice(seeds))
        op = i % 3
        if op == 0:
            blob = blob[:rng.randrange(len(blob) + 1)]
        elif op == 1:
            for _ in range(rng.randint(1, 6)):
                blob[rng.randrange(len(blob))] = rng.randrange(256)
        else:  # counts and offsets set to extremes
            pos = rng.randrange(max(1, len(blob) - 4))
            blob[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x7f\xff\0\x01"])
        blob = bytes(blob)
        o = orientation(blob)
        assert o is None or 1 <= o <= 8
        out = with_orientation_reset(blob)
        assert out == blob or (len(out) == len(blob) and len(changed(blob, out)) <= 2 * blob.count(b"\x01\x12")
                                + 2 * blob.count(b"\x12\x01"))
        assert orientation(out) in (None, 1)
