"""Files that behave like any image format (issue 31): the ICC profile, EXIF (orientation applied
and reset), XMP, alpha and grayscale through `sgacodec encode` and `decode` and through the Pillow
plugin, on real material (tests/fixtures: a Display P3 JPEG, see its LICENSE); `sgacodec info`;
`sgacodec models`."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from sgacodec.files.exif import orientation, with_orientation_reset

from .support import cli, invoke, make_image, python

FIXTURES = Path(__file__).resolve().parent / "fixtures"
P3_JPEG = FIXTURES / "p3-64x48.jpg"
P3_ICC = (FIXTURES / "display-p3.icc").read_bytes()
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' \
      b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="sgacodec tests"/>' \
      b'</rdf:RDF></x:xmpmeta>'


def round_trip(tmp_path, src, checkpoint, *more, name="out"):
    """encode (method none) then decode through the CLI: (the encode record, the decoded image)."""
    coded, decoded = tmp_path / f"{name}.bin", tmp_path / f"{name}.png"
    model = ["--checkpoint", checkpoint] if checkpoint else []  # None: the embedded default model
    res = cli("encode", src, "-o", coded, *model, "--method", "none", "--json", *more)
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout.strip().splitlines()[-1])
    res = cli("decode", coded, "-o", decoded, *model)
    assert res.exit_code == 0, res.output
    return record, Image.open(decoded), res


def exif_bytes(img) -> bytes:
    raw = img.info["exif"]
    return raw[6:] if raw.startswith(b"Exif\0\0") else raw


def to_srgb(img: Image.Image) -> np.ndarray:
    """The pixels converted to sRGB through the image's own profile (sRGB when it has none)."""
    srgb = ImageCms.createProfile("sRGB")
    icc = img.info.get("icc_profile")
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc)) if icc else srgb
    return np.asarray(ImageCms.profileToProfile(img.convert("RGB"), source, srgb, outputMode="RGB"))


def test_a_display_p3_jpeg_keeps_its_profile_and_its_colours(tmp_path, tiny_checkpoint):
    """ICC bytes identical; the decoded PNG and the original, each converted to sRGB through its own
    profile, differ by the PSNR sgacodec reports (psnr_srgb: the error a colour-managed viewer
    shows), within 0.05 dB; and by far more if the profile were dropped."""
    from sgacodec import metrics

    record, decoded, _ = round_trip(tmp_path, P3_JPEG, None)  # the default model: colours worth comparing
    assert decoded.info["icc_profile"] == P3_ICC
    original = Image.open(P3_JPEG)
    assert original.info["icc_profile"] == P3_ICC
    measured = metrics.psnr(to_srgb(original), to_srgb(decoded))
    assert measured == pytest.approx(record["psnr_srgb"], abs=0.05)
    untagged = Image.fromarray(np.asarray(decoded))  # the profile dropped: its colours read as sRGB
    assert metrics.psnr(to_srgb(decoded), to_srgb(untagged)) < 35  # a visible shift
    res = cli("encode", P3_JPEG, "-o", tmp_path / "none.bin", "--checkpoint", tiny_checkpoint, "--method", "none",
              "--metadata", "none")
    assert res.exit_code == 0 and "dropped ICC profile (584 B)" in res.stderr, res.stderr
    cli("decode", tmp_path / "none.bin", "-o", tmp_path / "none.png", "--checkpoint", tiny_checkpoint)
    assert "icc_profile" not in Image.open(tmp_path / "none.png").info


@pytest.mark.parametrize("turn", range(1, 9))
def test_exif_orientation_is_applied_and_reset_and_everything_else_kept(tmp_path, tiny_checkpoint, turn):
    from PIL import ImageOps

    pixels = make_image(40, 56, seed=turn)
    exif = Image.Exif()
    exif[0x0112] = turn
    exif[0x010F] = "sgacodec test camera"  # Make
    exif[0x0132] = "2026:12:06 12:00:00"  # DateTime
    src = tmp_path / f"o{turn}.jpg"
    Image.fromarray(pixels).save(src, quality=95, exif=exif.tobytes(), xmp=XMP)
    original = Image.open(src)
    upright = ImageOps.exif_transpose(Image.open(src))
    _, decoded, _ = round_trip(tmp_path, src, tiny_checkpoint, name=f"o{turn}")
    assert decoded.size == upright.size  # the pixels were turned
    assert orientation(exif_bytes(decoded)) == 1
    assert exif_bytes(decoded) == with_orientation_reset(exif_bytes(original))  # every other byte kept
    assert decoded.info["xmp"] == XMP


def test_alpha_is_kept_losslessly_and_grayscale_stays_grayscale(tmp_path, tiny_checkpoint):
    rgba = np.dstack([make_image(48, 64, seed=3), (np.arange(48 * 64) % 256).reshape(48, 64).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    _, decoded, _ = round_trip(tmp_path, tmp_path / "a.png", tiny_checkpoint, name="a-out")
    assert decoded.mode == "RGBA" and np.array_equal(np.asarray(decoded)[..., 3], rgba[..., 3])
    gray = make_image(48, 64, seed=4)[..., 1]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    record, decoded, _ = round_trip(tmp_path, tmp_path / "g.png", tiny_checkpoint, name="g-out")
    assert decoded.mode == "L" and decoded.size == (64, 48)
    la = np.dstack([gray, np.full_like(gray, 7)])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    _, decoded, _ = round_trip(tmp_path, tmp_path / "la.png", tiny_checkpoint, name="la-out")
    assert decoded.mode == "LA" and (np.asarray(decoded)[..., 1] == 7).all()


def test_16_bit_pngs_are_coded_in_8_bits(tmp_path, tiny_checkpoint):
    """A 16-bit RGB PNG (Pillow reads it in 8 bits) and a 16-bit grayscale one (reduced, said;
    decoded as grayscale)."""
    from .support import raw_png

    rows = b"".join(b"\x00" + np.full(2 * 3 * 32, 200, np.uint8).tobytes() for _ in range(16))
    (tmp_path / "rgb16.png").write_bytes(raw_png(32, 16, 16, 2, rows))
    _, decoded, _ = round_trip(tmp_path, tmp_path / "rgb16.png", tiny_checkpoint, name="rgb16-out")
    assert decoded.mode == "RGB" and decoded.size == (32, 16)
    gray = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 21).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "gray16.png")  # mode I;16
    res = cli("encode", tmp_path / "gray16.png", "-o", tmp_path / "gray16.bin", "--checkpoint", tiny_checkpoint,
              "--method", "none")
    assert res.exit_code == 0 and "16-bit image reduced to 8 bits" in res.stderr, res.stderr
    cli("decode", tmp_path / "gray16.bin", "-o", tmp_path / "gray16-out.png", "--checkpoint", tiny_checkpoint)
    assert Image.open(tmp_path / "gray16-out.png").mode == "L"


def test_the_pillow_plugin_opens_without_decoding_loads_and_saves(tmp_path, tiny_checkpoint, monkeypatch):
    import sgacodec
    from sgacodec.codec import decoder

    sgacodec.register_pillow()
    record, decoded_png, _ = round_trip(tmp_path, P3_JPEG, tiny_checkpoint, name="p3")
    calls = []
    real = decoder.Decoder.decode
    monkeypatch.setattr(decoder.Decoder, "decode", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    monkeypatch.setattr(decoder, "load_for_bitstream", lambda *a, **k: sgacodec.load_checkpoint(tiny_checkpoint))
    with Image.open(tmp_path / "p3.bin") as im:  # the extension says nothing: the magic bytes do
        assert im.format == "SGACODEC" and im.size == (64, 48) and im.mode == "RGB"
        assert im.info["icc_profile"] == P3_ICC and not calls  # known from the header, nothing decoded
        im.load()
        assert calls == [1] and np.array_equal(np.asarray(im), np.asarray(decoded_png))
    with Image.open(P3_JPEG) as im:
        im.save(tmp_path / "saved.sgac", checkpoint=str(tiny_checkpoint), method="none")
        im.save(tmp_path / "target.sgac", checkpoint=str(tiny_checkpoint), method="ssl", iterations=2,
                target_bpp=4.0)
    for name in ("saved.sgac", "target.sgac"):
        with Image.open(tmp_path / name) as im:
            assert im.size == (64, 48) and im.info["icc_profile"] == P3_ICC
            assert 8 * (tmp_path / name).stat().st_size / (64 * 48) <= 4.0 + 8 * len(P3_ICC) / (64 * 48) + 1


def test_pillow_opens_from_threads(tmp_path, tiny_checkpoint, monkeypatch):
    import sgacodec
    from sgacodec.codec import decoder

    sgacodec.register_pillow()
    monkeypatch.setattr(decoder, "load_for_bitstream", lambda *a, **k: sgacodec.load_checkpoint(tiny_checkpoint))
    expected = {}
    for seed in range(3):
        Image.fromarray(make_image(40 + 8 * seed, 48, seed=seed)).save(tmp_path / f"t{seed}.png")
        _, png, _ = round_trip(tmp_path, tmp_path / f"t{seed}.png", tiny_checkpoint, name=f"t{seed}-out")
        expected[seed] = np.asarray(png)
    results, errors = {}, []

    def work(seed):
        try:
            with Image.open(tmp_path / f"t{seed}-out.bin") as im:
                results[seed] = np.asarray(im.convert("RGB"))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s % 3,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(np.array_equal(results[s], expected[s]) for s in expected)


def test_info_describes_files_without_torch_and_damage_is_one_line(tmp_path, coded):
    path = tmp_path / "c.bin"
    path.write_bytes(coded.data)
    res = invoke("info", path, "--json")
    assert res.exit_code == 0, res.output
    described = json.loads(res.stdout)
    assert described["width"] == 100 and described["height"] == 70 and described["version"] == 3
    assert described["streams"]["y_streams"] == described["tiles"]["count"] and described["alpha"] is None
    res = python("import sys\nfrom sgacodec.cli import run\n"
                 f"try:\n    run(['info', {str(path)!r}])\nexcept SystemExit:\n    pass\n"
                 "assert 'torch' not in sys.modules, 'info imported torch'\n")
    assert res.returncode == 0, res.stderr.decode()
    damaged = tmp_path / "d.bin"
    damaged.write_bytes(coded.data[:-9])
    res = invoke("info", damaged)
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output


def test_models_lists_the_embedded_models_and_the_zoo(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch.hub cache
    res = invoke("models", "--json")
    assert res.exit_code == 0, res.output
    entries = [json.loads(line) for line in res.stdout.splitlines()]
    embedded = [e for e in entries if e["kind"] == "embedded"]
    zoo = [e for e in entries if e["kind"] == "zoo"]
    assert [e["quality"] for e in embedded] == [1, 2, 3] and sum(e["default"] for e in embedded) == 1
    assert all(e["kodak_bpp"] and e["kodak_psnr"] for e in entries)
    mean3 = next(e for e in zoo if e["name"] == "mbt2018-mean" and e["quality"] == 3)
    assert (mean3["kodak_bpp"], mean3["kodak_psnr"]) == (0.307, 31.13) and mean3["available"] is False
    assert "--model mbt2018-mean --quality 3" in mean3["use"]


def test_a_png_written_strip_by_strip_is_the_whole_decodes_with_its_alpha(tmp_path, tiny_checkpoint):
    """decode writes the PNG as the strips come (write_decoded_png): the same pixels, alpha and
    mode as the picture of a whole decode, for the image and for a region, over several strips."""
    import sgacodec

    rgba = np.dstack([make_image(150, 200, seed=5), (np.arange(150 * 200) % 253).reshape(150, 200).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    _, streamed, _ = round_trip(tmp_path, tmp_path / "a.png", tiny_checkpoint, "--tile-size", "64", name="a64")
    data = (tmp_path / "a64.bin").read_bytes()
    whole = sgacodec.decode(data, sgacodec.load_checkpoint(tiny_checkpoint))
    picture = sgacodec.decoded_picture(whole.rgb, whole.header)
    assert streamed.mode == "RGBA" and np.array_equal(np.asarray(streamed), picture.output())
    assert np.array_equal(np.asarray(streamed)[..., 3], rgba[..., 3])
    res = cli("decode", tmp_path / "a64.bin", "-o", tmp_path / "r.png", "--checkpoint", tiny_checkpoint,
              "--region", "37,21,50,70")
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "r.png")), picture.output()[21:91, 37:87])
