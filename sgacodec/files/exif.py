"""EXIF Orientation (tag 0x0112 of IFD0): read it, and set it to 1 in place.

A decoder that writes pixels already turned upright must not keep an Orientation that tells a
viewer to turn them again; every other tag (camera, date, GPS, maker notes, whose offsets point
anywhere in the blob) must survive byte for byte. So the blob is never re-serialised: only the
two bytes of the Orientation value change.

    orientation(exif)            # 6, or None (no tag, or a blob that cannot be trusted)
    with_orientation_reset(exif) # the same bytes, Orientation = 1; the input itself if malformed

``exif`` is the TIFF structure (b"II*\\0..." or b"MM\\0*..."), optionally behind the b"Exif\\0\\0"
of a JPEG APP1 segment (as Pillow's ``info["exif"]`` has it). Every count and offset is checked
against the blob's length before it is read; malformed input (truncated, offsets out of range,
an Orientation entry that is not one SHORT) gives None / the input unchanged, never an exception.
"""

from __future__ import annotations

import struct

__all__ = ["orientation", "with_orientation_reset"]

ORIENTATION, SHORT = 0x0112, 3
PREFIX = b"Exif\0\0"


def _entries(exif: bytes) -> tuple[str, list[int]] | None:
    """Byte order and the offsets of the value fields of IFD0's well-formed Orientation entries
    (type SHORT, count 1); None when the header or IFD0 cannot be trusted."""
    if not isinstance(exif, (bytes, bytearray)):
        return None
    base = len(PREFIX) if exif[:len(PREFIX)] == PREFIX else 0
    header = exif[base:base + 8]
    if len(header) < 8 or header[:4] not in (b"II*\0", b"MM\0*"):
        return None
    order = "<" if header[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", header[4:])[0]
    start = base + ifd
    if ifd < 8 or start + 2 > len(exif):
        return None
    count = struct.unpack_from(order + "H", exif, start)[0]
    if start + 2 + 12 * count > len(exif):  # truncated IFD0: trust none of it
        return None
    found = []
    for pos in range(start + 2, start + 2 + 12 * count, 12):
        tag, kind, n = struct.unpack_from(order + "HHI", exif, pos)
        if tag == ORIENTATION:
            if kind != SHORT or n != 1:
                return None
            found.append(pos + 8)  # a SHORT lies in the first two bytes of the value field
    return order, found


def orientation(exif: bytes) -> int | None:
    """IFD0's Orientation, 1 to 8; None when absent, out of range, or the blob is malformed."""
    parsed = _entries(exif)
    if not parsed or not parsed[1]:
        return None
    order, found = parsed
    value = struct.unpack_from(order + "H", exif, found[0])[0]
    return value if 1 <= value <= 8 else None


def with_orientation_reset(exif: bytes) -> bytes:
    """``exif`` with every well-formed IFD0 Orientation value set to 1, all other bytes the same;
    the input unchanged when it has none or is malformed."""
    parsed = _entries(exif)
    if not parsed or not parsed[1]:
        return exif
    order, found = parsed
    out = bytearray(exif)
    for pos in found:
        struct.pack_into(order + "H", out, pos, 1)
    return bytes(out)
