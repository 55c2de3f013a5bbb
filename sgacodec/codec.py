"""The library API: encode images with refined latents into sgacodec files, and decode them.

    from sgacodec import load_model, encode, decode, RefineConfig
    model = load_model(checkpoint="msh.safetensors")
    [report] = encode(model, [rgb_uint8], RefineConfig(iterations=500))
    rgb, header = decode(report.data, model)

Refinement runs on any device; entropy coding (h_s on the hard z, index building, rANS) and the
reconstruction the encoder reports run on the CPU with the coding network (``coding_net``: h_s,
g_s and the entropy coder's tables in float64), exactly as the decoder will, so a file encoded on one machine decodes on
another to the same pixels. Should another machine's arithmetic still differ, decode warns
(ReconstructionMismatch) and returns the image, or refuses with strict=True.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import time
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import bitstream, isolate, metrics
from .hyperprior import LatentModel, float64_coding_net
from .models import LoadedModel, ModelError, load_for_bitstream
from .refine import RefineConfig, refine


class ReconstructionMismatch(UserWarning):
    """Decoded pixels differ from the encoder's reference decode (the stored hash)."""


MISMATCH_TEXT = ("decoded pixels differ from what the encoder computed (reconstruction hash mismatch): "
                 "this machine computes the model's arithmetic differently from the encoder's "
                 "(other PyTorch build or CPU; usually a few pixels by one level)")


class DecodeError(RuntimeError):
    """A file that parses but does not decode to what its encoder computed."""


@dataclass
class EncodeReport:
    """What encoding one image produced and measured (all on real bitstream bytes)."""

    data: bytes
    recon: np.ndarray  # what the decoder will output, uint8 [H, W, 3]
    height: int
    width: int
    method: str
    lmbda: float
    bpp: float
    psnr: float
    loss: float
    base_bpp: float
    base_psnr: float
    base_loss: float
    iterations: int
    seconds: float
    base_recon: np.ndarray | None = None
    history: list = field(default_factory=list)

    def record(self) -> dict:
        """A JSON-ready summary (no arrays, no bytes)."""
        keys = ("height", "width", "method", "lmbda", "bpp", "psnr", "loss", "base_bpp",
                "base_psnr", "base_loss", "iterations", "seconds")
        out = {k: getattr(self, k) for k in keys}
        out["bytes"] = len(self.data)
        return out


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {name} requested but CUDA is not available")
    return device


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().div(255.0)[None]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def pad(x: torch.Tensor, multiple: int = LatentModel.multiple) -> torch.Tensor:
    """Replicate-pad right and bottom to a multiple of ``multiple`` (cropped again on decode)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def recon_hash(rgb: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).digest()[:8]


_CODING_NETS: "weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module]" = weakref.WeakKeyDictionary()


def coding_net(model: LoadedModel, version: int = bitstream.VERSION) -> torch.nn.Module:
    """The CPU network that codes and decodes files of this format version.

    Version 2: a copy of the model with h_s, g_s, the scale table and the rANS tables computed in
    float64 (hyperprior.float64_coding_net), made once per model. In float32 (version 1: the model
    itself) another CPU's rounding moved scale indexes or table entries and the decoder
    desynchronised: 12 to 24 of the 24 Kodak files of each shipped model failed to decode on an
    emulated other CPU; in version 2 all decoded to the encoder's pixels (docs/format.md).
    """
    if version < 2:
        return model.net
    net = _CODING_NETS.get(model.net)
    if net is None:
        net = _CODING_NETS[model.net] = float64_coding_net(model.net)
    return net


def code_latents(model: LoadedModel, y: torch.Tensor, z: torch.Tensor, size,
                 version: int = bitstream.VERSION) -> list[tuple[bytes, np.ndarray]]:
    """Entropy-code latents on the CPU; returns (file bytes, decoded pixels) per image.

    The pixels come from the stock decoder run on the very strings written, so they are exactly
    what ``decode`` will produce. Each image is coded and decoded on its own, on one thread, as the
    decoder runs: a convolution over a batch of two can round differently from one over a single
    image, which would desynchronise h_s's scales or change the reconstruction. Several images are
    coded in parallel, one per worker thread (torch releases the GIL): torch's intra-op thread
    count is process-wide, so it is set to one once around the whole pool (see
    isolate.single_thread), not per image, where the workers' restores would race.
    """
    lm = LatentModel(coding_net(model, version))
    height, width = size
    y, z = y.detach().float().cpu(), z.detach().float().cpu()

    def code(i):
        with torch.no_grad():  # grad mode is per thread
            y_strings, z_strings = lm.compress_latents(y[i : i + 1], z[i : i + 1])
            x_hat = lm.decompress(y_strings, z_strings, z.shape[-2:])
        rgb = to_uint8(x_hat[0, :, :height, :width])
        bs = bitstream.Bitstream(model.identity, height, width, tuple(z.shape[-2:]),
                                 tuple(y.shape[-2:]), recon_hash(rgb), z_strings[0], y_strings[0],
                                 version)
        return bitstream.pack(bs), rgb

    with isolate.single_thread():
        if y.size(0) == 1 or CODING_THREADS == 1:
            return [code(i) for i in range(y.size(0))]
        return list(_coding_pool().map(code, range(y.size(0))))


CODING_THREADS = min(os.cpu_count() or 1, 16)  # images code_latents codes in parallel


@functools.cache
def _coding_pool() -> ThreadPoolExecutor:
    """code_latents' worker threads, kept for the process's life: a thread that exits frees MKL's
    per-thread buffers under a lock, and a fork meanwhile (isolate.call decodes in a forked child)
    leaves the child spinning on that lock. Workers start inside isolate.single_thread, and a
    thread takes torch's process-wide thread count at its first torch call (the initializer), so
    each worker computes on one thread, like the decoder."""
    return ThreadPoolExecutor(CODING_THREADS, "sgacodec-coding", initializer=torch.get_num_threads)


def encode(
    model: LoadedModel,
    images: list[np.ndarray],
    config: RefineConfig = RefineConfig(),
    device: str | torch.device = "cpu",
    lmbda: float | None = None,
    batch_size: int = 1,
    on_step: Callable[[int], None] | None = None,
    keep_history: bool = False,
    refine_model: LatentModel | None = None,
) -> list[EncodeReport]:
    """Encode RGB uint8 images; same-size images are refined together, ``batch_size`` at a time."""
    lmbda = lmbda if lmbda is not None else config.lmbda if config.lmbda is not None else model.lmbda
    if lmbda is None:
        raise ModelError("the model's training lambda is unknown; pass --lmbda")
    if model.identity.metric != "mse" and config.method != "none":
        raise ModelError("refinement optimises lambda * 255^2 * MSE + bpp; ms-ssim models are "
                         "supported with --method none only")
    for image in images:  # refuse before refining what the decoder would refuse
        bitstream.check_size(*image.shape[:2])
    device = torch.device(device)
    lm = refine_model or device_model(model, device)
    reports: list[EncodeReport | None] = [None] * len(images)
    for indices in batches_by_size(images, batch_size):
        size = images[indices[0]].shape[:2]
        x = pad(torch.cat([to_tensor(images[i]) for i in indices])).to(device)
        with torch.no_grad():
            y0, z0 = lm.analysis(x)
        result = refine(lm, x, size, lmbda, config, y0, z0, on_step=on_step, keep_history=keep_history)
        coded = code_latents(model, result.y, result.z, size)
        base = coded if config.method == "none" else code_latents(model, y0, z0, size)
        for j, i in enumerate(indices):
            data, rgb = coded[j]
            base_data, base_rgb = base[j]
            mse, base_mse = metrics.mse(images[i], rgb), metrics.mse(images[i], base_rgb)
            bpp, base_bpp = (metrics.bpp(len(d), *size) for d in (data, base_data))
            history = [{"step": h["step"], "loss": h["loss"][j], "bpp": h["bpp"][j],
                        "psnr": h["psnr"][j]} for h in result.history]
            reports[i] = EncodeReport(
                data, rgb, size[0], size[1], config.method, lmbda, bpp, metrics.psnr(images[i], rgb),
                metrics.rd_loss(lmbda, mse, bpp), base_bpp, metrics.psnr(images[i], base_rgb),
                metrics.rd_loss(lmbda, base_mse, base_bpp), result.iterations,
                result.seconds / len(indices), base_rgb, history)
    return reports


def device_model(model: LoadedModel, device: torch.device) -> LatentModel:
    """The network for refinement: the CPU model itself, or a copy on the device."""
    net = model.net if device.type == "cpu" else copy.deepcopy(model.net).to(device)
    return LatentModel(net)


AUTO_BATCH_MEGAPIXELS = 12.0  # GPU default: about 30 Kodak images per batch (docs/performance.md)


def batches_by_size(images: list[np.ndarray], batch_size: int | None) -> list[list[int]]:
    """Indices grouped by image size, in input order, at most ``batch_size`` per group (None: as
    many as fit in AUTO_BATCH_MEGAPIXELS, the default on a GPU)."""
    groups: dict[tuple, list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.shape[:2], []).append(i)
    out = []
    for (h, w), g in groups.items():
        n = batch_size or max(1, int(AUTO_BATCH_MEGAPIXELS * 1e6 // (h * w)))
        out += [g[k : k + n] for k in range(0, len(g), n)]
    return out


def halving_on_oom(run: Callable[[list], list], items: list) -> list:
    """``run(items)`` (a list per item), halving the batch while the device runs out of memory."""
    try:
        return run(items)
    except torch.cuda.OutOfMemoryError:
        if len(items) == 1:
            raise
    # out of the except block: the failed attempt's tensors are released before the retry
    torch.cuda.empty_cache()
    half = len(items) // 2
    return halving_on_oom(run, items[:half]) + halving_on_oom(run, items[half:])


def decode(data: bytes, model: LoadedModel | None = None, checkpoint=None,
           verify: bool = True, strict: bool = False) -> tuple[np.ndarray, bitstream.Bitstream]:
    """Decode an sgacodec file with the stock CompressAI decoder; returns (RGB uint8, header).

    The pixels are checked against the encoder's reference decode (a hash in the file). A
    mismatch warns (ReconstructionMismatch) and returns the pixels, or raises DecodeError with
    ``strict``; ``verify=False`` skips the check.
    """
    bs = bitstream.unpack(data)
    if model is None:
        model = load_for_bitstream(bs.model, checkpoint)
    elif model.identity.weights_sha != bs.model.weights_sha:
        raise ModelError(f"model mismatch: the file needs {bs.model.describe()}, "
                         f"not {model.identity.describe()}")
    # Untrusted strings: padded, checked, and decoded in a child process where possible, because
    # CompressAI's rANS decoder reads past the end of a forged string (see isolate.py).
    net = coding_net(model, bs.version)

    def run():
        x_hat = isolate.decompress_untrusted(net, bs.y_string, bs.z_string, bs.z_shape)
        return to_uint8(x_hat[0, :, : bs.height, : bs.width])

    try:
        rgb = isolate.call(run, timeout=60.0 + 2e-5 * 256 * bs.y_shape[0] * bs.y_shape[1])
    except isolate.IsolatedError as exc:
        legacy = ("; a version 1 file, coded in float32, may not decode on a CPU other than its "
                  "encoder's (docs/format.md)") if bs.version < 2 else ""
        raise DecodeError(f"the entropy-coded data does not decode: {exc}{legacy}") from None
    if verify and recon_hash(rgb) != bs.recon_hash:
        if strict:
            raise DecodeError(MISMATCH_TEXT)
        warnings.warn(MISMATCH_TEXT, ReconstructionMismatch, stacklevel=2)
    return rgb, bs




def estimate_refine_seconds(lm: LatentModel, image: np.ndarray, config: RefineConfig,
                            lmbda: float, probe_steps: int = 2) -> tuple[float, float]:
    """(seconds per iteration, seconds per image besides its iterations), timed on a short probe
    refinement of this image: an iteration costs what the probe's last step did (its first step
    carries one-off costs), and the rest of the probe's time is the per-image part."""
    x = pad(to_tensor(image)).to(lm.device)
    stamps: list[float] = []
    result = refine(lm, x, image.shape[:2], lmbda, config.with_(iterations=probe_steps, time_budget=None),
                    on_step=lambda step: stamps.append(time.perf_counter()))
    if len(stamps) > 1:
        per_iteration = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    else:
        per_iteration = result.seconds / max(result.iterations, 1)
    return per_iteration, max(result.seconds - per_iteration * result.iterations, 0.0)
