"""Training CompressAI's MeanScaleHyperprior for the embedded models.

    loss = lambda * 255^2 * MSE(x, x^) + bpp   (compressai.losses.RateDistortionLoss)
    aux  = EntropyBottleneck quantile loss      (its own Adam, lr 1e-3)

Random square crops with flips from a folder decoded once into memory; Adam with one step decay
of the learning rate late in training; gradient clipping at norm 1; checkpoint and resume, so a
long run continues across short sessions; periodic validation on a held-out folder; and
``update()`` before the final save. Run as ``sgacodec train`` or ``python -m sgacodec.train``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


@dataclass
class TrainConfig:
    lmbda: float = 0.0067
    N: int = 128
    M: int = 192
    steps: int = 100_000
    batch_size: int = 16
    crop: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    decay_at: float = 0.85  # fraction of steps after which lr drops 10x
    clip: float = 1.0
    seed: int = 0
    val_every: int = 1000


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


def random_crops(pool: list[np.ndarray], batch: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """A batch [B, 3, crop, crop] in [0, 1] of random crops with random horizontal/vertical flips."""
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
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def build(config: TrainConfig):
    from compressai.models import MeanScaleHyperprior

    return MeanScaleHyperprior(config.N, config.M)


def optimisers(net, config: TrainConfig):
    aux = {n for n, p in net.named_parameters() if n.endswith(".quantiles")}
    params = [p for n, p in net.named_parameters() if n not in aux]
    aux_params = [p for n, p in net.named_parameters() if n in aux]
    return torch.optim.Adam(params, lr=config.lr), torch.optim.Adam(aux_params, lr=config.aux_lr)


def learning_rate(step: int, config: TrainConfig) -> float:
    return config.lr * (0.1 if step >= config.decay_at * config.steps else 1.0)


@torch.no_grad()
def validate(net, images: list[np.ndarray], lmbda: float, device) -> dict:
    """Mean bpp (likelihood estimate), PSNR and loss over whole validation images (hard rounding)."""
    from .codec import pad, to_tensor

    net.eval()
    bpps, psnrs = [], []
    for im in images:
        h, w = im.shape[:2]
        x = to_tensor(im).to(device)
        out = net(pad(x))
        x_hat = out["x_hat"][..., :h, :w].clamp(0, 1)
        bits = sum(-torch.log2(l).sum() for l in out["likelihoods"].values())
        bpps.append(float(bits) / (h * w))
        psnrs.append(float(-10 * torch.log10(((x_hat - x) ** 2).mean())))
    net.train()
    mse = float(np.mean([10 ** (-p / 10) for p in psnrs]))
    return {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs)),
            "loss": lmbda * 255**2 * mse + float(np.mean(bpps))}


def save_checkpoint(path, net, opt, aux_opt, step, config, extra=None):
    from .imageio import atomic_write
    import io

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

    device = torch.device(device)
    torch.manual_seed(config.seed)
    net = build(config).to(device)
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
    criterion = RateDistortionLoss(lmbda=config.lmbda)
    start = time.monotonic()
    net.train()
    last_val = None
    while step < config.steps:
        if time_limit is not None and time.monotonic() - start > time_limit:
            break
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, config)
        x = random_crops(pool, config.batch_size, config.crop, rng).to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        out = net(x)
        losses = criterion(out, x)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip)
        opt.step()
        aux_loss = net.aux_loss()
        aux_loss.backward()
        aux_opt.step()
        step += 1
        if on_progress is not None:
            mse = float(losses["mse_loss"])
            on_progress(step, {"loss": float(losses["loss"]), "bpp": float(losses["bpp_loss"]),
                               "psnr": -10 * math.log10(max(mse, 1e-12)), "aux": float(aux_loss)})
        if val and (step % config.val_every == 0 or step == config.steps):
            last_val = validate(net, val, config.lmbda, device)
            log(f"step {step}: val bpp {last_val['bpp']:.4f} psnr {last_val['psnr']:.2f} "
                f"loss {last_val['loss']:.4f}")
    done = step >= config.steps
    if done:
        net.update(force=True)
    save_checkpoint(checkpoint, net, opt, aux_opt, step, config, {"done": done})
    return {"step": step, "done": done, "val": last_val}


def export(checkpoint, output, fp16: bool = True, metadata: dict | None = None) -> str:
    """Write the model weights of a training checkpoint as safetensors; returns the sha256."""
    import hashlib
    from safetensors.torch import save

    from .imageio import atomic_write

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    # the Gaussian scale table stays float32: the entropy coder's CDF tables are built from it
    weights = {k: (v.half() if fp16 and v.is_floating_point() and "scale_table" not in k else v).contiguous()
               for k, v in state["state_dict"].items()}
    meta = {"lmbda": str(state["lmbda"]), "step": str(state["step"]), **(metadata or {})}
    data = save(weights, metadata=meta)
    atomic_write(output, data)
    return hashlib.sha256(data).hexdigest()


def main(argv=None):
    from .cli import train_command

    train_command(args=argv)


if __name__ == "__main__":
    main()
