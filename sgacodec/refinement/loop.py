"""Per-image latent refinement: minimise the R-D loss over (y, z) with the network frozen
(docs/method.md, "What is optimised", "Schedule", "The true loss and the best iterate").

    L = lambda * 255^2 * MSE(x, g_s(y~)) + bpp(y~ | z~) + bpp(z~)
    z~ = R(z - med) + med,   (scales, mu) = h_s(z~),   y~ = R(y - mu) + mu

R is a relaxed rounding (rounding.py); Adam over [y, z] under a schedule of tau and the step
size (schedules.py). The true loss (hard rounding, what the bitstream costs) is evaluated every
``eval_every`` steps on the device and the best iterate is kept there, so the result is never
worse than the encoder's latents and the loop never waits for the host. Images in a batch share
one optimiser but each image's loss is summed, so the gradients (and with Adam, the updates) of
each image are its own. Speed options (compile, precision, channels_last): speed.py; they change
the optimisation path, never what a file decodes to.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..config import AUTO_BATCH_MEGAPIXELS, RefineConfig, eval_every_for
from ..metrics import psnr_from_mse, rd_loss
from ..network.grid import Grid
from ..network.latent_model import LatentModel
from .rounding import soft_round
from .schedules import BUDGET_PROBE_STEPS, effective_schedule, iterations_for_budget, schedule_at, temperature
from .speed import CompiledSteps, autocast, compile_mode, precision_scope
from .tiled import refines_in_tiles, tiled_steps


def tile_batch(config: RefineConfig, device: torch.device) -> int:
    """Tiles refined together as one batch: one on a CPU; on a GPU, as many as fit in
    AUTO_BATCH_MEGAPIXELS (with their halos)."""
    if device.type != "cuda" or not config.tile_size:
        return 1
    return max(1, int(AUTO_BATCH_MEGAPIXELS * 1e6 // (config.tile_size + 64) ** 2))


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
    adam: dict | None = None  # the optimiser's state after the last step, to continue from


def rd_terms(latent_model: LatentModel, x: torch.Tensor, size, y_hat, params, z_hat, lmbda, clamp=False,
             precision: str = "fp32"):
    """R-D loss of (y_hat, z_hat) against x over the unpadded area; bpp over original pixels."""
    height, width = size
    with autocast(x, precision):
        x_hat = latent_model.synthesis(y_hat)
    x_hat = x_hat.float()[..., :height, :width]
    if clamp:
        x_hat = x_hat.clamp(0.0, 1.0)
    mse = (x_hat - x[..., :height, :width]).pow(2).mean(dim=(1, 2, 3))
    bpp = (latent_model.y_bits(y_hat, params) + latent_model.z_bits(z_hat)) / (height * width)
    return RDTerms(rd_loss(lmbda, mse, bpp), bpp, mse)


@torch.no_grad()
def true_rd(latent_model: LatentModel, x, size, y, z, lmbda) -> RDTerms:
    """The hard-rounded loss: what the bitstream costs and reconstructs."""
    z_hat = latent_model.z_hard(z)
    y_hat, params = latent_model.y_hard(y, z_hat)
    return rd_terms(latent_model, x, size, y_hat, params, z_hat, lmbda, clamp=True)


def relaxed_rd(latent_model: LatentModel, x, size, y, z, lmbda, config: RefineConfig, tau) -> RDTerms:
    """The training-time loss with soft-rounded latents (or STE / uniform noise)."""
    opts = dict(a=config.a, three_class=config.three_class, factor=config.factor, power=config.power)
    med = latent_model.z_offset()
    z_tilde = soft_round(z - med, config.method, tau, **opts) + med
    context = None
    if latent_model.has_context:
        with torch.no_grad():
            context, _ = latent_model.y_hard(y, latent_model.z_hard(z))
    with autocast(x, config.precision):
        params = latent_model.y_params(z_tilde, context)
    if config.precision == "bf16":  # the entropy models see float32 parameters
        params = type(params)(params.scales.float(),
                              None if params.means is None else params.means.float())
    mu = params.means if params.means is not None else 0.0
    y_tilde = soft_round(y - mu, config.method, tau, **opts) + mu
    return rd_terms(latent_model, x, size, y_tilde, params, z_tilde, lmbda, precision=config.precision)


def true_terms(latent_model: LatentModel, x, size, y, z, lmbda, config: RefineConfig = RefineConfig()) -> RDTerms:
    """``true_rd``, computed in tiles of ``config.tile_size`` pixels when the refinement would run
    in tiles (refines_in_tiles: bounded memory; the same terms up to float rounding)."""
    grid = Grid(*size, config.tile_size)
    steps = tiled_steps(latent_model, grid) if refines_in_tiles(config, grid, x.device.type, x.size(0),
                                                                 latent_model.has_context) else None
    if steps is None:
        return true_rd(latent_model, x, size, y, z, lmbda)
    return RDTerms(*steps.evaluate(latent_model, x, size, y, z, lmbda))


def _relaxed_sum(latent_model, x, size, y, z, lmbda, config, tau):
    return relaxed_rd(latent_model, x, size, y, z, lmbda, config, tau).loss.sum()


def _true_tuple(latent_model, x, size, y, z, lmbda):
    terms = true_rd(latent_model, x, size, y, z, lmbda)
    return terms.loss, terms.bpp, terms.mse


def refine_latents(
    latent_model: LatentModel,
    x: torch.Tensor,
    size: tuple[int, int],
    lmbda: float,
    config: RefineConfig,
    y: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    on_step: Callable[[int], None] | None = None,
    keep_history: bool = False,
    start_step: int = 0,
    adam: dict | None = None,
    select: Callable[[RDTerms], torch.Tensor] | None = None,
    on_tile: Callable[[float], None] | None = None,
) -> RefineResult:
    """Refine the latents of a batch x [B, 3, Hp, Wp] (padded; original size ``size``).

    Starts from the encoder's latents (or the given y, z) and returns the best iterate by true loss.
    ``start_step`` and ``adam``: where the temperature schedule starts and Adam's state (a result's
    ``adam``), so that a refinement continuing another's latents continues it, as encoding to a
    target does (the paper's schedule only: the budget schedule plans one whole run).
    ``select``: the score [B] of an iterate's true terms that the returned one minimises instead of
    the true loss (encoding to a target keeps the iterate whose file it predicts nearest its goal).
    Nothing in the loop waits for the device: the best iterate is kept there, and the host only
    reads it back when the loop is over. An image of several tiles (``config.tile_size``) is
    refined in tiles (tiled.py), ``on_tile(steps + share of this step done)`` hearing each batch.
    """
    if start_step and effective_schedule(config) == "budget":
        raise ValueError("a refinement continued from start_step > 0 needs the paper's schedule")
    channels_last = x.device.type == "cuda" if config.channels_last is None else config.channels_last
    with frozen(latent_model.net, channels_last):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return _refine(latent_model, x, size, lmbda, config, y, z, on_step, keep_history, start_step, adam, select,
                       on_tile)


@contextlib.contextmanager
def frozen(net: torch.nn.Module, channels_last: bool = False):
    """``net`` with its parameters out of autograd (and in channels_last when asked) inside the
    block; its requires_grad flags and memory format are restored afterwards, so refinement never
    changes the caller's network."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    convert = channels_last and any(
        p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters())
    for p, _ in flags:
        p.requires_grad_(False)
    if convert:
        net.to(memory_format=torch.channels_last)
    try:
        yield net
    finally:
        if convert:
            net.to(memory_format=torch.contiguous_format)
        for p, flag in flags:
            p.requires_grad_(flag)


def _refine(latent_model, x, size, lmbda, config, y, z, on_step, keep_history, start_step=0, adam=None,
            select=None, on_tile=None) -> RefineResult:
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    device = x.device
    eval_every = config.eval_every or eval_every_for(device.type)
    with torch.no_grad(), precision_scope(device, config.precision):
        if y is None or z is None:
            y, z = latent_model.analysis(x)
        y, z = y.detach().clone(), z.detach().clone()  # latents stay contiguous (fused Adam)
        grid = Grid(*size, config.tile_size)
        step_fns = (tiled_steps(latent_model, grid, tile_batch(config, device))
                    if refines_in_tiles(config, grid, device.type, x.size(0), latent_model.has_context) else None)
        if step_fns is None:  # one tile: the whole image at once, compiled where asked
            step_fns = CompiledSteps(compile_mode(config, device) if config.method != "none" and config.iterations > 0
                                     else None, _relaxed_sum, _true_tuple)
        base = RDTerms(*step_fns.evaluate(latent_model, x, size, y, z, lmbda))
    best = RDTerms(base.loss.clone(), base.bpp.clone(), base.mse.clone())
    best_y, best_z = y.clone(), z.clone()
    history = []
    if keep_history:
        history.append((0, base.loss, base.bpp, base.mse))
    steps = 0
    if config.method != "none" and config.iterations > 0:
        y.requires_grad_(True)
        z.requires_grad_(True)
        optimiser = torch.optim.Adam([y, z], lr=config.lr, fused=device.type == "cuda" or None)
        if adam is not None:
            optimiser.load_state_dict(adam)
        deadline = None if config.time_budget is None else start + config.time_budget
        # compiled: tau lives in one device scalar, so the graph neither recompiles per value nor
        # needs the host; eager: the Python float, exactly as before
        tau_t = torch.zeros((), device=device) if step_fns.mode is not None else None
        budget = effective_schedule(config) == "budget"
        # The run's planned length T. Budget schedule with a time budget: T = config.iterations
        # until BUDGET_PROBE_STEPS steps (rounded up to whole evaluation periods) have been timed,
        # starting after the first evaluation so that one-off costs (first call, compilation)
        # stay out; then T = iterations_for_budget(...) and the schedule anneals within it.
        total = config.iterations
        probe_from = probe_to = None
        if budget and deadline is not None:
            probe_from = eval_every
            probe_to = probe_from + eval_every * math.ceil(BUDGET_PROBE_STEPS / eval_every)
        probe_start = 0.0
        with precision_scope(device, config.precision):
            for step in range(config.iterations):
                if step >= total:
                    break
                if budget:
                    tau, lr = schedule_at(step, total, config)
                    for group in optimiser.param_groups:
                        group["lr"] = lr
                else:  # the paper's schedule, exactly as it always was (continued from start_step)
                    tau = temperature(start_step + step, config.tau_max, config.temp_rate)
                if tau_t is not None:
                    tau_t.fill_(tau)
                    tau = tau_t
                if on_tile is not None:
                    step_fns.on_tile = lambda share, step=step: on_tile(step + share)
                step_fns.backward(optimiser, latent_model, x, size, y, z, lmbda, config, tau)
                optimiser.step()
                steps = step + 1
                if steps % eval_every == 0 or steps == total:
                    with torch.no_grad():
                        current = RDTerms(*step_fns.evaluate(latent_model, x, size, y.detach(), z.detach(), lmbda))
                        better = (current.loss < best.loss if select is None
                                  else select(current) < select(best))
                        keep = better.view(-1, 1, 1, 1)
                        best_y = torch.where(keep, y.detach(), best_y)
                        best_z = torch.where(keep, z.detach(), best_z)
                        best = RDTerms(*(torch.where(better, c, b) for c, b in
                                         ((current.loss, best.loss), (current.bpp, best.bpp),
                                          (current.mse, best.mse))))
                    if keep_history:
                        history.append((steps, current.loss.clone(), current.bpp.clone(),
                                        current.mse.clone()))
                if on_step is not None:
                    on_step(steps)
                if steps == probe_from or steps == probe_to:
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)  # time the device's work, not the queue's
                    now = time.perf_counter()
                    if steps == probe_from:
                        probe_start = now
                    else:
                        total = iterations_for_budget(steps, (now - probe_start) / (probe_to - probe_from),
                                                      deadline - now, config.iterations)
                if deadline is not None and time.perf_counter() > deadline:
                    break
    records = [
        {"step": s, "loss": loss.tolist(), "bpp": bpp.tolist(), "psnr": psnr_from_mse(mse).tolist()}
        for s, loss, bpp, mse in history
    ]
    state = optimiser.state_dict() if steps else adam
    return RefineResult(best_y.detach().contiguous(), best_z.detach().contiguous(), base, best, steps,
                        time.perf_counter() - start, records, state)
