"""Refinement speed: the straightforward loop ("naive") against sgacodec's refinement ("fast").

Both run in one process, on the same images, with the same seed and settings, interleaved when
--repeats > 1 (so a shared, noisy machine slows both alike). Printed, per mode:

  - ms per iteration per image, and images per second at --target-iterations (2000)
  - the ratio fast / naive of that throughput
  - the final true (hard-rounded) R-D loss of each, image by image and on average: the two must
    agree within the noise of the stochastic rounding (different random draws)
  - peak GPU memory per megapixel refined at once (CPU: the process's peak RSS, labelled)
  - model FLOPs per iteration (torch.utils.flop_counter: relaxed forward + backward, plus the true
    loss forward every --eval-every steps) and the achieved fraction of the GPU's dense peak for
    the precision used (CPU: n/a; the achieved GFLOP/s is printed instead)

The naive mode is the paper's reference loop as written: one image at a time, eager, fp32 with
PyTorch's default flags (cuDNN convolutions may use TF32 on Ampere and newer, as PyTorch allows by
default; --naive-precision fp32 turns that off), the true loss evaluated after every step and read
back to the host with .item(), and the best iterate chosen on the host.

Examples (see docs/performance.md for the figures):

    # GPU, the issue's target: 24 Kodak images, 2000 iterations of SSL
    python benchmarks/refine_speed.py --images /work/shared/datasets/kodak --iterations 2000 \\
        --naive-images 4 --json bench.json
    # CPU, short: 2 images cropped to 256x256, 30 iterations, 3 interleaved repeats, 1 thread
    OMP_NUM_THREADS=1 python benchmarks/refine_speed.py --images /work/shared/datasets/kodak \\
        --n-images 2 --crop 256 --iterations 30 --repeats 3 --threads 1 --random-model
    # large image: one 3840x2160 refine, peak memory
    python benchmarks/refine_speed.py --images /work/shared/datasets/kodak --large 3840x2160 \\
        --iterations 20 --modes fast
    # CPU per-iteration options side by side (--cpu): eager fp32 one thread against torch.compile,
    # channels_last, 2 threads, eval_every 5 and 10, bf16; a 192x192 crop and the full first image
    OMP_NUM_THREADS=2 python benchmarks/refine_speed.py --cpu --iterations 10 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from sgacodec.codec.batching import batches_by_size
from sgacodec.codec.devices import device_model, resolve_device
from sgacodec.codec.pixels import pad, to_tensor
from sgacodec.config import RefineConfig
from sgacodec.evaluation.records import Provenance
from sgacodec.files.images import center_crop, read_image
from sgacodec.network.latent_model import LatentModel
from sgacodec.refinement.loop import refine_latents as refine
from sgacodec.refinement.loop import relaxed_rd, true_rd
from sgacodec.refinement.schedules import temperature
from sgacodec.refinement.speed import compile_mode, precision_scope

# Dense (no sparsity) peak TFLOP/s by GPU and precision, from the vendors' data sheets.
# fp32 = CUDA cores; tf32 / bf16 = tensor cores.
GPU_PEAKS = {
    "H100 SXM": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0},
    "H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
}


def gpu_peak(device: torch.device, precision: str, override: float | None):
    if override:
        return override * 1e12, "given with --peak-tflops"
    if device.type != "cuda":
        return None, "n/a on CPU"
    name = torch.cuda.get_device_name(device)
    for key in sorted(GPU_PEAKS, key=len, reverse=True):
        words = key.split()
        if all(w.lower() in name.lower() for w in words):
            return GPU_PEAKS[key][precision] * 1e12, f"{key} dense {precision} {GPU_PEAKS[key][precision]} TFLOP/s"
    if "H100" in name:  # unknown variant: the SXM figure, an upper bound
        return GPU_PEAKS["H100 SXM"][precision] * 1e12, f"H100 (assumed SXM) dense {precision}"
    return None, f"unknown peak for {name}; pass --peak-tflops"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the straightforward loop ----------------------------------------------------------------

def naive_refine(lm: LatentModel, x, size, lmbda, config: RefineConfig):
    """One image, eager: step, then the true loss read back with .item(); best kept by the host."""
    torch.manual_seed(config.seed)
    for p in lm.net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        y, z = lm.analysis(x)
    y, z = y.detach().clone(), z.detach().clone()
    best_loss = true_rd(lm, x, size, y, z, lmbda).loss.item()
    best_y, best_z = y.clone(), z.clone()
    y.requires_grad_(True)
    z.requires_grad_(True)
    optimiser = torch.optim.Adam([y, z], lr=config.lr)
    for step in range(config.iterations):
        tau = temperature(step, config.tau_max, config.temp_rate)
        optimiser.zero_grad()
        loss = relaxed_rd(lm, x, size, y, z, lmbda, config, tau).loss.sum()
        loss.backward()
        optimiser.step()
        current = true_rd(lm, x, size, y.detach(), z.detach(), lmbda).loss.item()  # host sync
        if current < best_loss:
            best_loss = current
            best_y, best_z = y.detach().clone(), z.detach().clone()
    return best_loss, best_y, best_z


# --- measurement helpers ---------------------------------------------------------------------

def flops_per_iteration(lm: LatentModel, x, size, lmbda, config: RefineConfig) -> dict:
    """Model FLOPs for one image: relaxed forward + backward, and one true-loss forward."""
    from torch.utils.flop_counter import FlopCounterMode

    for p in lm.net.parameters():  # refinement computes no weight gradients
        p.requires_grad_(False)
    with torch.no_grad():
        y, z = (t.detach().clone() for t in lm.analysis(x[:1]))
    y.requires_grad_(True)
    z.requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        relaxed_rd(lm, x[:1], size, y, z, lmbda, config, 0.5).loss.sum().backward()
    relaxed = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        true_rd(lm, x[:1], size, y.detach(), z.detach(), lmbda)
    true = counter.get_total_flops()
    return {"relaxed_fwd_bwd": relaxed, "true_fwd": true}


def reset_memory(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device) -> float:
    """Bytes: peak CUDA allocation since the last reset; on CPU the process's peak RSS."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024.0


def load(args):
    from sgacodec.models.loading import load_model

    if args.random_model:
        from compressai.models import MeanScaleHyperprior

        torch.manual_seed(0)
        net = MeanScaleHyperprior(128, 192).float().eval()
        net.update(force=True)
        return net, args.lmbda or 0.0067, "MeanScaleHyperprior(128, 192), random initialisation"
    model = load_model(args.model, args.quality, "mse", args.checkpoint, None)
    return model.net, args.lmbda or model.lmbda, model.identity.describe()


def read_images(args):
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg"))
    images = [read_image(p) for p in paths[: args.n_images]]
    names = [p.name for p in paths[: args.n_images]]
    images = [center_crop(im, args.crop) for im in images]
    if args.large:
        from PIL import Image

        w, h = (int(v) for v in args.large.lower().split("x"))
        images = [np.asarray(Image.fromarray(images[0]).resize((w, h), Image.BICUBIC))]
        names = [f"{names[0]} resized to {w}x{h}"]
    return images, names


def run_naive(lm, images, lmbda, config, device):
    losses, seconds = [], 0.0
    for im in images:
        x = pad(to_tensor(im)).to(device)
        size = im.shape[:2]
        sync(device)
        t0 = time.perf_counter()
        with precision_scope(device, config.precision):
            loss, _, _ = naive_refine(lm, x, size, lmbda, config)
        sync(device)
        seconds += time.perf_counter() - t0
        losses.append(loss)
    return losses, seconds


def run_fast(lm, images, lmbda, config, device, batch_size):
    losses = [None] * len(images)
    seconds = 0.0
    for indices in batches_by_size(images, batch_size):
        size = images[indices[0]].shape[:2]
        x = pad(torch.cat([to_tensor(images[i]) for i in indices])).to(device)
        sync(device)
        t0 = time.perf_counter()
        result = refine(lm, x, size, lmbda, config)
        best = result.best.loss.tolist()  # the one read-back, after the loop
        sync(device)
        seconds += time.perf_counter() - t0
        for j, i in enumerate(indices):
            losses[i] = best[j]
            BASE_LOSSES[i] = result.base.loss[j].item()
    return losses, seconds


BASE_LOSSES = {}  # image index -> true R-D loss of the encoder's own latents


# --- --cpu: the per-iteration cost options on a CPU, side by side ----------------------------

CPU_VARIANTS = {  # name -> (RefineConfig changes, torch threads)
    "baseline": ({}, 1),  # eager, fp32, contiguous, true loss every step, 1 thread
    "compile": ({"compile": "default"}, 1),
    "channels_last": ({"channels_last": True}, 1),
    "threads=2": ({}, 2),
    "eval_every=5": ({"eval_every": 5}, 1),
    "eval_every=10": ({"eval_every": 10}, 1),
    "bf16": ({"precision": "bf16"}, 1),
}


def cpu_bf16_support() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return "unknown (no /proc/cpuinfo flags)"
    have = [f for f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if f in flags]
    return ", ".join(have) if have else "none of avx512_bf16, amx_bf16, avx512f, avx2"


def time_cpu_variant(net, image, lmbda, base: RefineConfig, changes: dict, threads: int,
                     warm: int, timed: int) -> tuple[float, float, float]:
    """(ms per iteration over the last ``timed`` steps of one refine call, seconds of its first
    ``warm`` steps, best true loss). Timed from the on_step stamps, so one-off costs (the first
    call, compilation) stay in the warm-up; ``timed`` should be a multiple of 10 so every
    eval_every variant pays its evaluations in proportion."""
    import copy

    config = base.with_(iterations=warm + timed, **changes)
    lm = LatentModel(copy.deepcopy(net) if config.channels_last else net)  # never reformat the coder
    x = pad(to_tensor(image))
    stamps: list[float] = []
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        result = refine(lm, x, image.shape[:2], lmbda, config,
                        on_step=lambda step: stamps.append(time.perf_counter()))
    finally:
        torch.set_num_threads(old_threads)
    ms = 1000.0 * (stamps[-1] - stamps[warm - 1]) / timed
    return ms, stamps[warm - 1] - t0, result.best.loss.item()


def cpu_main(args):
    """--cpu: every option of CPU_VARIANTS on a --crop (default 192) centre crop of the first image
    and on the whole image, each a refine call of --warmup untimed + --iterations timed steps,
    the variants interleaved in each of --repeats rounds; prints ms/iteration and the ratio to the
    baseline (> 1: faster), with the load average before and after."""
    args.n_images, args.large = 1, None
    crop = args.crop or 192
    args.crop = None
    [full], [name] = read_images(args)
    images = {f"{name} {crop}x{crop} crop": center_crop(full, crop),
              f"{name} {full.shape[1]}x{full.shape[0]}": full}
    net, lmbda, model_name = load(args)
    warm = max(args.warmup if args.warmup is not None else 3, 1)  # step 1 is never timed
    timed = args.iterations
    variants = [v for v in (args.variants.split(",") if args.variants else CPU_VARIANTS)]
    base = RefineConfig(method=args.method, seed=args.seed, compile="off", precision="fp32",
                        channels_last=False)
    load_before = os.getloadavg()
    prov = Provenance.current("cpu")
    print(f"   measured: {prov.date} on {prov.device}, sgacodec {prov.sgacodec} (commit {prov.commit}), "
          f"CompressAI {prov.compressai}")
    print(f"      torch: {torch.__version__}, {os.cpu_count()} logical cores visible, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"  cpu flags: {cpu_bf16_support()}")
    print(f"      model: {model_name}, method {args.method}, {warm} warm-up + {timed} timed steps "
          f"per run, {args.repeats} round(s)")
    print(f"       load: {' '.join(f'{v:.2f}' for v in load_before)} (1, 5, 15 min) before")
    rows: dict = {}
    for r in range(args.repeats):
        for label, image in images.items():
            for v in variants:
                changes, threads = CPU_VARIANTS[v]
                ms, warm_s, loss = time_cpu_variant(net, image, lmbda, base, changes, threads, warm, timed)
                rows.setdefault((label, v), []).append((ms, warm_s, loss))
                print(f"  round {r} {label:>22} {v:>14}: {ms:8.1f} ms/it  (warm-up {warm_s:6.1f} s, "
                      f"best loss {loss:.5f})", flush=True)
    load_after = os.getloadavg()
    print(f"       load: {' '.join(f'{v:.2f}' for v in load_after)} (1, 5, 15 min) after")
    print()
    results = {"load_before": load_before, "load_after": load_after, "variants": {}}
    for label in images:
        base_ms = statistics.median(m for m, _, _ in rows[(label, "baseline")]) \
            if (label, "baseline") in rows else None
        print(f"{label}: median ms/it over rounds, and baseline / variant (> 1: faster)")
        for v in variants:
            runs = rows[(label, v)]
            ms = statistics.median(m for m, _, _ in runs)
            per = ", ".join(f"{m:.0f}" for m, _, _ in runs)
            ratio = f"{base_ms / ms:5.2f}x" if base_ms else "-"
            print(f"  {v:>14}: {ms:8.1f} ms/it  {ratio}   (rounds: {per}; first-round warm-up "
                  f"{runs[0][1]:.1f} s)")
            results["variants"][f"{label} | {v}"] = {"ms": ms, "runs": runs,
                                                     "ratio": base_ms / ms if base_ms else None}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default="/work/shared/datasets/kodak")
    ap.add_argument("--n-images", type=int, default=24)
    ap.add_argument("--naive-images", type=int, default=None,
                    help="Run the naive loop on the first N images only (default: all).")
    ap.add_argument("--crop", type=int, default=None, help="Centre-crop every image to CxC (CPU runs).")
    ap.add_argument("--large", default=None, help="WxH: refine the first image resized to this size.")
    ap.add_argument("--refine-tiles", choices=("auto", "on", "off"), default="auto",
                    help="Refine an image of several tiles in tiles: auto = beyond WHOLE_REFINE_MEGAPIXELS "
                         "(docs/method.md, 'Refinement in tiles'), on = always, off = the whole image.")
    ap.add_argument("--iterations", type=int, default=None,
                    help="Iterations per run (default 2000; with --cpu: timed steps per run, 10).")
    ap.add_argument("--target-iterations", type=int, default=2000,
                    help="Images per second are quoted at this many iterations.")
    ap.add_argument("--method", default="ssl")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=24)
    ap.add_argument("--eval-every", type=int, default=1)
    ap.add_argument("--compile", default="auto")
    ap.add_argument("--precision", default="tf32", choices=("fp32", "tf32", "bf16"))
    ap.add_argument("--naive-precision", default="tf32", choices=("fp32", "tf32"),
                    help="tf32 = PyTorch's defaults (cuDNN TF32 allowed), fp32 = TF32 off.")
    ap.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--modes", default="naive,fast")
    ap.add_argument("--repeats", type=int, default=1, help="Interleaved naive/fast repeats.")
    ap.add_argument("--warmup", type=int, default=None,
                    help="Untimed warm-up iterations of each fast batch shape first (compile, cuDNN "
                         "autotune); default 10 with torch.compile, else 0. Its time is printed.")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default="default")
    ap.add_argument("--quality", type=int, default=None)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--random-model", action="store_true",
                    help="A randomly initialised MeanScaleHyperprior(128, 192): speed does not depend "
                         "on training (the R-D losses then mean little).")
    ap.add_argument("--lmbda", type=float, default=None)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--json", default=None, help="Also write the results to this file.")
    ap.add_argument("--cpu", action="store_true",
                    help="Time the CPU options (compile, channels_last, threads, eval_every, bf16) "
                         "side by side on a crop and on the whole first image; see cpu_main.")
    ap.add_argument("--variants", default=None,
                    help=f"--cpu: a comma list out of {', '.join(CPU_VARIANTS)} (default: all).")
    args = ap.parse_args(argv)
    if args.cpu:
        args.iterations = args.iterations or 10
        cpu_main(args)
        return
    args.iterations = 2000 if args.iterations is None else args.iterations

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    net, lmbda, model_name = load(args)
    images, names = read_images(args)
    modes = [m for m in args.modes.split(",") if m]
    channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
    fast_config = RefineConfig(method=args.method, iterations=args.iterations, seed=args.seed,
                               eval_every=args.eval_every, compile=args.compile,
                               precision=args.precision, channels_last=channels_last,
                               refine_tiles={"auto": None, "on": True, "off": False}[args.refine_tiles])
    naive_config = RefineConfig(method=args.method, iterations=args.iterations, seed=args.seed,
                                compile="off", precision=args.naive_precision, channels_last=False)

    class _Model:  # codec.device_model wants a LoadedModel-like object
        pass

    holder = _Model()
    holder.net = net
    naive_lm = device_model(holder, device)
    fast_lm = device_model(holder, device) if device.type == "cuda" else LatentModel(net)
    n_naive = len(images) if args.naive_images is None else min(args.naive_images, len(images))
    mode = compile_mode(fast_config, device)
    warmup = args.warmup if args.warmup is not None else (10 if mode else 0)

    header = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
        f"CPU ({os.cpu_count()} logical cores visible), torch threads {torch.get_num_threads()}",
        "torch": torch.__version__, "model": model_name, "lmbda": lmbda,
        "images": f"{len(images)} from {args.images}" + (f", centre crop {args.crop}" if args.crop else ""),
        "sizes": sorted({f"{im.shape[1]}x{im.shape[0]}" for im in images}),
        "iterations": args.iterations, "method": args.method, "seed": args.seed,
        "fast": {"batch_size": args.batch_size, "eval_every": args.eval_every, "compile": mode or "off",
                 "precision": args.precision, "channels_last": args.channels_last, "warmup": warmup,
                 "refine_tiles": args.refine_tiles},
        "naive": {"images": n_naive, "precision": args.naive_precision},
    }
    for k, v in header.items():
        print(f"{k:>11}: {v}")

    # FLOPs per iteration for one image of the most common size
    x0 = pad(to_tensor(images[0])).to(device)
    flops = flops_per_iteration(naive_lm, x0, images[0].shape[:2], lmbda, naive_config)
    flops_fast = flops["relaxed_fwd_bwd"] + flops["true_fwd"] / args.eval_every
    flops_naive = flops["relaxed_fwd_bwd"] + flops["true_fwd"]
    mp = images[0].shape[0] * images[0].shape[1] / 1e6
    print(f"      flops: per iteration per {images[0].shape[1]}x{images[0].shape[0]} image: relaxed "
          f"fwd+bwd {flops['relaxed_fwd_bwd'] / 1e9:.1f} GFLOP, true fwd {flops['true_fwd'] / 1e9:.1f} "
          f"GFLOP; naive {flops_naive / 1e9:.1f}, fast {flops_fast / 1e9:.1f} GFLOP/iteration")
    del x0

    warm_seconds = 0.0
    if "fast" in modes and warmup:
        t0 = time.perf_counter()
        for indices in batches_by_size(images, args.batch_size):
            run_fast(fast_lm, [images[i] for i in indices], lmbda,
                     fast_config.with_(iterations=warmup), device, args.batch_size)
        warm_seconds = time.perf_counter() - t0
        print(f"     warmup: {warmup} iterations per batch shape, {warm_seconds:.1f} s (compile etc.)")

    rows = {"naive": [], "fast": []}
    memory = {}
    for r in range(args.repeats):
        for m in modes:
            reset_memory(device)
            if m == "naive":
                losses, secs = run_naive(naive_lm, images[:n_naive], lmbda, naive_config, device)
                n = n_naive
            else:
                losses, secs = run_fast(fast_lm, images, lmbda, fast_config, device, args.batch_size)
                n = len(images)
            memory[m] = peak_memory(device)
            ms = 1000.0 * secs / (n * max(args.iterations, 1))
            rows[m].append({"repeat": r, "seconds": secs, "images": n, "ms_per_it_per_image": ms,
                            "losses": losses})
            print(f"  repeat {r} {m:>5}: {secs:.2f} s for {n} image(s) x {args.iterations} it = "
                  f"{ms:.2f} ms/it/image")

    def summary(m):
        ms = statistics.median(row["ms_per_it_per_image"] for row in rows[m])
        ips = 1000.0 / (ms * args.target_iterations)
        losses = rows[m][-1]["losses"]
        return ms, ips, losses

    results = {"header": header, "flops": flops, "warmup_seconds": warm_seconds, "modes": {}}
    batch_mp = {"naive": mp, "fast": mp * min(args.batch_size, len(images))}
    print()
    for m in modes:
        ms, ips, losses = summary(m)
        fl = flops_naive if m == "naive" else flops_fast
        achieved = fl / (ms / 1000.0)
        prec = args.naive_precision if m == "naive" else args.precision
        peak, peak_text = gpu_peak(device, prec, args.peak_tflops)
        frac = f"{achieved / peak:.1%} of {peak_text}" if peak else peak_text
        mem = memory[m]
        mem_text = (f"{mem / 2**30:.2f} GiB peak allocated, {mem / 2**20 / batch_mp[m]:.0f} MiB per "
                    f"megapixel refined at once ({batch_mp[m]:.2f} MP)" if device.type == "cuda"
                    else f"process peak RSS {mem / 2**30:.2f} GiB (CPU; not per mode)")
        print(f"{m:>5}: {ms:.2f} ms/it/image, {ips:.4f} images/s at {args.target_iterations} it, "
              f"{achieved / 1e9:.0f} GFLOP/s achieved ({frac})")
        print(f"       memory: {mem_text}")
        print(f"       final true R-D loss, mean of {len(losses)}: {statistics.fmean(losses):.5f}"
              + (f" (unrefined: {statistics.fmean(BASE_LOSSES.values()):.5f})"
                 if m == "fast" and BASE_LOSSES else ""))
        results["modes"][m] = {"ms_per_it_per_image": ms, "images_per_s_at_target": ips,
                               "achieved_flops": achieved, "peak_fraction": frac, "memory_bytes": mem,
                               "memory_text": mem_text, "runs": rows[m]}
    if "naive" in modes and "fast" in modes:
        ratios = [n["ms_per_it_per_image"] / f["ms_per_it_per_image"]
                  for n, f in zip(rows["naive"], rows["fast"])]
        nl, fl_ = rows["naive"][-1]["losses"], rows["fast"][-1]["losses"][:n_naive]
        diffs = [f - n for n, f in zip(nl, fl_)]
        rel = [d / n for d, n in zip(diffs, nl)]
        print(f"ratio fast/naive throughput: {statistics.median(ratios):.2f}x (per repeat: "
              + ", ".join(f"{q:.2f}" for q in ratios) + ")")
        if BASE_LOSSES:
            base = [BASE_LOSSES[i] for i in range(len(nl))]
            print(f"unrefined (encoder latents) mean on those images: {statistics.fmean(base):.5f}; "
                  f"refinement gain naive {1 - statistics.fmean(nl) / statistics.fmean(base):.2%}, "
                  f"fast {1 - statistics.fmean(fl_) / statistics.fmean(base):.2%}")
        print(f"R-D on the {len(nl)} image(s) both refined: naive mean {statistics.fmean(nl):.5f}, fast "
              f"mean {statistics.fmean(fl_):.5f}, fast - naive per image: mean {statistics.fmean(rel):+.3%}"
              f", max |.| {max(abs(v) for v in rel):.3%}")
        results["ratio"] = statistics.median(ratios)
        results["rd_relative_diff"] = rel
    if "fast" in modes:
        total = rows["fast"][-1]["seconds"] + warm_seconds
        print(f"fast total for {len(images)} image(s) x {args.iterations} it: "
              f"{rows['fast'][-1]['seconds']:.1f} s refining + {warm_seconds:.1f} s warm-up = {total:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
