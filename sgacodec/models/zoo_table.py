"""CompressAI's zoo as one table: its architectures, their qualities, the training lambdas and
the published Kodak figures. Torch-free (the command line's help and ``sgacodec models`` read it).

    ZOO["mbt2018-mean"].published[3]     # (0.307, 31.13): bpp and PSNR on Kodak, MSE model q3
    lmbda("mse", 3)                      # 0.0067

The lambdas are CompressAI's training lambdas per quality (its "Image compression" zoo page);
the published figures are the Kodak results CompressAI ships for its pretrained MSE models
(``results/image/kodak/compressai-<name>_mse_cuda.json`` in the CompressAI repository: no
refinement, mean PSNR over the 24 images, bpp of the real bitstreams), rounded to 3 and 2
decimals. The weights' URLs are CompressAI's (``network.compressai_zoo.zoo_weights_url``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

METRICS = ("mse", "ms-ssim")  # the order is part of the file format (container.py)
# CompressAI's training lambdas per zoo quality 1..8
LAMBDAS = {
    "mse": (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800),
    "ms-ssim": (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00),
}
MAX_QUALITY = len(LAMBDAS["mse"])


@dataclass(frozen=True)
class ZooModel:
    """One zoo architecture: what it is, its qualities, and its published Kodak figures (MSE)."""

    name: str
    paper: str
    qualities: int  # 1..qualities
    context: bool  # an autoregressive context model (sequential y coding: slow)
    published: dict[int, tuple[float, float]] = field(default_factory=dict)  # quality -> (bpp, PSNR)


def _published(*points: tuple[float, float]) -> dict[int, tuple[float, float]]:
    return {quality: point for quality, point in enumerate(points, start=1)}


ZOO = {m.name: m for m in (
    ZooModel("bmshj2018-hyperprior", "Balle et al. 2018, scale hyperprior", 8, False, _published(
        (0.131, 27.58), (0.209, 29.20), (0.320, 30.97), (0.478, 32.84), (0.669, 34.53), (0.939, 36.74),
        (1.259, 38.58), (1.660, 40.56))),
    ZooModel("mbt2018-mean", "Minnen et al. 2018, mean-scale hyperprior", 8, False, _published(
        (0.124, 27.70), (0.198, 29.36), (0.307, 31.13), (0.461, 32.95), (0.662, 34.97), (0.914, 36.91),
        (1.234, 38.84), (1.619, 40.63))),
    ZooModel("mbt2018", "Minnen et al. 2018, mean-scale hyperprior with context model", 8, True, _published(
        (0.111, 28.09), (0.187, 29.65), (0.288, 31.36), (0.432, 33.09), (0.639, 35.09), (0.885, 36.99),
        (1.200, 38.93), (1.587, 40.64))),
    ZooModel("cheng2020-anchor", "Cheng et al. 2020, residual blocks with context model", 6, True, _published(
        (0.120, 28.58), (0.184, 29.97), (0.271, 31.34), (0.417, 33.39), (0.594, 35.12), (0.806, 36.70))),
    ZooModel("cheng2020-attn", "Cheng et al. 2020, with attention, context model", 6, True, _published(
        (0.116, 28.43), (0.174, 29.77), (0.269, 31.32), (0.427, 33.36), (0.595, 34.95), (0.806, 36.62))),
)}
ZOO_NAMES = tuple(ZOO)


def lmbda(metric: str, quality: int) -> float:
    """CompressAI's training lambda of a zoo quality (1-based) for a metric."""
    return LAMBDAS[metric][quality - 1]


def has_quality(name: str, quality: int) -> bool:
    """Whether CompressAI publishes weights of this zoo model at this quality."""
    return name in ZOO and 1 <= quality <= ZOO[name].qualities
