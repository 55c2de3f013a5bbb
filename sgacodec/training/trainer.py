"""Training CompressAI's MeanScaleHyperprior for the embedded models.

    loss = lambda * 255^2 * MSE(x, x^) + bpp   (compressai.losses.RateDistortionLoss)
    aux  = EntropyBottleneck quantile loss      (its own Adam, lr 1e-3)

Random square crops with flips from a folder decoded once into memory (data.py); Adam with
one step decay of the learning rate late in training (late in the steps, or in the wall-clock
budget); gradient clipping at norm 1; checkpoint and resume, so a long run continues across
short sessions; periodic validation on a held-out folder; and ``update()`` before the final save.
Speed options (TrainConfig): torch.compile, channels_last, bf16 autocast, the crops' pool on the
GPU, lr scaling with the batch. Under torchrun, DDP over the processes (distributed.py). Run as
``sgacodec train`` (cli/train.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import LR_REFERENCE_BATCH, LR_SCALINGS, TRAIN_COMPILE_MODES, TRAIN_POOLS, TrainConfig
from ..metrics import MSE_FLOOR, psnr_from_mse, rd_loss
from .data import CropPool, load_images
from .distributed import SINGLE, Group


def build(config: TrainConfig):
    """A new MeanScaleHyperprior of the configured sizes."""
    from ..network.training import mean_scale_hyperprior

    return mean_scale_hyperprior(config.N, config.M)


def forward(net, x: torch.Tensor, amp: str = "off") -> dict:
    """MeanScaleHyperprior forward pass, optionally with the transforms under bf16 autocast.

    Mixed precision covers only g_a, h_a, h_s and g_s. Their outputs are cast back to float32
    before they reach the EntropyBottleneck and the GaussianConditional, so the quantisation
    noise, the likelihoods (the rate term) and the aux loss are computed in float32 exactly as
    without autocast: low precision there would distort the very small likelihoods and the
    quantile fit that ``update()`` turns into the coder's CDF tables. In training mode the
    EntropyBottleneck runs without device synchronisations (hyperprior.noisy_bottleneck).
    """
    from ..network.training import noisy_bottleneck

    if amp not in ("off", "bf16"):
        raise ValueError(f"unknown amp mode {amp!r}; use off or bf16")

    def autocast():
        return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp == "bf16")

    with autocast():
        y = net.g_a(x)
        z = net.h_a(y)
    y, z = y.float(), z.float()
    if net.training:
        z_hat, z_likelihoods = noisy_bottleneck(net.entropy_bottleneck, z)
    else:
        z_hat, z_likelihoods = net.entropy_bottleneck(z)
    with autocast():
        params = net.h_s(z_hat)
    scales_hat, means_hat = params.float().chunk(2, 1)
    y_hat, y_likelihoods = net.gaussian_conditional(y, scales_hat, means=means_hat)
    with autocast():
        x_hat = net.g_s(y_hat)
    return {"x_hat": x_hat.float(), "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}


def optimisers(net, config: TrainConfig):
    aux = {n for n, p in net.named_parameters() if n.endswith(".quantiles")}
    params = [p for n, p in net.named_parameters() if n not in aux]
    aux_params = [p for n, p in net.named_parameters() if n in aux]
    return torch.optim.Adam(params, lr=config.lr), torch.optim.Adam(aux_params, lr=config.aux_lr)


def learning_rate(step: int, config: TrainConfig, decayed: bool = False) -> float:
    """config.lr, scaled with the batch (config.lr_scaling), / 10 from decay_at of the steps on
    (or once ``decayed``: a wall-clock budget's decay point has passed)."""
    lr = config.lr * (config.batch_size / LR_REFERENCE_BATCH) ** LR_SCALINGS[config.lr_scaling]
    return lr * (0.1 if decayed or step >= config.decay_at * config.steps else 1.0)


class Objective(torch.nn.Module):
    """The training objective as one module (what DDP wraps and torch.compile compiles):
    returns (R-D loss + aux loss, R-D loss, MSE, bpp, aux loss).

    Both losses go through one backward pass: the R-D loss gives no gradient to the quantiles
    (training adds noise without the medians) and the aux loss gives gradients to the quantiles
    only (CompressAI detaches the density there), so each Adam gets the gradient it always had.
    """

    def __init__(self, net, lmbda: float, amp: str = "off"):
        from ..network.training import rate_distortion_loss

        super().__init__()
        self.net, self.amp = net, amp
        self.criterion = rate_distortion_loss(lmbda)

    def forward(self, x: torch.Tensor):
        losses = self.criterion(forward(self.net, x, self.amp), x)
        aux = self.net.aux_loss()
        return losses["loss"] + aux, losses["loss"], losses["mse_loss"], losses["bpp_loss"], aux


class TrainStep:
    """One optimisation step of ``net`` on a batch, with the speed options of ``config``:
    forward and loss (compiled when config.compile is not "off"; under DDP when ``group`` holds
    several processes), one backward, clipping of the (all-reduced) gradient, both Adam steps.
    Calling it returns the step's [total, loss, mse, bpp, aux] as one detached device tensor."""

    def __init__(self, net, config: TrainConfig, device, group: Group = SINGLE):
        choices = (("compile", config.compile, TRAIN_COMPILE_MODES), ("pool", config.pool, TRAIN_POOLS),
                   ("lr_scaling", config.lr_scaling, LR_SCALINGS))
        for name, value, allowed in choices:
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")
        self.net, self.config = net, config
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        if config.channels_last:
            net.to(memory_format=torch.channels_last)
        self.opt, self.aux_opt = optimisers(net, config)
        self.params = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
        model = group.wrap(Objective(net, config.lmbda, config.amp), device)
        if config.compile != "off":
            model = torch.compile(model, mode=None if config.compile == "default" else config.compile)
        self.model = model

    def inputs(self, batch: torch.Tensor, device) -> torch.Tensor:
        """A uint8 crop batch (CropPool) as float32 in [0, 1] on ``device``, in the step's layout."""
        x = batch.to(device, non_blocking=True).float().div_(255.0)
        return x.contiguous(memory_format=self.memory_format)

    def __call__(self, x: torch.Tensor, lr: float) -> torch.Tensor:
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        self.aux_opt.zero_grad(set_to_none=True)
        total, *parts = self.model(x)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.config.clip)
        self.opt.step()
        self.aux_opt.step()
        return torch.stack([total.detach(), *(p.detach() for p in parts)])


def fit_quantiles(net, steps: int = 3000, lr: float = 0.1) -> float:
    """Fit the EntropyBottleneck's quantiles to its learned density; returns the final aux loss.

    The aux loss depends on the quantiles and the (frozen here) density parameters only, not on
    data, so it can be minimised on its own in seconds. Run before ``update()``: the quantiles set
    the range of the CDF tables and the medians the quantisation offset of z. Short runs leave
    them far from converged at the aux optimiser's lr of 1e-3 (they start at +-10 and must reach
    the density's tails); this large-step Adam with one decay converges them.
    """
    quantiles = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(quantiles, lr=lr)
    loss = net.aux_loss()
    for i in range(steps):
        if i == (2 * steps) // 3:
            for group in opt.param_groups:
                group["lr"] = lr / 10
        opt.zero_grad(set_to_none=True)
        loss = net.aux_loss()
        loss.backward()
        opt.step()
    return float(net.aux_loss().detach())


@torch.no_grad()
def validate(net, images: list[np.ndarray], lmbda: float, device, log=None, step: int = 0) -> dict:
    """Mean bpp (likelihood estimate), PSNR and loss over whole validation images (hard rounding);
    logged as 'step S: val bpp ...' when ``log`` is given."""
    from ..codec.encoder import pad, to_tensor

    net.eval()
    bpps, mses = [], []
    for im in images:
        h, w = im.shape[:2]
        x = to_tensor(im).to(device)
        out = net(pad(x))
        x_hat = out["x_hat"][..., :h, :w].clamp(0, 1)
        bits = sum(-torch.log2(likelihood).sum() for likelihood in out["likelihoods"].values())
        bpps.append(float(bits) / (h * w))
        mses.append(float(((x_hat - x) ** 2).mean()))
    net.train()
    result = {"bpp": float(np.mean(bpps)), "psnr": float(np.mean([psnr_from_mse(m) for m in mses])),
              "loss": rd_loss(lmbda, float(np.mean(mses)), float(np.mean(bpps)))}
    if log is not None:
        log(f"step {step}: val bpp {result['bpp']:.4f} psnr {result['psnr']:.2f} loss {result['loss']:.4f}")
    return result


def save_checkpoint(path, net, trainer: TrainStep, step, config, extra=None):
    import io

    from ..files.outputs import atomic_write

    buf = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "optimizer": trainer.opt.state_dict(),
                "aux_optimizer": trainer.aux_opt.state_dict(), "step": step, "lmbda": config.lmbda,
                "config": asdict(config), **(extra or {})}, buf)
    atomic_write(path, buf.getvalue())


def train(
    config: TrainConfig,
    data_dir,
    checkpoint,
    val_dir=None,
    device: str = "cpu",
    time_limit: float | None = None,
    init_from=None,
    on_progress: Callable[[int, dict], None] | None = None,
    log: Callable[[str], None] = print,
    budget: float | None = None,
    group: Group = SINGLE,
) -> dict:
    """Train (or resume from ``checkpoint`` if it exists) until config.steps, time_limit or budget.

    ``time_limit`` (seconds of this call) stops early and leaves a resumable checkpoint;
    ``budget`` (seconds of this call) makes the call a complete run of that length: the lr decays
    at config.decay_at of it and at its end the run is finished like one that did all its steps.
    A finished run fits the quantiles, update()s and saves. Returns {"step", "done", "val"}.
    Under torchrun (``group``), every process trains its share of each batch; rank 0 alone
    validates, saves and calls ``on_progress``, with the losses averaged over the processes.
    """
    start = time.monotonic()
    device = group.device(device)
    torch.manual_seed(config.seed)
    net = build(config).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest conv algorithms once
    step = 0
    checkpoint = Path(checkpoint)
    resumed = checkpoint.is_file()
    if resumed:
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        net.load_state_dict(state["state_dict"])
        step = int(state["step"])
        log(f"resumed {checkpoint} at step {step}")
    elif init_from is not None:
        from ..models.checkpoints import read_state_dict

        weights, _ = read_state_dict(init_from)
        net.load_state_dict(weights, strict=False)
        log(f"initialised from {init_from}")
    trainer = TrainStep(net, config, device, group)
    if resumed:
        trainer.opt.load_state_dict(state["optimizer"])
        trainer.aux_opt.load_state_dict(state["aux_optimizer"])
    pool = CropPool(load_images(data_dir, config.crop), config.crop,
                    device if config.pool == "device" else "cpu", seed=config.seed + step)
    val = load_images(val_dir) if val_dir and group.is_main else []
    # fresh quantisation noise after a resume, and different noise in each process
    torch.manual_seed(config.seed + step + 1_000_003 * group.rank)
    last_save = time.monotonic()
    net.train()
    last_val, last_val_step = None, None
    first, decayed, out_of_time = step, False, False
    while step < config.steps:
        if (step - first) % config.report_every == 0:  # the processes decide together when to stop
            elapsed = time.monotonic() - start
            stop, out_of_time, past_decay = group.any(
                [time_limit is not None and elapsed > time_limit, budget is not None and elapsed > budget,
                 budget is not None and elapsed > config.decay_at * budget], device)
            decayed = decayed or past_decay
            if stop or out_of_time:
                break
        x = trainer.inputs(pool.batch(config.batch_size, group.rank, group.world), device)
        stats = trainer(x, learning_rate(step, config, decayed))
        step += 1
        # The losses are read back to the host only every report_every steps, so the GPU is not
        # stalled each step; a non-finite loss stops training before the next checkpoint is saved.
        if (step - first) % config.report_every == 0 or step == config.steps:
            total, loss, mse, bpp, aux = (group.sum(stats) / group.world).tolist()
            if not math.isfinite(total):
                raise FloatingPointError(f"loss is not finite at step {step}; lower --lr and resume "
                                         "from the last checkpoint")
            if on_progress is not None:
                on_progress(step, {"loss": loss, "bpp": bpp, "psnr": psnr_from_mse(max(mse, MSE_FLOOR)),
                                   "aux": aux})
            if group.is_main and step < config.steps and time.monotonic() - last_save > config.save_every:
                save_checkpoint(checkpoint, net, trainer, step, config, {"done": False})
                last_save = time.monotonic()
        if val and (step % config.val_every == 0 or step == config.steps):
            last_val, last_val_step = validate(net, val, config.lmbda, device, log, step), step
    if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
        raise FloatingPointError(f"weights are not finite at step {step}; lower --lr and resume "
                                 "from the last checkpoint")
    done = step >= config.steps or out_of_time
    if group.is_main:
        extra = {"done": done}
        if done:
            if val and last_val_step != step:  # a budget ended the run between validations
                last_val = validate(net, val, config.lmbda, device, log, step)
            extra["aux_loss"] = fit_quantiles(net, config.quantile_steps)
            log(f"quantiles fitted: aux loss {extra['aux_loss']:.3f}")
            net.update(force=True)
        save_checkpoint(checkpoint, net, trainer, step, config, extra)
    group.barrier()
    return {"step": step, "done": done, "val": last_val}


def export_weights(checkpoint, output, fp16: bool = True, metadata: dict | None = None) -> str:
    """Write the model weights of a training checkpoint as safetensors; returns the sha256."""
    import hashlib

    from safetensors.torch import save

    from ..files.outputs import atomic_write
    from ..network.coding_net import without_coder_tables

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    # The transforms go to fp16; the entropy models (quantiles, factorized density, scale
    # table: a few kB) stay float32, since the coder's CDF tables are rebuilt from them at load.
    def keep_fp32(key: str) -> bool:
        return key.startswith(("entropy_bottleneck.", "gaussian_conditional."))

    weights = {k: (v.half() if fp16 and v.is_floating_point() and not keep_fp32(k) else v).contiguous()
               for k, v in without_coder_tables(state["state_dict"]).items()}
    meta = {"lmbda": str(state["lmbda"]), "step": str(state["step"]),
            "done": str(bool(state.get("done", False))), "precision": "fp16" if fp16 else "fp32",
            **(metadata or {})}
    data = save(weights, metadata=meta)
    atomic_write(output, data)
    return hashlib.sha256(data).hexdigest()
