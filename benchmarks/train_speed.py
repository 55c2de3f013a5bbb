"""Training speed of the `sgacodec train` options, side by side in one run: steps/s and images/s.

Each variant trains the same network from the same weights on the same crops (one process owning
the device): WARMUP steps first (cudnn's algorithm search, torch.compile's compilation), then
STEPS timed steps (or SECONDS, whichever ends first); with --val, the validation loss after them,
so variants are compared at equal steps (a larger batch must buy its speed without losing loss).

    python benchmarks/train_speed.py DATA --val VAL --init sgacodec/models/weights/msh-q2.safetensors
    python benchmarks/train_speed.py DATA --variants bf16,bf16+pool,bf16+pool+compile --steps 300

The rehearsal on a CPU (tests/test_train_speed.py) runs two tiny variants for a few steps; there
``--compile-backend aot_eager`` stands in for Inductor, whose C++ build takes minutes.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

VARIANTS = {  # name -> TrainConfig fields over the baseline (float32, eager, crops cut on the host)
    "fp32": {},
    "bf16": {"amp": "bf16"},
    "bf16+pool": {"amp": "bf16", "pool": "device"},
    "bf16+pool+cl": {"amp": "bf16", "pool": "device", "channels_last": True},
    "bf16+pool+compile": {"amp": "bf16", "pool": "device", "compile": "default"},
    "bf16+pool+cl+compile": {"amp": "bf16", "pool": "device", "channels_last": True, "compile": "default"},
    "bf16+pool+b32+sqrt-lr": {"amp": "bf16", "pool": "device", "batch_size": 32, "lr_scaling": "sqrt"},
}


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(base, options: dict, images, val, device, warmup: int, steps: int, seconds: float, init=None) -> dict:
    """One variant: its warm-up time, steps/s and images/s, mean training loss, validation loss."""
    import torch

    from sgacodec.training.data import CropPool
    from sgacodec.training.trainer import TrainStep, build, learning_rate, validate

    config = replace(base, **options)
    torch.manual_seed(config.seed)
    net = build(config)
    if init is not None:
        from sgacodec.models.checkpoints import read_state_dict

        net.load_state_dict(read_state_dict(init)[0], strict=False)
    net = net.to(device).train()
    step = TrainStep(net, config, device)
    pool = CropPool(images, config.crop, device if config.pool == "device" else "cpu", seed=config.seed)
    lr = learning_rate(0, config)
    start = time.monotonic()
    for _ in range(warmup):
        step(step.inputs(pool.batch(config.batch_size), device), lr)
    sync(device)
    warm = time.monotonic() - start
    total, done = None, 0
    start = time.monotonic()
    while done < steps and time.monotonic() - start < seconds:
        stats = step(step.inputs(pool.batch(config.batch_size), device), lr)
        total = stats if total is None else total + stats
        done += 1
    sync(device)
    elapsed = time.monotonic() - start
    loss = float(total[1]) / done if done else math.nan
    result = {"batch": config.batch_size, "warmup_s": warm, "steps": done, "seconds": elapsed,
              "steps_per_s": done / elapsed, "images_per_s": done * config.batch_size / elapsed, "loss": loss}
    if val:
        result["val_loss"] = validate(net, val, config.lmbda, device)["loss"]
    if device.type == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return result


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="training images (a folder)")
    ap.add_argument("--val", default=None, help="validation folder: the loss after the timed steps")
    ap.add_argument("--init", default=None, help="start every variant from these weights")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--steps", type=int, default=300, help="timed steps per variant")
    ap.add_argument("--seconds", type=float, default=60.0, help="at most this long per variant")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lmbda", type=float, default=0.0067)
    ap.add_argument("-N", type=int, default=128)
    ap.add_argument("-M", type=int, default=192)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (rehearsals: aot_eager)")
    args = ap.parse_args(argv)

    import torch

    from sgacodec.codec.devices import resolve_device
    from sgacodec.config import TrainConfig
    from sgacodec.evaluation.records import device_name
    from sgacodec.training.data import load_images

    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if args.compile_backend:
        import functools

        torch.compile = functools.partial(torch.compile, backend=args.compile_backend)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    base = TrainConfig(lmbda=args.lmbda, N=args.N, M=args.M, batch_size=args.batch_size, crop=args.crop, lr=args.lr)
    images = load_images(args.data, args.crop)
    val = load_images(args.val) if args.val else []
    print(f"{device_name(device)}, torch {torch.__version__}; {len(images)} training images, "
          f"{args.crop}x{args.crop} crops, N={args.N} M={args.M}; {args.warmup} warm-up + {args.steps} timed steps",
          flush=True)
    rows = []
    for name in names:
        try:
            row = measure(base, VARIANTS[name], images, val, device, args.warmup, args.steps, args.seconds, args.init)
        except Exception as exc:  # noqa: BLE001 - one variant failing (a compiler error) must not end the table
            row = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        rows.append({"variant": name, **row})
        print(f"{name}: {row}", flush=True)
    print()
    print("| variant | batch | steps/s | images/s | warm-up s | mean train loss | val loss | peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | failed: {r['error']} |||||||")
            continue
        val_txt = f"{r['val_loss']:.4f}" if "val_loss" in r else "-"
        peak = f"{r['peak_gib']:.1f}" if "peak_gib" in r else "-"
        print(f"| {r['variant']} | {r['batch']} | {r['steps_per_s']:.2f} | {r['images_per_s']:.1f} | "
              f"{r['warmup_s']:.1f} | {r['loss']:.4f} | {val_txt} | {peak} |")
    return rows


if __name__ == "__main__":
    main()
