"""Per-image latent refinement: minimise the R-D loss over (y, z) with the network frozen.

    L = lambda * 255^2 * MSE(x, g_s(y~)) + bpp(y~ | z~) + bpp(z~)
    z~ = R(z - med) + med,   (scales, mu) = h_s(z~),   y~ = R(y - mu) + mu

R is a relaxed rounding from ``rounding``; Adam over [y, z]; tau(t) = min(exp(-c t), tau_max).
The true loss (hard rounding, what the bitstream costs) is evaluated every ``eval_every`` steps on
the device and the best iterate is kept there, so the result is never worse than the encoder's
latents and the loop never waits for the host. Images in a batch share one optimiser but each
image's loss is summed, so the gradients (and with Adam, the updates) of each image are its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from .hyperprior import LatentModel
from .rounding import METHODS, THREE_CLASS_METHODS, soft_round, temperature


@dataclass(frozen=True)
class RefineConfig:
    """Refinement settings; defaults are the paper's (SSL, a = 2.3, Adam lr 0.005, 2000 steps)."""

    method: str = "ssl"
    iterations: int = 2000
    lr: float = 0.005
    a: float | None = None  # SSL sharpness; None: 2.3 two-class, 1.4 three-class
    three_class: bool = False
    factor: float = 0.98
    power: float = 1.4
    tau_max: float = 1.0
    temp_rate: float = 1e-3
    lmbda: float | None = None  # None: the model's training lambda
    seed: int = 0
    time_budget: float | None = None  # seconds; stop early when spent
    eval_every: int = 1  # evaluate the true loss (and keep the best) every k steps

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.three_class and self.method not in THREE_CLASS_METHODS:
            raise ValueError(f"--three-class works with {', '.join(THREE_CLASS_METHODS)}")
        if self.iterations < 0 or self.lr <= 0 or self.tau_max <= 0 or self.eval_every < 1:
            raise ValueError("iterations >= 0, lr > 0, tau_max > 0 and eval_every >= 1 required")

    def with_(self, **changes) -> "RefineConfig":
        return replace(self, **changes)


@dataclass
class RDTerms:
    """Per-image loss terms, each a tensor of shape [B]."""

    loss: torch.Tensor
    bpp: torch.Tensor
    mse: torch.Tensor


@dataclass
class RefineResult:
    y: torch.Tensor  # best latents found (continuous; hard-rounded when coded)
    z: torch.Tensor
    base: RDTerms  # true loss of the encoder's own latents
    best: RDTerms  # true loss of the returned latents
    iterations: int  # steps actually run
    seconds: float
    history: list[dict] = field(default_factory=list)  # per evaluation: step, loss, bpp, psnr (per image)


def rd_terms(lm: LatentModel, x: torch.Tensor, size, y_hat, params, z_hat, lmbda, clamp=False):
    """R-D loss of (y_hat, z_hat) against x over the unpadded area; bpp over original pixels."""
    height, width = size
    x_hat = lm.synthesis(y_hat)[..., :height, :width]
    if clamp:
        x_hat = x_hat.clamp(0.0, 1.0)
    mse = (x_hat - x[..., :height, :width]).pow(2).mean(dim=(1, 2, 3))
    bpp = (lm.y_bits(y_hat, params) + lm.z_bits(z_hat)) / (height * width)
    return RDTerms(lmbda * 255.0**2 * mse + bpp, bpp, mse)


@torch.no_grad()
def true_rd(lm: LatentModel, x, size, y, z, lmbda) -> RDTerms:
    """The hard-rounded loss: what the bitstream costs and reconstructs."""
    z_hat = lm.z_hard(z)
    y_hat, params = lm.y_hard(y, z_hat)
    return rd_terms(lm, x, size, y_hat, params, z_hat, lmbda, clamp=True)


def relaxed_rd(lm: LatentModel, x, size, y, z, lmbda, config: RefineConfig, tau) -> RDTerms:
    """The training-time loss with soft-rounded latents (or STE / uniform noise)."""
    opts = dict(a=config.a, three_class=config.three_class, factor=config.factor, power=config.power)
    med = lm.z_offset()
    z_tilde = soft_round(z - med, config.method, tau, **opts) + med
    context = None
    if lm.has_context:
        with torch.no_grad():
            context, _ = lm.y_hard(y, lm.z_hard(z))
    params = lm.y_params(z_tilde, context)
    mu = params.means if params.means is not None else 0.0
    y_tilde = soft_round(y - mu, config.method, tau, **opts) + mu
    return rd_terms(lm, x, size, y_tilde, params, z_tilde, lmbda)


def _psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def refine(
    lm: LatentModel,
    x: torch.Tensor,
    size: tuple[int, int],
    lmbda: float,
    config: RefineConfig,
    y: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    on_step: Callable[[int], None] | None = None,
    keep_history: bool = False,
) -> RefineResult:
    """Refine the latents of a batch x [B, 3, Hp, Wp] (padded; original size ``size``).

    Starts from the encoder's latents (or the given y, z) and returns the best iterate by true loss.
    """
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    for p in lm.net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        if y is None or z is None:
            y, z = lm.analysis(x)
        y, z = y.detach().clone(), z.detach().clone()
    base = true_rd(lm, x, size, y, z, lmbda)
    best = RDTerms(base.loss.clone(), base.bpp.clone(), base.mse.clone())
    best_y, best_z = y.clone(), z.clone()
    history = []
    if keep_history:
        history.append((0, base.loss, base.bpp, base.mse))
    steps = 0
    if config.method != "none" and config.iterations > 0:
        y.requires_grad_(True)
        z.requires_grad_(True)
        optimiser = torch.optim.Adam([y, z], lr=config.lr)
        deadline = None if config.time_budget is None else start + config.time_budget
        for step in range(config.iterations):
            tau = temperature(step, config.tau_max, config.temp_rate)
            optimiser.zero_grad(set_to_none=True)
            relaxed_rd(lm, x, size, y, z, lmbda, config, tau).loss.sum().backward()
            optimiser.step()
            steps = step + 1
            if steps % config.eval_every == 0 or steps == config.iterations:
                current = true_rd(lm, x, size, y.detach(), z.detach(), lmbda)
                better = current.loss < best.loss
                keep = better.view(-1, 1, 1, 1)
                best_y = torch.where(keep, y.detach(), best_y)
                best_z = torch.where(keep, z.detach(), best_z)
                for name in ("loss", "bpp", "mse"):
                    setattr(best, name, torch.where(better, getattr(current, name), getattr(best, name)))
                if keep_history:
                    history.append((steps, current.loss, current.bpp, current.mse))
            if on_step is not None:
                on_step(steps)
            if deadline is not None and time.perf_counter() > deadline:
                break
    records = [
        {"step": s, "loss": loss.tolist(), "bpp": bpp.tolist(), "psnr": _psnr_from_mse(mse).tolist()}
        for s, loss, bpp, mse in history
    ]
    return RefineResult(best_y.detach(), best_z.detach(), base, best, steps,
                        time.perf_counter() - start, records)
