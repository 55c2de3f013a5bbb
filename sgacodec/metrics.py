"""Image quality and rate measures, each formula defined once (docs/method.md):

    MSE  on the [0, 1] scale                     PSNR = -10 log10(MSE)   (= 10 log10(255^2 / MSE_8bit))
    bpp  = bits / (H * W) of the original image  bpp of a file = 8 * bytes / (H * W)
    R-D loss = lambda * 255^2 * MSE + bpp

``psnr_from_mse`` and ``rd_loss`` take Python floats or torch tensors alike, so the refinement
loop, training and the measurements on decoded files share them.
"""

from __future__ import annotations

import math

import numpy as np

MSE_FLOOR = 1e-12  # PSNR of a tensor is capped at 120 dB instead of infinity


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two uint8 images on the [0, 1] scale (summed in strips of rows, so
    a large image needs no float copy of itself)."""
    if a.shape != b.shape:
        raise ValueError(f"images of shapes {a.shape} and {b.shape}")
    total, step = 0, max(1, (1 << 22) // max(a[0].size, 1))
    for row in range(0, a.shape[0], step):
        diff = a[row : row + step].astype(np.int32) - b[row : row + step].astype(np.int32)
        total += int(np.dot(diff.ravel().astype(np.int64), diff.ravel()))
    return total / a.size / 255.0**2


def psnr_from_mse(value):
    """-10 log10(MSE) for MSE on the [0, 1] scale: a float (inf for 0) or a tensor (floored)."""
    if isinstance(value, (int, float)):
        return math.inf if value == 0 else -10.0 * math.log10(value)
    return -10.0 * value.clamp_min(MSE_FLOOR).log10()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images."""
    return psnr_from_mse(mse(a, b))


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of ``num_bytes`` for an image of height x width pixels."""
    return 8.0 * num_bytes / (height * width)


def rd_loss(lmbda: float, mse_value, bpp_value):
    """lambda * 255^2 * MSE + bpp (floats or tensors)."""
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


def psnr_srgb(a: np.ndarray, b: np.ndarray, icc: bytes | None) -> float:
    """PSNR in dB of two uint8 RGB images that share the colour profile ``icc`` (ICC bytes; None:
    sRGB), each converted to sRGB through it first (LittleCMS, Pillow's ImageCms, perceptual intent,
    8-bit output): the error as a colour-managed viewer shows it."""
    if not icc:
        return psnr(a, b)
    import io

    from PIL import Image, ImageCms

    source, srgb = ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB")
    transform = ImageCms.buildTransform(source, srgb, "RGB", "RGB")
    a_srgb, b_srgb = (np.asarray(ImageCms.applyTransform(Image.fromarray(v, "RGB"), transform)) for v in (a, b))
    return psnr(a_srgb, b_srgb)
