"""Reading images: bad and unusual ones are encoded correctly or refused with one clear line;
folders and globs; unbounded inputs cut off."""

import io

import numpy as np
import pytest
from PIL import Image

from sgacodec.codec.batching import encode
from sgacodec.codec.decoder import decode
from sgacodec.config import RefineConfig
from sgacodec.errors import ImageError
from sgacodec.files.images import center_crop, expand_inputs, read_image, read_limited

from .support import make_image, raw_png, saved

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
    ("bomb just over the limit", raw_png(32768, 32769, 8, 2), "larger than|too large"),
    ("side too long", raw_png(70_000, 1, 8, 2), "larger than"),
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
        rgb, _, _ = decode(report.data, tiny_model)
        assert rgb.shape == (*size, 3) and np.array_equal(rgb, report.recon)


def test_unbounded_inputs_are_cut_off(tmp_path, monkeypatch):
    with pytest.raises(ImageError, match="larger than"):
        read_limited("/dev/zero", "/dev/zero", limit=1 << 20)
    with pytest.raises(ImageError, match="no such file"):
        read_limited(tmp_path / "missing", "missing")
    with pytest.raises(ImageError, match="is a directory"):
        read_limited(tmp_path, "folder")



def test_expand_inputs_directories_globs_and_files(tmp_path):
    for i in range(2):
        Image.fromarray(make_image(16, 16, seed=i)).save(tmp_path / f"im{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    files = [str(tmp_path / "im0.png"), str(tmp_path / "im1.png")]
    assert expand_inputs([str(tmp_path)]) == files
    assert expand_inputs([str(tmp_path / "im*.png"), files[0]]) == files  # no repeats
    assert expand_inputs(["missing.png"]) == ["missing.png"]  # reading it reports the error
    with pytest.raises(ImageError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.jpg")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no images"):
        expand_inputs([str(tmp_path / "empty")])


def test_center_crop_keeps_the_middle():
    image = np.arange(10 * 40 * 3, dtype=np.uint32).reshape(10, 40, 3).astype(np.uint8)
    crop = center_crop(image, 16)
    assert crop.shape == (10, 16, 3) and np.array_equal(crop, image[:, 12:28])
    assert center_crop(image, None) is image


def test_multi_frame_and_floating_point_images_are_said_to_be_reduced(tmp_path):
    frames = [Image.fromarray(np.full((8, 10, 3), 40 * i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "pages.tiff", save_all=True, append_images=frames[1:])
    for name in ("anim.gif", "pages.tiff"):
        notes = []
        rgb = read_image(tmp_path / name, notes)
        assert rgb.shape == (8, 10, 3) and notes == [f"{tmp_path / name}: 3 frames or pages; only the first is encoded"]
    values = np.linspace(-10, 300, 80, dtype=np.float32).reshape(8, 10)
    Image.fromarray(values, "F").save(tmp_path / "float.tiff")
    notes = []
    rgb = read_image(tmp_path / "float.tiff", notes)
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    assert len(notes) == 1 and "floating-point image" in notes[0] and "clipped" in notes[0]
