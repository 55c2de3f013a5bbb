"""Images as the networks see them: uint8 RGB to a [1, 3, H, W] tensor in [0, 1] and back, the
padding to the latent grid, and the reconstruction hash a file carries."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from ..config import LATENT_MULTIPLE


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """[1, 3, H, W] float32 in [0, 1] from RGB uint8 [H, W, 3]."""
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().div(255.0)[None]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """RGB uint8 [H, W, 3] from one image [3, H, W]: round(255 clamp(x, 0, 1))."""
    return x.clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def pad(x: torch.Tensor, multiple: int = LATENT_MULTIPLE) -> torch.Tensor:
    """Replicate-pad right and bottom to a multiple of ``multiple`` (cropped again on decode)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def recon_hash(rgb: np.ndarray) -> bytes:
    """The first 8 bytes of the SHA-256 of the pixels' bytes (row-major, channels last)."""
    return ReconHash().update(rgb).digest()


class ReconHash:
    """``recon_hash`` of an image given strip by strip, top to bottom (whole rows)."""

    def __init__(self):
        self._sha = hashlib.sha256()

    def update(self, rows: np.ndarray) -> "ReconHash":
        self._sha.update(np.ascontiguousarray(rows))
        return self

    def digest(self) -> bytes:
        return self._sha.digest()[:8]
