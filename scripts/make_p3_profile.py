"""Makes a Display P3 compatible ICC profile from the published primaries, and a tiny JPEG tagged
with it (the test fixture of a non-sRGB image).

Display P3: DCI-P3 primaries R (0.680, 0.320), G (0.265, 0.690), B (0.150, 0.060), the D65
white point (0.3127, 0.3290) and the sRGB transfer curve. The profile is an RGB matrix/TRC display
profile: rXYZ/gXYZ/bXYZ are the primaries' XYZ adapted to the ICC's D50 with the Bradford
transform (rounded so that R + G + B is exactly the D50 white), the curves are the sRGB function.
Version 4 (default; like Apple's and the compact profiles): 'para' curves, 'mluc' text, a 'chad'
tag and the profile ID (MD5). Version 2 (--v2): 1024-entry 'curv' curves, 'desc'/'text' text,
wtpt the D65 white. The primaries are public facts, the bytes are this script's: CC0.

    python scripts/make_p3_profile.py [--v2] [--out tests/fixtures/display-p3.icc] [--jpeg tests/fixtures/p3-64x48.jpg]
"""

from __future__ import annotations

import argparse
import hashlib
import struct
from pathlib import Path

import numpy as np

PRIMARIES = {"r": (0.680, 0.320), "g": (0.265, 0.690), "b": (0.150, 0.060)}
D65 = (0.3127, 0.3290)
D50 = np.array([0.9642, 1.0, 0.8249])  # the ICC PCS illuminant, as the header stores it
SRGB_CURVE = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)  # para type 3: g, a, b, c, d
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
DESCRIPTION = "Display P3 (sgacodec, CC0)"
COPYRIGHT = "No copyright, use freely (CC0 1.0)"


def xyz(xy) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz(primaries=PRIMARIES, white=D65) -> np.ndarray:
    """The 3x3 matrix from linear RGB to XYZ (Y of white = 1), columns R, G, B."""
    m = np.stack([xyz(primaries[k]) for k in "rgb"], axis=1)
    return m * np.linalg.solve(m, xyz(white))


def bradford(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Chromatic adaptation matrix from white ``src`` to white ``dst`` (XYZ)."""
    return np.linalg.inv(BRADFORD) @ np.diag((BRADFORD @ dst) / (BRADFORD @ src)) @ BRADFORD


def s15(v: float) -> int:
    return int(round(v * 65536))


def s15_bytes(values) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def colorants() -> np.ndarray:
    """rXYZ, gXYZ, bXYZ (columns) as s15Fixed16 integers, each row summing to D50's."""
    m = bradford(xyz(D65), D50) @ rgb_to_xyz()
    q = np.vectorize(s15)(m)
    q[:, 1] += np.vectorize(s15)(D50) - q.sum(axis=1)  # the rounding error goes into green
    return q


def xyz_tag(v) -> bytes:
    return b"XYZ \0\0\0\0" + s15_bytes(v)


def mluc(text: str) -> bytes:
    s = text.encode("utf-16-be")
    return b"mluc\0\0\0\0" + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(s), 28) + s


def desc_v2(text: str) -> bytes:
    a = text.encode("ascii") + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(a)) + a + struct.pack(">II", 0, 0) + b"\0\0\0" + bytes(67)


def curv_v2(n: int = 1024) -> bytes:
    g, a, b, c, d = SRGB_CURVE
    x = np.linspace(0, 1, n)
    y = np.where(x >= d, (a * x + b) ** g, c * x)
    return b"curv\0\0\0\0" + struct.pack(">I", n) + np.round(y * 65535).astype(">u2").tobytes()


def make_profile(version: int = 4) -> bytes:
    q = colorants()
    if version == 4:
        chad = bradford(xyz(D65), D50)
        trc = b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + s15_bytes([s15(v) for v in SRGB_CURVE])
        tags = [(b"desc", mluc(DESCRIPTION)), (b"cprt", mluc(COPYRIGHT)),
                (b"wtpt", xyz_tag([s15(v) for v in D50])),
                (b"chad", b"sf32\0\0\0\0" + s15_bytes([s15(v) for v in chad.ravel()]))]
    else:
        trc = curv_v2()
        tags = [(b"desc", desc_v2(DESCRIPTION)), (b"cprt", b"text\0\0\0\0" + COPYRIGHT.encode() + b"\0"),
                (b"wtpt", xyz_tag([s15(v) for v in xyz(D65)]))]
    tags += [(b"rXYZ", xyz_tag(q[:, 0])), (b"gXYZ", xyz_tag(q[:, 1])), (b"bXYZ", xyz_tag(q[:, 2])),
             (b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc)]
    table, data, offsets = [], b"", {}
    start = 128 + 4 + 12 * len(tags)
    for sig, body in tags:  # identical bodies (the three curves) are stored once
        if body not in offsets:
            offsets[body] = start + len(data)
            data += body + bytes(-len(body) % 4)
        table.append(struct.pack(">4sII", sig, offsets[body], len(body)))
    body = struct.pack(">I", len(tags)) + b"".join(table) + data
    header = bytearray(struct.pack(
        ">I4sI4s4s4s6H4s4sI4s4s8sI12s4s16s28s",
        128 + len(body), b"\0" * 4, 0x04300000 if version == 4 else 0x02100000, b"mntr", b"RGB ", b"XYZ ",
        2024, 1, 1, 0, 0, 0, b"acsp", b"\0" * 4, 0, b"\0" * 4, b"\0" * 4, b"\0" * 8, 0,
        s15_bytes([s15(v) for v in D50]), b"\0" * 4, b"\0" * 16, b"\0" * 28))
    profile = bytearray(header + body)
    if version == 4:  # profile ID: MD5 of the profile with flags, intent and ID zeroed
        profile[84:100] = hashlib.md5(bytes(profile)).digest()  # flags and intent are already 0
    return bytes(profile)


def synthetic_image(width: int = 64, height: int = 48) -> np.ndarray:
    """Gradients with a band of saturated primaries and a grey ramp: colours that change visibly
    when the profile is ignored."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), 255 - x * 255 // (width - 1)], axis=-1)
    band = height // 3
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]):
        img[band:2 * band, i * width // 4:(i + 1) * width // 4] = colour
    img[2 * band:, :] = (x[2 * band:, :, None] * 255 // (width - 1))
    return img.astype(np.uint8)


def main() -> None:
    here = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--v2", action="store_true", help="an ICC v2 profile (default v4)")
    parser.add_argument("--out", default=str(here / "display-p3.icc"))
    parser.add_argument("--jpeg", default=str(here / "p3-64x48.jpg"), help="'' for none")
    args = parser.parse_args()
    profile = make_profile(2 if args.v2 else 4)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(profile)
    print(f"{args.out}: {len(profile)} bytes")
    if args.jpeg:
        from PIL import Image
        Image.fromarray(synthetic_image()).save(args.jpeg, format="JPEG", quality=95, icc_profile=profile)
        print(f"{args.jpeg}: {Path(args.jpeg).stat().st_size} bytes")


if __name__ == "__main__":
    main()
