"""The Display P3 fixture: the profile is what make_p3_profile.py makes, a valid ICC profile that
LittleCMS (Pillow's ImageCms) reads and converts with as Display P3; the JPEG carries it."""

import hashlib
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from .support import load_script

_p3 = load_script("scripts/make_p3_profile.py")
D50, D65, bradford, make_profile, rgb_to_xyz, synthetic_image, xyz = (
    _p3.D50, _p3.D65, _p3.bradford, _p3.make_profile, _p3.rgb_to_xyz, _p3.synthetic_image, _p3.xyz)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROFILE = (FIXTURES / "display-p3.icc").read_bytes()
SRGB_PRIMARIES = {"r": (0.64, 0.33), "g": (0.30, 0.60), "b": (0.15, 0.06)}


def decode(v):
    v = np.asarray(v, float) / 255
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def encode(v):
    v = np.clip(v, 0, 1)
    return np.round(255 * np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055))


def p3_to_srgb_reference(rgb):
    """Linear sRGB from P3 code values, by the published matrices (both D65: no adaptation)."""
    return np.linalg.solve(rgb_to_xyz(SRGB_PRIMARIES), rgb_to_xyz() @ decode(rgb))


def to_srgb(profile_bytes, pixels):
    p3 = ImageCms.getOpenProfile(io.BytesIO(profile_bytes))
    t = ImageCms.buildTransform(p3, ImageCms.createProfile("sRGB"), "RGB", "RGB",
                                renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    img = Image.fromarray(np.array([pixels], np.uint8))
    return np.asarray(ImageCms.applyTransform(img, t))[0].astype(int)


def test_fixture_is_the_script_output_and_well_formed():
    assert make_profile(4) == PROFILE
    assert struct.unpack(">I", PROFILE[:4])[0] == len(PROFILE) and PROFILE[36:40] == b"acsp"
    assert PROFILE[12:24] == b"mntrRGB XYZ "
    zeroed = bytearray(PROFILE)
    zeroed[44:48] = zeroed[64:68] = bytes(4)
    zeroed[84:100] = bytes(16)
    assert hashlib.md5(bytes(zeroed)).digest() == PROFILE[84:100]  # v4 profile ID


@pytest.mark.parametrize("version", [4, 2])
def test_littlecms_reads_it_as_display_p3(version):
    data = PROFILE if version == 4 else make_profile(2)
    prof = ImageCms.getOpenProfile(io.BytesIO(data)).profile
    assert prof.profile_description.startswith("Display P3")
    assert int(prof.version) == version and "CC0" in prof.copyright
    assert prof.xcolor_space.strip() == "RGB" and prof.connection_space.strip() == "XYZ"
    undo = np.linalg.inv(bradford(xyz(D65), D50))  # the colorants are D50-adapted: back to D65
    for got, want in [(prof.red_primary, (0.680, 0.320)), (prof.green_primary, (0.265, 0.690)),
                      (prof.blue_primary, (0.150, 0.060))]:
        X, Y, Z = undo @ np.array(got[0])
        assert abs(X / (X + Y + Z) - want[0]) < 1e-3 and abs(Y / (X + Y + Z) - want[1]) < 1e-3
    pixels = [(255, 255, 255), (0, 0, 0), (128, 128, 128), (255, 0, 0), (0, 255, 0), (200, 100, 100),
              (90, 160, 220), (30, 200, 60)]
    got = to_srgb(data, pixels)
    assert got[0].tolist() == [255, 255, 255] and got[1].tolist() == [0, 0, 0]
    assert abs(got[2] - 128).max() <= 1  # same white, same curve: greys stay
    # P3's red is outside sRGB: linear sRGB (1.22, -0.04, -0.02), clipped to pure red
    lin = p3_to_srgb_reference(pixels[3])
    assert lin[0] > 1.2 and lin[1] < 0 and lin[2] < 0
    assert got[3].tolist() == [255, 0, 0]
    for px, g in zip(pixels[5:], got[5:]):  # in gamut: as the matrices say, to a level or two
        assert abs(g - encode(p3_to_srgb_reference(px))).max() <= 2, (px, g)
    assert got[5][0] > 200 and got[5][1] < 100  # a P3 pink is a more saturated sRGB pink


def test_jpeg_fixture_carries_the_profile():
    with Image.open(FIXTURES / "p3-64x48.jpg") as im:
        assert im.format == "JPEG" and im.size == (64, 48) and im.mode == "RGB"
        assert im.info["icc_profile"] == PROFILE
        err = np.abs(np.asarray(im).astype(int) - synthetic_image()).mean()
    assert err < 4, err
    assert (FIXTURES / "LICENSE").read_text().count("CC0") >= 1
