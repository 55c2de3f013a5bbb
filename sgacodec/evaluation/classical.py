"""Classical codecs through Pillow (JPEG, WebP, AVIF where Pillow has it) at a target bit rate,
for the R-D comparison: the quality whose bpp is closest (in log) to the target, by bisection."""

from __future__ import annotations

import io
import math
from typing import Iterable

import numpy as np

from ..errors import EvaluationError

CLASSICAL_CODECS = ("jpeg", "webp", "avif")


def classical_available(codec: str) -> bool:
    from PIL import features

    if codec == "jpeg":
        return True
    if codec == "webp":
        return bool(features.check("webp"))
    if codec == "avif":
        return "avif" in features.get_supported_modules() and bool(features.check("avif"))
    return False


def parse_classical(spec: str | Iterable[str] | None) -> list[str]:
    """'jpeg,webp,avif' -> the available ones (AVIF only where Pillow has it); unknown names fail."""
    if not spec:
        return []
    names = [n.strip().lower() for s in ([spec] if isinstance(spec, str) else spec)
             for n in s.split(",") if n.strip()]
    for n in names:
        if n not in CLASSICAL_CODECS:
            raise EvaluationError(f"unknown classical codec {n!r}; choose from {', '.join(CLASSICAL_CODECS)}")
    return [n for n in dict.fromkeys(names) if classical_available(n) or n != "avif"]


def classical_encode(rgb: np.ndarray, codec: str, quality: int) -> tuple[int, np.ndarray]:
    """(bytes, decoded RGB) of one Pillow encoding at ``quality``."""
    from PIL import Image

    img = Image.fromarray(rgb, "RGB")
    buf = io.BytesIO()
    if codec == "jpeg":
        img.save(buf, format="JPEG", quality=quality, optimize=True)
    elif codec == "webp":
        img.save(buf, format="WEBP", quality=quality, method=6)
    elif codec == "avif":
        img.save(buf, format="AVIF", quality=quality)
    else:
        raise EvaluationError(f"unknown classical codec {codec!r}")
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as dec:
        out = np.asarray(dec.convert("RGB"), dtype=np.uint8)
    return len(data), out


QUALITY_RANGE = {"jpeg": (1, 95), "webp": (0, 100), "avif": (0, 100)}


def classical_at_rate(rgb: np.ndarray, codec: str, target_bpp: float) -> dict:
    """Pillow encoding whose bpp is closest (in log) to ``target_bpp``, by bisection on quality."""
    from .. import metrics

    h, w = rgb.shape[:2]
    cache: dict[int, tuple[int, np.ndarray]] = {}

    def at(q):
        if q not in cache:
            cache[q] = classical_encode(rgb, codec, q)
        return metrics.bpp(cache[q][0], h, w)

    lo, hi = QUALITY_RANGE[codec]
    if at(hi) <= target_bpp:
        best = hi
    elif at(lo) >= target_bpp:
        best = lo
    else:  # at(lo) < target < at(hi): find the first quality at or above the target
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if at(mid) < target_bpp else (lo, mid)
        best = min((lo, hi), key=lambda q: abs(math.log(at(q) / target_bpp)))
    nbytes, dec = cache[best]
    mse = metrics.mse(rgb, dec)
    return {"quality": best, "bytes": nbytes, "bpp": metrics.bpp(nbytes, h, w),
            "psnr": metrics.psnr(rgb, dec), "ms_ssim": metrics.ms_ssim(rgb, dec), "mse": mse}
