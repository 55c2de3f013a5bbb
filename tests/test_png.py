"""pngstream: pixels, modes and metadata as Pillow reads them back, a valid chunk structure, the
filter heuristic against a per-row reference, sizes against Pillow, bounded memory, errors."""

import io
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sgacodec.files import png
from sgacodec.files.png import PNGWriter, filter_rows, write_png

ICC = (Path(__file__).resolve().parent / "fixtures" / "display-p3.icc").read_bytes()
CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def natural(h, w, c=3, seed=0):
    """Smooth noise with edges and a little grain: photo-like statistics, deterministic."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, c), dtype=np.uint8)
    img = np.stack([np.asarray(Image.fromarray(coarse[..., k]).resize((w, h), Image.BICUBIC))
                    for k in range(c)], axis=-1).astype(np.int16)
    y, x = np.mgrid[:h, :w]
    img += (((x // 37 + y // 23) % 2) * 50)[..., None]
    return np.clip(img + rng.integers(-2, 3, img.shape), 0, 255).astype(np.uint8)


def encode(img, mode, strips=(7,), **kw):
    b = io.BytesIO()
    with PNGWriter(b, img.shape[1], img.shape[0], mode, **kw) as png:
        y, i = 0, 0
        while y < img.shape[0]:
            n = strips[i % len(strips)]
            png.write_rows(img[y:y + n] if mode != "L" else img[y:y + n, :, 0])
            y, i = y + n, i + 1
    return b.getvalue()


def chunks(data):
    """[(type, body)], every CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        n, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack_from(">I", data, pos + 8 + n)[0] == zlib.crc32(kind + body), kind
        out.append((kind, body))
        pos += 12 + n
    assert pos == len(data)
    return out


def read(data):
    im = Image.open(io.BytesIO(data))
    im.load()
    a = np.asarray(im)
    return im, a[..., None] if a.ndim == 2 else a


@pytest.mark.parametrize("mode", list(CHANNELS))
@pytest.mark.parametrize("workers", [1, 2])
def test_roundtrip_modes_sizes_strips(mode, workers):
    c = CHANNELS[mode]
    for h, w in [(1, 1), (5, 1), (1, 9), (40, 33)]:
        img = natural(h, w, c, seed=h * w)
        data = encode(img, mode, strips=(1, 5, 2, 13), workers=workers, idat_size=97)
        im, back = read(data)
        assert im.mode == mode and im.size == (w, h)
        np.testing.assert_array_equal(back, img)
        kinds = [k for k, _ in chunks(data)]
        assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
        assert all(len(b) <= 97 for k, b in chunks(data) if k == b"IDAT")


@pytest.mark.parametrize("workers", [1, 3])
def test_one_zlib_stream_with_checksum(workers):
    img = natural(300, 200, 3)  # several batches: several segments when workers > 1
    data = encode(img, "RGB", strips=(64,), workers=workers)
    idat = b"".join(b for k, b in chunks(data) if k == b"IDAT")
    raw = zlib.decompress(idat)  # checks the Adler-32 of the whole stream
    assert len(raw) == 300 * (1 + 200 * 3)
    assert set(raw[::1 + 600]) <= set(range(5))
    np.testing.assert_array_equal(read(data)[1], img)


def reference_filter(img):
    """Per row: every filter byte by byte (ints), the one with the least sum of |signed byte|."""
    h, w, bpp = img.shape
    rows = img.reshape(h, -1).astype(np.int64)
    out, prev = [], np.zeros(w * bpp, np.int64)
    for row in rows:
        a = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        c = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        b = prev
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        cands = [row, row - a, row - b, row - (a + b) // 2, row - paeth]
        cands = [f % 256 for f in cands]
        costs = [int(np.minimum(f, 256 - f).sum()) for f in cands]
        k = int(np.argmin(costs))
        out.append(np.concatenate([[k], cands[k]]))
        prev = row
    return np.array(out, np.uint8)


@pytest.mark.parametrize("c", [1, 3, 4])
def test_filter_matches_reference(c):
    rng = np.random.default_rng(c)
    img = natural(24, 19, c)
    img[3] = img[2]                         # Up wins
    img[5] = 77                              # None or Sub
    img[9:, :, :] ^= rng.integers(0, 2, img[9:].shape, dtype=np.uint8) * 200  # harsh noise
    h, w, _ = img.shape
    buf = np.concatenate([np.zeros(c + w * c, np.uint8), img.reshape(-1)])
    got = filter_rows(buf, h, w * c, c)
    np.testing.assert_array_equal(got, reference_filter(img))
    assert len(set(got[:, 0])) >= 3


def test_metadata_read_by_pillow():
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Canon", "EOS", 3
    exif_app1 = exif.tobytes()
    assert exif_app1.startswith(b"Exif\0\0")
    xmp = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
           '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
           '<?xpacket end="w"?>')
    img = natural(20, 30, 3)
    for e in (exif_app1, exif_app1[6:]):     # with and without the APP1 prefix
        for x in (xmp, xmp.encode()):
            data = encode(img, "RGB", icc_profile=ICC, exif=e, xmp=x)
            kinds = [k for k, _ in chunks(data)]
            assert kinds.index(b"IDAT") > max(kinds.index(b"iCCP"), kinds.index(b"eXIf"), kinds.index(b"iTXt"))
            assert dict(chunks(data))[b"eXIf"] == exif_app1[6:]
            im, back = read(data)
            np.testing.assert_array_equal(back, img)
            assert im.info["icc_profile"] == ICC
            assert im.info["exif"] == exif_app1  # Pillow puts the APP1 prefix back
            got = im.getexif()
            assert (got[0x010F], got[0x0110], got[0x0112]) == ("Canon", "EOS", 3)
            assert im.info["xmp"] == xmp.encode()  # Pillow >= 11: bytes, keyword XML:com.adobe.xmp
    # none given: no such chunk
    assert {k for k, _ in chunks(encode(img, "RGB"))} == {b"IHDR", b"IDAT", b"IEND"}


def test_size_close_to_pillow(monkeypatch):
    """With Python's zlib the same filters and deflate settings give Pillow's size at every level."""
    monkeypatch.setattr(png, "zlib_ng", None)
    img = natural(192, 256, 3)
    for level in (1, 6, 9):
        ours = len(encode(img, "RGB", strips=(16,), compress_level=level))
        b = io.BytesIO()
        Image.fromarray(img).save(b, format="PNG", compress_level=level)
        assert abs(ours / len(b.getvalue()) - 1) < 0.02, (level, ours, len(b.getvalue()))


@pytest.mark.skipif(png.zlib_ng is None, reason="zlib-ng is not installed")
def test_zlib_ng_deflates_a_photo_to_pillows_size():
    """zlib-ng (levels 2 to 9) gives a photo the size Pillow's zlib gives it, and the same pixels."""
    img = np.asarray(Image.open(Path(__file__).resolve().parents[1] / "docs" / "example.png").convert("RGB"))
    assert png._deflater(6) is png.zlib_ng and png._deflater(1) is zlib
    ours = encode(img, "RGB", strips=(64,))
    b = io.BytesIO()
    Image.fromarray(img).save(b, format="PNG")
    assert abs(len(ours) / len(b.getvalue()) - 1) < 0.02, (len(ours), len(b.getvalue()))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(ours))), img)


def test_memory_bounded():
    """A 24 MB image streamed in strips: what the writer holds stays far below the image."""
    h, w = 4000, 2000
    strip = natural(64, w, 3)

    class Sink:
        size = 0

        def write(self, b):
            self.size += len(b)

    tracemalloc.start()
    try:
        with PNGWriter(Sink(), w, h, "RGB", compress_level=1) as png:
            for y in range(0, h, 64):
                png.write_rows(strip[:min(64, h - y)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12e6, peak


def test_write_png_path_and_2d(tmp_path):
    img = natural(10, 12, 1)[..., 0]
    write_png(tmp_path / "a.png", img)
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), img)
    b = io.BytesIO()
    rgba = natural(10, 12, 4)
    write_png(b, rgba, icc_profile=ICC, compress_level=0)
    im, back = read(b.getvalue())
    assert im.mode == "RGBA" and im.info["icc_profile"] == ICC
    np.testing.assert_array_equal(back, rgba)


def test_errors():
    b = io.BytesIO()
    with pytest.raises(ValueError):
        PNGWriter(b, 4, 4, "P")
    with pytest.raises(ValueError):
        PNGWriter(b, 0, 4, "RGB")
    png = PNGWriter(io.BytesIO(), 4, 3, "RGB")
    for bad in (np.zeros((1, 4, 3), np.uint16), np.zeros((1, 5, 3), np.uint8), np.zeros((1, 4), np.uint8)):
        with pytest.raises(ValueError):
            png.write_rows(bad)
    png.write_rows(np.zeros((2, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="2 rows written to an image 3 high"):
        png.close()
    png = PNGWriter(io.BytesIO(), 4, 3, "RGB")
    with pytest.raises(ValueError, match="4 rows"):
        png.write_rows(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(KeyError):  # the caller's error passes through, not a row-count one
        with PNGWriter(io.BytesIO(), 4, 3, "RGB", workers=2) as png:
            png.write_rows(np.zeros((1, 4, 3), np.uint8))
            raise KeyError("boom")
