"""Training data: a folder of images decoded once into one uint8 buffer, and random square crops
with random horizontal and vertical flips cut from it with one gather.

The pool keeps every image's pixels back to back in one uint8 tensor (no padding), with each
image's offset, height and width. It lives on the CPU or on the training device
(``TrainConfig.pool``): on a GPU, "device" keeps the decoded crops' source there, so a batch is
drawn, cut and flipped on the GPU and never crosses the bus.

A step's random numbers (which image, where, which flips) are drawn for the whole global batch
from one generator seeded alike in every process, and each process cuts its own slice of that
batch: under torchrun the crops of a step are the same whatever the number of processes, and
each rank trains on different crops (train.py, distributed.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


def image_files(folder) -> list[Path]:
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images under {folder}")
    return files


def load_images(folder, min_side: int = 0) -> list[np.ndarray]:
    """Decode every image of a folder once (RGB uint8 HxWx3), skipping those smaller than min_side."""
    from ..files.images import read_image

    images = [read_image(p) for p in image_files(folder)]
    return [im for im in images if min(im.shape[:2]) >= min_side]


class CropPool:
    """uint8 images on one device; ``batch`` cuts random crops with flips as [B, 3, crop, crop]."""

    def __init__(self, images: list[np.ndarray], crop: int, device="cpu", seed: int = 0):
        images = [im for im in images if min(im.shape[:2]) >= crop]
        if not images:
            raise ValueError(f"no training image is at least {crop} pixels on its short side")
        self.device = torch.device(device)
        self.crop = crop
        sizes = np.array([im.shape[:2] for im in images], dtype=np.int64)
        pixels = sizes[:, 0] * sizes[:, 1]
        offsets = np.concatenate([[0], np.cumsum(pixels)[:-1]])
        flat = np.concatenate([np.ascontiguousarray(im).reshape(-1, 3) for im in images])
        self.pixels = torch.from_numpy(flat).to(self.device)  # [P, 3] uint8
        self.offsets = torch.from_numpy(offsets).to(self.device)
        self.heights = torch.from_numpy(sizes[:, 0]).to(self.device)
        self.widths = torch.from_numpy(sizes[:, 1]).to(self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._ramp = torch.arange(crop, device=self.device)

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def nbytes(self) -> int:
        return self.pixels.numel()

    def batch(self, size: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        """Rank ``rank``'s share (size / world crops) of a global batch of ``size`` crops.

        uint8, [size / world, 3, crop, crop], on the pool's device, in channels_last layout
        (the pool is HxWx3): ``.contiguous()`` gives the usual layout.
        """
        if size % world:
            raise ValueError(f"batch size {size} is not a multiple of the {world} processes")
        crop, ramp = self.crop, self._ramp
        u = torch.rand(size, 5, generator=self.generator, device=self.device)
        share = size // world
        u = u[rank * share : (rank + 1) * share]
        k = (u[:, 0] * len(self)).long().clamp_(max=len(self) - 1)
        h, w = self.heights[k], self.widths[k]
        top = (u[:, 1] * (h - crop + 1)).long().clamp_(max=h - crop)
        left = (u[:, 2] * (w - crop + 1)).long().clamp_(max=w - crop)
        rows = top[:, None] + torch.where(u[:, 3:4] < 0.5, crop - 1 - ramp, ramp)  # vertical flip
        cols = left[:, None] + torch.where(u[:, 4:5] < 0.5, crop - 1 - ramp, ramp)  # horizontal flip
        index = self.offsets[k, None, None] + rows[:, :, None] * w[:, None, None] + cols[:, None, :]
        return self.pixels[index].permute(0, 3, 1, 2)  # [share, crop, crop, 3] -> NCHW view
