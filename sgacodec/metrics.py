"""Image quality and rate measures.

    PSNR = 10 log10(255^2 / MSE) on 8-bit RGB        bpp = 8 * bytes / (H * W)
    R-D loss = lambda * 255^2 * MSE([0, 1] scale) + bpp
"""

from __future__ import annotations

import math

import numpy as np


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two uint8 images on the [0, 1] scale."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(diff * diff)) / 255.0**2


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    m = mse(a, b)
    return math.inf if m == 0 else -10.0 * math.log10(m)


def bpp(num_bytes: int, height: int, width: int) -> float:
    return 8.0 * num_bytes / (height * width)


def rd_loss(lmbda: float, mse_value: float, bpp_value: float) -> float:
    return lmbda * 255.0**2 * mse_value + bpp_value


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two uint8 RGB images (None when smaller than 161 px on a side)."""
    if min(a.shape[:2]) < 161:
        return None
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    # torch.tensor copies: the arrays may be read-only views (decoded PNGs, cached reads)
    ta, tb = (torch.tensor(v, dtype=torch.float64).permute(2, 0, 1)[None] for v in (a, b))
    return float(_ms_ssim(ta, tb, data_range=255.0))
