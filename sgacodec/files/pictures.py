"""A picture as a file holds it: its pixels, and what travels with them (a colour profile, EXIF,
XMP, an alpha channel, grayness), carried into sgacodec files and back into PNG
(docs/format.md, "Metadata"), as cjxl and avifenc do by default.

    picture = picture_from(pil_image)                   # after EXIF orientation is applied
    chunks = picture.chunks(keep={"icc", "exif", "xmp"}, alpha=True)    # for the container
    picture = decoded_picture(rgb, header)              # pixels in the file's mode, its metadata
    write_decoded_png(decoder.strips(data), file)       # the same as a PNG, strip by strip

The coded image is always RGB: a grayscale picture is coded as three equal channels and decoded
back to one (ITU-R 601 luma, as Pillow converts); alpha is coded losslessly, apart, as a PNG in its
own chunk. EXIF keeps every byte but its Orientation, which is reset to 1 (the pixels are turned
upright before coding).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from ..errors import DecodeError
from .exif import orientation, with_orientation_reset

METADATA = ("icc", "exif", "xmp")
EXIF_PREFIX = b"Exif\0\0"


@dataclass
class Picture:
    """Pixels (uint8 [H, W, 3] RGB, or [H, W] for grayscale) and what travels with them."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None  # uint8 [H, W], None when opaque
    icc: bytes | None = None
    exif: bytes | None = None  # the TIFF structure (no "Exif\\0\\0" prefix), Orientation reset to 1
    xmp: bytes | None = None
    orientation: int | None = None  # the EXIF orientation the pixels were turned by
    notes: list[str] = field(default_factory=list)

    @property
    def grayscale(self) -> bool:
        return self.pixels.ndim == 2

    @property
    def rgb(self) -> np.ndarray:
        """The RGB pixels the codec codes (three equal channels for a grayscale picture)."""
        if self.grayscale:
            return np.ascontiguousarray(np.repeat(self.pixels[..., None], 3, axis=2))
        return self.pixels

    @property
    def mode(self) -> str:
        """The Pillow / PNG mode: L, LA, RGB or RGBA."""
        return ("L" if self.grayscale else "RGB") + ("A" if self.alpha is not None else "")

    def output(self) -> np.ndarray:
        """The pixels with alpha, as a PNG writer takes them: [H, W] or [H, W, C]."""
        return with_alpha(self.pixels, self.alpha)

    def chunks(self, keep=METADATA, alpha: bool = True) -> dict[str, bytes]:
        """The container's metadata of this picture: the ``keep`` ones it has, and its alpha plane
        (a PNG) unless ``alpha`` is False."""
        out = {name: getattr(self, name) for name in METADATA if name in keep and getattr(self, name)}
        if alpha and self.alpha is not None:
            from .png import write_png

            buf = io.BytesIO()
            write_png(buf, self.alpha, "L", compress_level=9)
            out["alpha"] = buf.getvalue()
        return out

    def png_metadata(self) -> dict:
        """PNGWriter's keyword arguments for this picture's metadata."""
        return {"icc_profile": self.icc, "exif": self.exif, "xmp": self.xmp}

    def kept_and_dropped(self, keep=METADATA, alpha: bool = True) -> tuple[list[str], list[str]]:
        """What of this picture a file keeps and drops, in words ('ICC (584 B)', ...)."""
        names = {"icc": "ICC profile", "exif": "EXIF", "xmp": "XMP"}
        kept, dropped = [], []
        for name in METADATA:
            value = getattr(self, name)
            if value:
                (kept if name in keep else dropped).append(f"{names[name]} ({len(value)} B)")
        if self.alpha is not None:
            (kept if alpha else dropped).append("alpha")
        return kept, dropped

    def kept_note(self, name: str, keep=METADATA, alpha: bool = True) -> str | None:
        """The line that tells the user what ``name``'s file keeps and drops (None: nothing to say)."""
        kept, dropped = self.kept_and_dropped(keep, alpha)
        if not (kept or dropped):
            return None
        turned = (f"; EXIF orientation {self.orientation} applied to the pixels and reset to 1"
                  if self.orientation not in (None, 1) and "exif" in keep else "")
        return (f"{name}: kept {', '.join(kept) or 'nothing'}" + (f"; dropped {', '.join(dropped)}" if dropped else "")
                + turned)

    def into_file(self, data: bytes, keep=METADATA, alpha: bool = True) -> bytes:
        """``data``, the version 3 file coded from this picture's pixels, with the picture's kept
        metadata, its alpha and its colour (grayscale) added: the same streams and pixels."""
        chunks = self.chunks(keep, alpha)
        if not chunks and not self.grayscale:
            return data
        from ..codec.container import with_metadata

        return with_metadata(data, chunks, self.grayscale)


def metadata_of(img) -> dict:
    """ICC, EXIF (TIFF bytes) and XMP of a Pillow image, from its info (before any transpose)."""
    info = img.info
    exif = info.get("exif")
    if isinstance(exif, (bytes, bytearray)) and exif.startswith(EXIF_PREFIX):
        exif = bytes(exif[len(EXIF_PREFIX):])
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    icc = info.get("icc_profile")
    return {"icc": bytes(icc) if icc else None, "exif": bytes(exif) if exif else None,
            "xmp": bytes(xmp) if xmp else None}


def with_exif_upright(metadata: dict) -> tuple[dict, int | None]:
    """The metadata with EXIF Orientation reset to 1 in place, and the orientation it had."""
    exif = metadata.get("exif")
    if not exif:
        return metadata, None
    return {**metadata, "exif": with_orientation_reset(exif)}, orientation(exif)


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """Luma of RGB uint8 pixels as Pillow's convert("L") computes it: (19595 R + 38470 G + 7471 B
    + 2^15) >> 16, row strip by row strip."""
    out = np.empty(rgb.shape[:2], np.uint8)
    step = max(1, (1 << 20) // max(rgb.shape[1], 1))
    for row in range(0, rgb.shape[0], step):
        part = rgb[row : row + step].astype(np.uint32)
        out[row : row + step] = (part[..., 0] * 19595 + part[..., 1] * 38470 + part[..., 2] * 7471 + 32768) >> 16
    return out


def alpha_from_png(data: bytes, height: int, width: int) -> np.ndarray:
    """The alpha plane of a file's alph chunk: a grayscale 8-bit PNG of exactly the image's size,
    its size checked before its pixels are decoded."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG" or img.mode != "L" or img.size != (width, height):
                raise DecodeError(f"the alpha chunk is not an 8-bit grayscale PNG of {width}x{height}")
            img.load()
            return np.asarray(img)
    except DecodeError:
        raise
    except Exception as exc:  # Pillow's many ways of refusing damaged data
        raise DecodeError(f"the alpha chunk does not decode ({type(exc).__name__})") from None


def with_alpha(pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Pixels ([h, w] gray or [h, w, 3]) with ``alpha`` [h, w] as their last channel, as a PNG
    writer takes them; the pixels themselves when there is no alpha."""
    if alpha is None:
        return pixels
    base = pixels[..., None] if pixels.ndim == 2 else pixels
    return np.ascontiguousarray(np.concatenate([base, alpha[..., None]], axis=2))


def decoded_alpha(header, bounds=None) -> np.ndarray | None:
    """A file's alpha plane, uint8 [h, w] (cropped to ``bounds``, (r0, r1, c0, c1)), or None."""
    if "alpha" not in header.metadata:
        return None
    alpha = alpha_from_png(header.metadata["alpha"], header.height, header.width)
    if bounds is not None:
        r0, r1, c0, c1 = bounds
        alpha = np.ascontiguousarray(alpha[r0:r1, c0:c1])
    return alpha


def decoded_picture(rgb: np.ndarray, header, region=None) -> Picture:
    """The picture a decoded file gives: its RGB pixels in the file's mode (grayscale to one
    channel), its alpha (cropped to ``region``, (x, y, width, height), when the pixels are a
    region's), its metadata."""
    pixels = gray_of(rgb) if header.grayscale else rgb
    bounds = None
    if region is not None:
        x, y = int(region[0]), int(region[1])
        bounds = (y, y + rgb.shape[0], x, x + rgb.shape[1])
    meta = header.metadata
    return Picture(pixels, decoded_alpha(header, bounds), meta.get("icc"), meta.get("exif"), meta.get("xmp"))


def write_decoded_png(strips, file) -> None:
    """The PNG of a decode given strip by strip (codec.decoder.Strips: ``header``, ``bounds``,
    ``height``, ``width``, and its uint8 RGB strips), written into the binary ``file`` as the
    strips come: the pixels in the file's mode, its alpha, colour profile, EXIF and XMP, as
    ``decoded_picture(...).output()`` with ``png_metadata()`` would give them whole."""
    from .png import PNGWriter, deflate_workers

    header = strips.header
    alpha = decoded_alpha(header, strips.bounds)
    mode = ("L" if header.grayscale else "RGB") + ("A" if alpha is not None else "")
    channels = len(mode)
    meta = header.metadata
    with PNGWriter(file, strips.width, strips.height, mode, icc_profile=meta.get("icc"), exif=meta.get("exif"),
                   xmp=meta.get("xmp"), workers=deflate_workers(strips.height * strips.width * channels)) as png:
        row = 0
        for strip in strips:
            pixels = gray_of(strip) if header.grayscale else strip
            png.write_rows(with_alpha(pixels, None if alpha is None else alpha[row : row + len(strip)]))
            row += len(strip)
