"""Bad and unusual images (issue 6): each is encoded correctly or refused with one clear line."""

import io
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sgacodec.cli import main
from sgacodec.codec import decode, encode
from sgacodec.imageio import MAX_IMAGE_PIXELS, ImageError, read_image
from sgacodec.refine import RefineConfig

from .conftest import make_image


def saved(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand: any declared size (bombs) and 16-bit RGB, which Pillow cannot write."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


RGB = make_image(24, 32, seed=5)


# --- refused with one line ----------------------------------------------------------------------

@pytest.mark.parametrize("name,data,message", [
    ("empty", b"", "not an image"),
    ("text", b"hello, this is a text file\n" * 10, "not an image"),
    ("png header only", saved(Image.fromarray(RGB))[:60], "truncated"),
    ("png half", saved(Image.fromarray(RGB))[:len(saved(Image.fromarray(RGB))) // 2], "truncated"),
    ("jpeg header only", saved(Image.fromarray(RGB), "JPEG")[:400], "truncated"),
    ("jpeg half", saved(Image.fromarray(RGB), "JPEG")[:len(saved(Image.fromarray(RGB), "JPEG")) // 2],
     "truncated"),
    ("bomb 100000^2", raw_png(100_000, 100_000, 8, 2), "larger than|too large"),
    ("bomb just over the limit", raw_png(8192, 8193, 8, 2), "larger than|too large"),
    ("side too long", raw_png(40_000, 1, 8, 2), "larger than"),
])
def test_bad_images_are_refused_with_one_line(name, data, message):
    with pytest.raises(ImageError, match=message) as info:
        read_image(data)
    assert "\n" not in str(info.value)


def test_a_bomb_is_refused_before_its_pixels_are_decoded(tmp_path):
    """The 100000^2 PNG would take 30 GB; it is refused from its header in milliseconds."""
    import time

    path = tmp_path / "bomb.png"
    path.write_bytes(raw_png(100_000, 100_000, 8, 2))
    begin = time.monotonic()
    with pytest.raises(ImageError, match=str(path)):
        read_image(path)
    assert time.monotonic() - begin < 1


def test_bad_images_through_the_cli(tmp_path, tiny_checkpoint):
    cases = {"empty.png": b"", "notes.txt": b"plain text", "cut.jpg": saved(Image.fromarray(RGB), "JPEG")[:300],
             "bomb.png": raw_png(100_000, 100_000, 8, 2)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        res = CliRunner().invoke(main, ["encode", str(tmp_path / name), "-o", str(tmp_path / "o.bin"),
                                        "--checkpoint", str(tiny_checkpoint), "--method", "none"])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("sgacodec: error: "), res.output
        assert name in lines[0] and not (tmp_path / "o.bin").exists()


# --- encoded correctly --------------------------------------------------------------------------

def test_grayscale_is_expanded():
    gray = RGB[..., 1]
    out = read_image(saved(Image.fromarray(gray, "L")))
    assert out.shape == (24, 32, 3) and all(np.array_equal(out[..., c], gray) for c in range(3))


def test_rgba_drops_alpha_and_says_so():
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    rgba[0, 0, 3] = 0  # one transparent pixel: its colour is kept
    notes = []
    out = read_image(saved(Image.fromarray(rgba, "RGBA")), notes)
    assert np.array_equal(out, RGB)
    assert len(notes) == 1 and "alpha channel dropped" in notes[0]
    rgba[0, 0, 3] = 255  # fully opaque: nothing is lost, nothing to say
    notes = []
    assert np.array_equal(read_image(saved(Image.fromarray(rgba, "RGBA")), notes), RGB) and notes == []


def test_palette_images_with_and_without_transparency():
    pal = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    expected = np.asarray(pal.convert("RGB"))
    assert np.array_equal(read_image(saved(pal)), expected)
    pal.info["transparency"] = 0
    notes = []
    assert np.array_equal(read_image(saved(pal, transparency=0), notes), expected)
    assert any("alpha" in n for n in notes)


def test_cmyk_jpeg_is_converted():
    red = np.zeros((16, 16, 4), np.uint8)
    red[..., 1] = red[..., 2] = 255  # C=0 M=255 Y=255 K=0: red
    data = saved(Image.fromarray(red, "CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = read_image(data)
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - [255, 0, 0]).max() <= 8


def test_16_bit_png_gray_and_rgb_are_scaled_to_8_bits():
    gray16 = np.array([[0, 257 * 100, 65535, 32896]], dtype=np.uint16)
    notes = []
    out = read_image(saved(Image.fromarray(gray16)), notes)
    assert out[0, :, 0].tolist() == [0, 100, 255, 128] and "16-bit" in notes[0]
    rgb16 = np.array([[[0, 257 * 10, 65535], [257 * 200, 0, 257 * 77]]], dtype=">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in rgb16)
    out = read_image(raw_png(2, 1, 16, 2, rows))
    assert out.tolist() == [[[0, 10, 255], [200, 0, 77]]]


def test_exif_orientation_is_applied():
    img = np.zeros((10, 20, 3), np.uint8)
    img[0, 0] = 255  # top-left marker in the stored (landscape) image
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    out = read_image(saved(Image.fromarray(img), "PNG", exif=exif))
    assert out.shape == (20, 10, 3)
    assert out[0, -1].tolist() == [255, 255, 255]  # the marker is now top-right


def test_one_by_one_and_thin_images_round_trip(tiny_model):
    for size in ((1, 1), (1, 130), (97, 1)):
        image = read_image(saved(Image.fromarray(make_image(*size, seed=9))))
        [report] = encode(tiny_model, [image], RefineConfig(iterations=2))
        rgb, _ = decode(report.data, tiny_model)
        assert rgb.shape == (*size, 3) and np.array_equal(rgb, report.recon)


def test_an_rgba_png_through_the_cli_round_trips_with_a_note(tmp_path, tiny_checkpoint):
    import json

    from sgacodec import metrics

    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    res = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.bin"),
                                    "--checkpoint", str(tiny_checkpoint), "--iterations", "2", "--json"])
    assert res.exit_code == 0 and "alpha channel dropped" in res.output, res.output
    record = json.loads([line for line in res.output.splitlines() if line.startswith("{")][-1])
    res = CliRunner().invoke(main, ["decode", str(tmp_path / "a.bin"), "-o", str(tmp_path / "b.png"),
                                    "--checkpoint", str(tiny_checkpoint)])
    assert res.exit_code == 0
    decoded = np.asarray(Image.open(tmp_path / "b.png"))
    assert decoded.shape == RGB.shape
    assert metrics.psnr(RGB, decoded) == pytest.approx(record["psnr"], abs=1e-6)


def test_the_limit_is_the_formats():
    from sgacodec import bitstream

    assert MAX_IMAGE_PIXELS == bitstream.MAX_PIXELS == 8192 * 8192
