"""Reading images (``read_picture``: pixels and what travels with them; ``read_image``: RGB uint8
arrays), and finding them, or sgacodec files, in folders and globs.

Any mode Pillow opens becomes 8-bit pixels: EXIF orientation is applied (and the EXIF tag reset
to 1); grayscale stays one channel (``read_image`` expands it); palette images are expanded;
16-bit images are scaled to 8 bits; CMYK is converted; an alpha channel is kept apart. Every
lossy step (16-bit or floating-point pixels reduced to 8 bits, only the first frame of a GIF,
APNG or multi-page TIFF encoded, alpha left out by ``read_image``) is told through ``notes``.
Images larger than the format's limits (2^30 pixels, 65535 a side), or than the memory allows, are
refused before their pixels are decoded (decompression bombs).
"""

from __future__ import annotations

import glob
import io
import os
import struct
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ..codec import memory
from ..codec.container import MAX_PIXELS, MAX_SIDE
from ..errors import ImageError, one_line
from .pictures import Picture, metadata_of, with_exif_upright

MAX_INPUT_BYTES = 1 << 30  # no image or sgacodec file sgacodec accepts is larger than 1 GiB
READ_BYTES_PER_PIXEL = 8  # Pillow's pixels (4 bytes) and the RGB array made from them (3), at most


def read_limited(source, name: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """All bytes of a path or binary file object, refusing more than ``limit`` (a pipe or a device
    such as /dev/zero must not fill the memory)."""
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as f:
                data = f.read(limit + 1)
        else:
            data = source.read(limit + 1)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise ImageError(f"{name}: larger than {limit >> 20} MiB; refused")
    return data


def read_image(source, notes: list | None = None) -> np.ndarray:
    """RGB uint8 array [H, W, 3] from a path, bytes, or binary file object (a grayscale image as
    three equal channels; its alpha, if any, left out, with a note).

    ``notes``, when given, receives one line per lossy conversion (alpha dropped, 16 bits or
    floating point to 8 bits, only the first frame of an animation or multi-page file).
    """
    notes = notes if notes is not None else []
    picture = read_picture(source, notes)
    if picture.alpha is not None:
        name = str(source) if isinstance(source, (str, Path)) else "input"
        notes.append(f"{name}: alpha channel dropped (read_image gives the colour only; transparent pixels "
                     "keep the colour they hold)")
    return picture.rgb


def read_picture(source, notes: list | None = None) -> Picture:
    """The picture of a path, bytes, or binary file object: its pixels upright (EXIF orientation
    applied), grayscale kept as one channel, alpha apart (None when opaque), and its ICC profile,
    EXIF (Orientation reset to 1) and XMP. ``notes``: as read_image's."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = str(source) if isinstance(source, (str, Path)) else "input"
    notes = notes if notes is not None else []
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if img.width * img.height > MAX_PIXELS or max(img.size) > MAX_SIDE:
                    raise ImageError(f"{name}: {img.width}x{img.height} is larger than sgacodec accepts "
                                     f"({MAX_PIXELS} pixels, {MAX_SIDE} a side)")
                if img.width < 1 or img.height < 1:
                    raise ImageError(f"{name}: image has no pixels")
                frames = getattr(img, "n_frames", 1)
                if frames > 1:
                    notes.append(f"{name}: {frames} frames or pages; only the first is encoded")
                memory.check(img.width * img.height * READ_BYTES_PER_PIXEL,
                             f"reading {name} ({img.width}x{img.height})")
                img.load()
                metadata, turned = with_exif_upright(metadata_of(img))
                img = ImageOps.exif_transpose(img)
                pixels, alpha = pixels_of(img, name, notes)
                return Picture(pixels, alpha, orientation=turned, notes=notes, **metadata)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image too large (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError) as exc:
        if isinstance(exc, ImageError):
            raise
        reason = one_line(exc, limit=200, typed=False)
        raise ImageError(f"{name}: damaged or truncated image ({reason})") from None


GRAY_MODES = ("1", "L", "LA", "La", "I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def pixels_of(img, name: str = "input", notes: list | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels, alpha): 8-bit gray [H, W] or RGB [H, W, 3], and the alpha plane [H, W] (None when
    there is none or it is opaque)."""
    notes = notes if notes is not None else []
    alpha = None
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBa", "La"):  # premultiplied: as the straight alpha the file stores
        img = img.convert({"RGBa": "RGBA", "La": "LA"}[img.mode])
    if "A" in img.mode:
        plane = np.asarray(img.getchannel("A"), dtype=np.uint8)
        alpha = np.ascontiguousarray(plane) if plane.size and plane.min() < 255 else None
        img = img.convert("L" if img.mode == "LA" else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if peak > 255:
            notes.append(f"{name}: 16-bit image reduced to 8 bits")
        return np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8), alpha
    if img.mode == "F":
        raw = np.asarray(img, dtype=np.float64)
        outside = int((~np.isfinite(raw) | (raw < 0) | (raw > 255)).sum())
        notes.append(f"{name}: floating-point image read as 0..255 and rounded to 8 bits"
                     + (f" ({outside} values outside 0..255 clipped, NaN as 0)" if outside else ""))
        return np.clip(np.round(np.nan_to_num(raw)), 0, 255).astype(np.uint8), alpha
    gray = img.mode in GRAY_MODES
    try:
        arr = np.asarray(img.convert("L" if gray else "RGB"), dtype=np.uint8)
    except ValueError:
        raise ImageError(f"{name}: colour mode {img.mode} is not supported") from None
    if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1 or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ImageError(f"{name}: image has no pixels")
    return np.ascontiguousarray(arr), alpha


def encode_png(pixels: np.ndarray, **metadata) -> bytes:
    """A PNG of uint8 pixels ([H, W] gray, [H, W, C] with C 1 to 4), written by png.py (which
    writes large images in strips, deflating in parallel); ``metadata``: icc_profile, exif, xmp."""
    from .png import deflate_workers, write_png

    buf = io.BytesIO()
    write_png(buf, pixels, workers=deflate_workers(pixels.size), **metadata)
    return buf.getvalue()


def image_extensions() -> set[str]:
    """The file extensions of every format Pillow opens here (GIF, and AVIF or HEIC where its
    plugins are installed), lower case with the dot."""
    from PIL import Image

    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def is_sgacodec_file(path) -> bool:
    """Whether a file begins with the sgacodec magic bytes (whatever its extension)."""
    from ..codec.container import MAGIC

    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def expand_inputs(args, wanted: Callable[[Path], bool] | None = None, what: str = "images") -> list[str]:
    """Files from paths, directories (their ``what``, sorted) and globs, in order, without repeats.

    A directory contributes the files ``wanted`` accepts (default: the formats Pillow opens, by
    extension). '-' (stdin) is kept. A path that does not exist is kept as given, so reading it
    reports the error; a glob that matches nothing, or a directory without any, is an ImageError.
    """
    if wanted is None:
        extensions = image_extensions()
        wanted = lambda p: p.suffix.lower() in extensions
    out: list[str] = []
    seen: set[str] = set()  # a set: folders may hold millions of files
    for arg in args:
        if not names_collection(arg):
            found = [arg]
        elif os.path.isdir(arg):
            found = sorted(str(p) for p in Path(arg).iterdir() if p.is_file() and wanted(p))
            if not found:
                raise ImageError(f"{arg}: no {what} in this directory")
        else:
            found = sorted(p for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
            if not found:
                raise ImageError(f"{arg}: matches no file")
        for f in found:
            if f not in seen:
                seen.add(f)
                out.append(f)
    return out


def expand_files(args) -> list[str]:
    """sgacodec files from paths, directories (those beginning with its magic bytes) and globs."""
    return expand_inputs(args, is_sgacodec_file, "sgacodec files")


def names_collection(arg: str) -> bool:
    """Whether an input argument names a folder or a glob (expand_inputs lists its images) rather
    than one file (or '-')."""
    return arg != "-" and (os.path.isdir(arg) or (not os.path.exists(arg) and glob.has_magic(arg)))


def center_crop(rgb: np.ndarray, size: int | None) -> np.ndarray:
    """The central size x size window (or the whole side where the image is smaller)."""
    if not size:
        return rgb
    h, w = rgb.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(rgb[top : top + ch, left : left + cw])
