"""Refinement of a large image in tiles (docs/method.md, "Refinement in tiles"): the whole
image's loss and gradient, computed tile by tile in bounded memory.

The R-D loss is a sum over pixels and latents, so it is a sum over tiles: each tile's pixels'
distortion, its y's bits and its z's bits. Each term is computed from the crop of latents it
depends on (the tile plus the halo h_s and g_s need: network/tiling.py), so

    L = sum over tiles t of   lambda 255^2 SE(x_t, g_s(y~ crop)) / (3 H W)
                            + (bits(y~_t | h_s(z~ crop)) + bits(z~_t)) / (H W)

and backpropagating each tile's term into the shared latents (y and z~ are sliced from the whole
tensors) accumulates exactly the whole image's gradient. The rate terms are the
real model's (scales and means from h_s over the z~ each tile's y depends on), and z is one tensor
for the whole image, as it is coded. The Gumbel noise of each step is drawn for the whole y and z
in the order a whole-image step draws it, so a tiled refinement is the whole-image one up to float
rounding. Tiles whose crops have the same geometry (the interior ones: all but the image's edges)
go through the networks together, as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import WHOLE_REFINE_MEGAPIXELS, RefineConfig
from ..metrics import rd_loss
from ..network.latent_model import LatentModel, YParams
from ..network.tiling import needs, run_tile
from .rounding import draw_noise, soft_round
from .speed import autocast


@dataclass(frozen=True)
class Plan:
    """One tile's crops, as rectangles (r0, r1, c0, c1): its core y (its own latents), the y its
    pixels depend on (``y_crop``), the z that y depends on (``z_crop``), its core z, and its pixels
    inside the image; ``shape`` is the geometry tiles must share to be batched."""

    y_core: tuple
    y_crop: tuple
    z_crop: tuple
    z_core: tuple
    pixels: tuple

    @property
    def shape(self) -> tuple:
        def rel(inner, outer):
            return (inner[0] - outer[0], inner[1] - outer[0], inner[2] - outer[2], inner[3] - outer[2])

        scale_px = tuple(16 * v for v in self.y_crop)
        return (rel(self.y_core, self.y_crop), self.y_crop[1] - self.y_crop[0], self.y_crop[3] - self.y_crop[2],
                rel(self.y_crop, tuple(4 * v for v in self.z_crop)), self.z_crop[1] - self.z_crop[0],
                self.z_crop[3] - self.z_crop[2], rel(self.z_core, self.z_crop), rel(self.pixels, scale_px))


def plans(net, grid) -> list[Plan]:
    """The crops of every tile of ``grid`` for the model ``net``: its synthesis reads the y it
    depends on, whose scales and means h_s computes from the z they depend on."""
    (yh, yw), (zh, zw) = grid.y_size, grid.z_size
    out = []
    for tile in grid.tiles:
        r0, r1, c0, c1 = tile.pixels
        rows, cols = needs(net.g_s, r0, r1 - 1, yh, 0), needs(net.g_s, c0, c1 - 1, yw, 1)
        y_crop = (min(rows[0], tile.y[0]), max(rows[1] + 1, tile.y[1]), min(cols[0], tile.y[2]),
                  max(cols[1] + 1, tile.y[3]))
        zr, zc = needs(net.h_s, y_crop[0], y_crop[1] - 1, zh, 0), needs(net.h_s, y_crop[2], y_crop[3] - 1, zw, 1)
        z_core = tuple(v // 4 for v in tile.y)
        z_crop = (min(zr[0], z_core[0]), max(zr[1] + 1, z_core[1]), min(zc[0], z_core[2]), max(zc[1] + 1, z_core[3]))
        out.append(Plan(tile.y, y_crop, z_crop, z_core, tile.pixels))
    return out


def _crop(t: torch.Tensor, rect) -> torch.Tensor:
    return t[..., rect[0] : rect[1], rect[2] : rect[3]]


def _stack(tensor: torch.Tensor, rects) -> torch.Tensor:
    """The crops of ``tensor`` [B, ...] at ``rects``, stacked tile-major: [len(rects) * B, ...]."""
    return torch.cat([_crop(tensor, r) for r in rects])


class TiledSteps:
    """The refinement loop's two loss functions (as speed.CompiledSteps gives them) computed in
    tiles: ``backward`` accumulates the whole image's gradient of the relaxed loss, ``evaluate``
    returns the true (hard-rounded) loss terms per image. ``batch`` tiles go through at once."""

    mode = None  # eager: the loop gives it Python floats for tau

    def __init__(self, latent_model: LatentModel, grid, batch: int = 1):
        self.latent_model, self.grid = latent_model, grid
        self.on_tile = None  # called with the share of a step done, after each batch of tiles
        groups: dict[tuple, list[Plan]] = {}
        for plan in plans(latent_model.net, grid):
            groups.setdefault(plan.shape, []).append(plan)
        self.batches = [members[i : i + batch] for members in groups.values() for i in range(0, len(members), batch)]

    def _terms(self, x, size, y_hat_of, z_source, lmbda, plans_, clamp, precision="fp32"):
        """Per image: (squared error, y bits, z bits) of the tiles ``plans_`` (a batch)."""
        model, net, images = self.latent_model, self.latent_model.net, x.size(0)
        height, width = size
        z_crops = _stack(z_source, [p.z_crop for p in plans_])
        first = plans_[0]
        rel = first.shape
        (py0, py1, pc0, pc1) = rel[3]  # the y crop inside h_s's output over the z crop
        with autocast(x, precision):
            params = run_tile(net.h_s, z_crops, (py0, pc0), (py1, pc1))
        if model.has_means:
            scales, means = (t.float() for t in params.chunk(2, 1))
        else:
            scales, means = params.float(), None
        y_crops = _stack(y_hat_of.source, [p.y_crop for p in plans_])
        y_tilde = y_hat_of(y_crops, means, plans_)
        (a0, a1, b0, b1) = rel[7]  # the tile's pixels inside the y crop's image
        with autocast(x, precision):
            x_hat = run_tile(net.g_s, y_tilde, (a0, b0), (a1, b1)).float()
        if clamp:
            x_hat = x_hat.clamp(0.0, 1.0)
        target = _stack(x, [p.pixels for p in plans_])
        se = (x_hat - target).pow(2).flatten(1).sum(1)
        core = rel[0]
        y_bits = model.y_bits(_crop(y_tilde, core), YParams(_crop(scales, core),
                                                         None if means is None else _crop(means, core)))
        z_bits = model.z_bits(_crop(z_crops, rel[6]))
        per_image = [t.view(len(plans_), images).sum(0) for t in (se, y_bits, z_bits)]
        return per_image, height * width

    def _loss(self, terms, pixels, lmbda):
        se, y_bits, z_bits = terms
        mse = se / (3 * pixels)
        bpp = (y_bits + z_bits) / pixels
        return rd_loss(lmbda, mse, bpp), bpp, mse

    def backward(self, optimiser, latent_model, x, size, y, z, lmbda, config: RefineConfig, tau):
        optimiser.zero_grad(set_to_none=True)
        opts = dict(a=config.a, three_class=config.three_class, factor=config.factor, power=config.power)
        med = latent_model.z_offset()
        z_tilde = soft_round(z - med, config.method, tau, **opts) + med  # the whole z: small
        z_leaf = z_tilde.detach().requires_grad_(True)
        noise = draw_noise(y, config.method, config.three_class)  # the whole y's, as a whole step draws it

        extra = () if noise is None or noise.dim() == y.dim() else (slice(None),)  # the candidates' dim

        def relaxed(y_crops, means, plans_):
            mu = means if means is not None else 0.0
            crop_noise = None if noise is None else torch.cat(
                [noise[(..., slice(p.y_crop[0], p.y_crop[1]), slice(p.y_crop[2], p.y_crop[3])) + extra]
                 for p in plans_])
            return soft_round(y_crops - mu, config.method, tau, noise=crop_noise, **opts) + mu

        relaxed.source = y
        for k, plans_ in enumerate(self.batches):
            terms, pixels = self._terms(x, size, relaxed, z_leaf, lmbda, plans_, False, config.precision)
            loss, _, _ = self._loss(terms, pixels, lmbda)
            loss.sum().backward()
            if self.on_tile is not None:
                self.on_tile((k + 1) / len(self.batches))
        z_tilde.backward(z_leaf.grad)  # the tiles' gradients through z~ into z

    @torch.no_grad()
    def evaluate(self, latent_model, x, size, y, z, lmbda) -> tuple:
        z_hat = latent_model.z_hard(z)

        def hard(y_crops, means, plans_):
            return torch.round(y_crops) if means is None else torch.round(y_crops - means) + means

        hard.source = y
        totals = None
        for plans_ in self.batches:
            terms, pixels = self._terms(x, size, hard, z_hat, lmbda, plans_, True)
            totals = terms if totals is None else [a + b for a, b in zip(totals, terms)]
        return self._loss(totals, pixels, lmbda)


def refines_in_tiles(config: RefineConfig, grid, device_type: str = "cpu", images: int = 1,
                     has_context: bool = False) -> bool:
    """Whether a batch of ``images`` on ``grid`` refines in tiles: never for one tile or a context
    model; else as ``config.refine_tiles`` says, or (None) when the batch's padded pixels exceed
    WHOLE_REFINE_MEGAPIXELS on this kind of device."""
    if grid.tile == 0 or len(grid) < 2 or has_context or config.refine_tiles is False:
        return False
    if config.refine_tiles:
        return True
    height, width = grid.padded
    limit = WHOLE_REFINE_MEGAPIXELS.get(device_type, WHOLE_REFINE_MEGAPIXELS["cpu"])
    return images * height * width > limit * 1e6


def tiled_steps(latent_model: LatentModel, grid, batch: int = 1) -> TiledSteps | None:
    """TiledSteps for an image of more than one tile of a model without a context model (whose
    means depend on decoded neighbours: refined on the whole image); None otherwise."""
    if grid.tile == 0 or len(grid) < 2 or latent_model.has_context:
        return None
    return TiledSteps(latent_model, grid, batch)
