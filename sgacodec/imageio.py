"""Reading images into RGB uint8 arrays and writing files atomically.

Any mode Pillow opens becomes 8-bit RGB: EXIF orientation is applied; grayscale and palette
images are expanded; 16-bit images are scaled to 8 bits; CMYK is converted; an alpha channel is
dropped (the codec stores colour only; transparent pixels keep the colour they hold).
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

MAX_IMAGE_PIXELS = 8192 * 8192  # refuse larger images (decompression bombs)


class ImageError(ValueError):
    """An input that is not a usable image; the message is one line."""


def read_image(source) -> np.ndarray:
    """RGB uint8 array [H, W, 3] from a path, bytes, or binary file object."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = str(source) if isinstance(source, (str, Path)) else "input"
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise ImageError(f"{name}: {img.width}x{img.height} is larger than the "
                                     f"{MAX_IMAGE_PIXELS} pixels sgacodec accepts")
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb8(img)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image too large (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{name}: damaged or truncated image ({exc})") from None


def _to_rgb8(img) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.clip(np.round(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError("image has no pixels")
    return np.ascontiguousarray(arr)


def encode_png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def atomic_write(path, data: bytes) -> None:
    """Write via a temporary file in the same folder, then rename: never a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
