"""CompressAI's published Kodak curve of mbt2018-mean (MSE), the target of the embedded models,
and one model's rate at equal PSNR against it (docs/models.md).

    rate_vs_published(0.4188, 29.24)   # -> +118.8: the published curve needs 1/2.188 of the bits

The curve is the zoo table's (models/zoo_table.py: CompressAI's published Kodak results of its
mbt2018-mean MSE models; no refinement; mean of per-image PSNR). One model is one point, so its figure is the
rate at equal PSNR: the point's bpp against the curve's bpp at the point's PSNR, with log(bpp)
interpolated linearly in PSNR between the curve's neighbouring points (BD-rate's log-rate axis
over an interval of zero width). Outside the curve's PSNR range the end segment is extended, and
``inside_published_range`` says so.
"""

from __future__ import annotations

import math

from ..models.zoo_table import ZOO

REFERENCE_MODEL = "mbt2018-mean"  # the embedded models' architecture and target


def published_curve(name: str = REFERENCE_MODEL) -> list[tuple[float, float]]:
    """[(bpp, PSNR)] of a zoo model's published Kodak curve (MSE), by increasing rate."""
    published = ZOO[name].published
    return [published[q] for q in sorted(published)]


def published_bpp_at(psnr: float) -> float:
    """The published curve's bpp at ``psnr`` (log-rate interpolation; end segments extended)."""
    curve = published_curve()
    k = next((i for i in range(1, len(curve) - 1) if psnr < curve[i][1]), len(curve) - 1)
    (r0, d0), (r1, d1) = curve[k - 1], curve[k]
    t = (psnr - d0) / (d1 - d0)
    return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))


def rate_vs_published(bpp: float, psnr: float) -> float:
    """Percent more rate than the published curve at equal PSNR (negative: fewer bits)."""
    return 100.0 * (bpp / published_bpp_at(psnr) - 1.0)


def inside_published_range(psnr: float) -> bool:
    curve = published_curve()
    return curve[0][1] <= psnr <= curve[-1][1]
