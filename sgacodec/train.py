"""Training CompressAI's MeanScaleHyperprior for the embedded models.

    loss = lambda * 255^2 * MSE(x, x^) + bpp   (compressai.losses.RateDistortionLoss)
    aux  = EntropyBottleneck quantile loss      (its own Adam, lr 1e-3)

Random square crops with flips from a folder decoded once into memory; Adam with one step decay
of the learning rate late in training; gradient clipping at norm 1; checkpoint and resume, so a
long run continues across short sessions; periodic validation on a held-out folder; and
``update()`` before the final save. Run as ``sgacodec train`` (cli/train.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import TrainConfig
from .metrics import MSE_FLOOR, psnr_from_mse, rd_loss

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


def image_files(folder) -> list[Path]:
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images under {folder}")
    return files


def load_pool(folder, min_side: int = 0) -> list[np.ndarray]:
    """Decode every image of a folder once (RGB uint8), skipping those smaller than min_side."""
    from .imageio import read_image

    pool = [read_image(p) for p in image_files(folder)]
    return [im for im in pool if min(im.shape[:2]) >= min_side]


def random_crops_uint8(pool: list[np.ndarray], batch: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """A uint8 batch [B, 3, crop, crop] of random crops with random horizontal/vertical flips."""
    out = np.empty((batch, crop, crop, 3), dtype=np.uint8)
    for i in range(batch):
        im = pool[rng.integers(len(pool))]
        h, w = im.shape[:2]
        top, left = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        patch = im[top : top + crop, left : left + crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < 0.5:
            patch = patch[::-1]
        out[i] = patch
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def random_crops(pool: list[np.ndarray], batch: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """``random_crops_uint8`` scaled to float32 in [0, 1]."""
    return random_crops_uint8(pool, batch, crop, rng).float().div_(255.0)


def build(config: TrainConfig):
    from compressai.models import MeanScaleHyperprior

    return MeanScaleHyperprior(config.N, config.M)


def forward(net, x: torch.Tensor, amp: str = "off") -> dict:
    """MeanScaleHyperprior forward pass, optionally with the transforms under bf16 autocast.

    Mixed precision covers only g_a, h_a, h_s and g_s. Their outputs are cast back to float32
    before they reach the EntropyBottleneck and the GaussianConditional, so the quantisation
    noise, the likelihoods (the rate term) and the aux loss are computed in float32 exactly as
    without autocast: low precision there would distort the very small likelihoods and the
    quantile fit that ``update()`` turns into the coder's CDF tables.
    """
    if amp == "off":
        return net(x)
    if amp != "bf16":
        raise ValueError(f"unknown amp mode {amp!r}; use off or bf16")
    kind = x.device.type

    def autocast():
        return torch.autocast(kind, dtype=torch.bfloat16)

    with autocast():
        y = net.g_a(x)
        z = net.h_a(y)
    y, z = y.float(), z.float()
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


def learning_rate(step: int, config: TrainConfig) -> float:
    return config.lr * (0.1 if step >= config.decay_at * config.steps else 1.0)


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
def validate(net, images: list[np.ndarray], lmbda: float, device) -> dict:
    """Mean bpp (likelihood estimate), PSNR and loss over whole validation images (hard rounding)."""
    from .codec import pad, to_tensor

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
    return {"bpp": float(np.mean(bpps)), "psnr": float(np.mean([psnr_from_mse(m) for m in mses])),
            "loss": rd_loss(lmbda, float(np.mean(mses)), float(np.mean(bpps)))}


def save_checkpoint(path, net, opt, aux_opt, step, config, extra=None):
    import io

    from .outputs import atomic_write

    buf = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "optimizer": opt.state_dict(),
                "aux_optimizer": aux_opt.state_dict(), "step": step, "lmbda": config.lmbda,
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
) -> dict:
    """Train (or resume from ``checkpoint`` if it exists) until config.steps or time_limit.

    Returns {"step", "done", "val"}. When all steps are done the model is update()d and saved.
    """
    from compressai.losses import RateDistortionLoss

    start = time.monotonic()
    device = torch.device(device)
    torch.manual_seed(config.seed)
    net = build(config).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest conv algorithms once
    opt, aux_opt = optimisers(net, config)
    step = 0
    checkpoint = Path(checkpoint)
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        net.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        aux_opt.load_state_dict(state["aux_optimizer"])
        step = int(state["step"])
        log(f"resumed {checkpoint} at step {step}")
    elif init_from is not None:
        from .models import read_state_dict

        state, _ = read_state_dict(init_from)
        net.load_state_dict(state, strict=False)
        log(f"initialised from {init_from}")
    pool = load_pool(data_dir, config.crop)
    val = load_pool(val_dir) if val_dir else []
    rng = np.random.default_rng(config.seed + step)
    torch.manual_seed(config.seed + step)  # fresh quantisation noise after a resume
    criterion = RateDistortionLoss(lmbda=config.lmbda)
    last_save = time.monotonic()
    net.train()
    last_val = None
    while step < config.steps:
        if time_limit is not None and time.monotonic() - start > time_limit:
            break
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, config)
        # crops travel as uint8 (a quarter of the bytes) and become float on the device
        x = random_crops_uint8(pool, config.batch_size, config.crop, rng).to(device).float().div_(255.0)
        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        out = forward(net, x, config.amp)
        losses = criterion(out, x)
        # The loss is read back to the host only every report_every steps, so the GPU is not
        # stalled each step; a non-finite loss stops training before the next checkpoint is saved.
        report = (step + 1) % config.report_every == 0 or step + 1 == config.steps
        if report and not math.isfinite(float(losses["loss"].detach())):
            raise FloatingPointError(f"loss is not finite at step {step}; lower --lr and resume "
                                     "from the last checkpoint")
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip)
        opt.step()
        aux_loss = net.aux_loss()
        aux_loss.backward()
        aux_opt.step()
        step += 1
        if on_progress is not None and report:
            mse = float(losses["mse_loss"].detach())
            on_progress(step, {"loss": float(losses["loss"].detach()),
                               "bpp": float(losses["bpp_loss"].detach()),
                               "psnr": psnr_from_mse(max(mse, MSE_FLOOR)), "aux": float(aux_loss.detach())})
        if val and (step % config.val_every == 0 or step == config.steps):
            last_val = validate(net, val, config.lmbda, device)
            log(f"step {step}: val bpp {last_val['bpp']:.4f} psnr {last_val['psnr']:.2f} "
                f"loss {last_val['loss']:.4f}")
        if report and step < config.steps and time.monotonic() - last_save > config.save_every:
            save_checkpoint(checkpoint, net, opt, aux_opt, step, config, {"done": False})
            last_save = time.monotonic()
    if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
        raise FloatingPointError(f"weights are not finite at step {step}; lower --lr and resume "
                                 "from the last checkpoint")
    done = step >= config.steps
    extra = {"done": done}
    if done:
        extra["aux_loss"] = fit_quantiles(net, config.quantile_steps)
        log(f"quantiles fitted: aux loss {extra['aux_loss']:.3f}")
        net.update(force=True)
    save_checkpoint(checkpoint, net, opt, aux_opt, step, config, extra)
    return {"step": step, "done": done, "val": last_val}


def export(checkpoint, output, fp16: bool = True, metadata: dict | None = None) -> str:
    """Write the model weights of a training checkpoint as safetensors; returns the sha256."""
    import hashlib

    from safetensors.torch import save

    from .hyperprior import without_coder_tables
    from .outputs import atomic_write

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
