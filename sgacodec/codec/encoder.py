"""The codec of one batch: refined latents into sgacodec files, and files back into pixels
(docs/method.md, "Entropy coding"; the container: docs/format.md).

    from sgacodec import load_model, encode, decode, RefineConfig
    model = load_model(checkpoint="msh.safetensors")
    [report] = encode(model, [rgb_uint8], RefineConfig(iterations=500))   # pipeline.encode
    decoded = decode(report.data, model)          # decoded.rgb, decoded.header, decoded.exact

``encode_batch`` refines same-size images together on any device; entropy coding (h_s on the hard
z, index building, rANS) and the reconstruction the encoder reports run on the CPU with the coding
network (``coding_net``: h_s, g_s and the entropy coder's tables in float64), exactly as the
decoder will, so a file encoded on one machine decodes on another to the same pixels. Should
another machine's arithmetic still differ, ``decode`` says so (``exact`` False) and returns the
image, or refuses with strict=True. Many images, size batches and out-of-memory handling:
pipeline.py.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from ..config import RefineConfig
from ..errors import DecodeError, EncodeError, ResourceError  # noqa: F401 - raised here
from ..models.loading import LoadedModel, ModelError, load_for_bitstream
from ..network.coding_net import float64_coding_net, with_float32_tables
from ..network.latent_model import LatentModel, coding_problem, synthesis_channels
from ..refinement.loop import refine
from . import container as bitstream
from . import isolate, memory

MISMATCH_TEXT = ("decoded pixels differ from what the encoder computed (reconstruction hash mismatch): "
                 "this machine computes the model's arithmetic differently from the encoder's "
                 "(other PyTorch build or CPU; usually a few pixels by one level)")


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

    SUMMARY = ("height", "width", "method", "lmbda", "bpp", "psnr", "loss", "base_bpp", "base_psnr",
               "base_loss", "iterations", "seconds")

    def record(self) -> dict:
        """A JSON-ready summary (no arrays, no bytes)."""
        out = {k: getattr(self, k) for k in self.SUMMARY}
        out["bytes"] = len(self.data)
        return out


class Decoded(NamedTuple):
    """A decoded file: its pixels, its header, and whether the pixels are exactly those its
    encoder computed (the reconstruction hash matched; None when not checked)."""

    rgb: np.ndarray
    header: bitstream.Bitstream
    exact: bool | None


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
    float64 (float64.float64_coding_net), made once per model. In float32 (version 1: the model
    itself, with CompressAI's float32 tables) another CPU's rounding moved scale indexes or table
    entries and the decoder desynchronised: 12 to 24 of the 24 Kodak files of each shipped model failed to decode on an
    emulated other CPU; in version 2 all decoded to the encoder's pixels (docs/format.md).
    """
    if version < 2:
        return with_float32_tables(model.net)
    net = _CODING_NETS.get(model.net)
    if net is None:
        net = _CODING_NETS[model.net] = float64_coding_net(model.net)
    return net


# The coding step's time limit: CODING_TIME[0] seconds plus CODING_TIME[1] per padded pixel coded
# (the decoder's limit, doubled: the encoder codes and decodes).
CODING_TIME = (120.0, 4e-5)


def coding_timeout(n_images: int, padded_pixels: int) -> float:
    return CODING_TIME[0] + CODING_TIME[1] * n_images * padded_pixels


def code_latents(model: LoadedModel, y: torch.Tensor, z: torch.Tensor, size,
                 version: int = bitstream.VERSION) -> list[tuple[bytes, np.ndarray]]:
    """Entropy-code latents on the CPU; returns (file bytes, decoded pixels) per image.

    The pixels come from the stock decoder run on the very strings written, so they are exactly
    what ``decode`` will produce. Each image is coded and decoded on its own, on one thread, as the
    decoder runs: a convolution over a batch of two can round differently from one over a single
    image, which would desynchronise h_s's scales or change the reconstruction. Several images are
    coded in parallel, one per worker thread (torch releases the GIL), as many as the memory
    allows: torch's intra-op thread count is process-wide, so it is set to one once around the
    whole pool (see isolate.single_thread), not per image, where the workers' restores would race.

    Latents that rANS cannot code (NaN, infinite, beyond +-2^20) are refused first (EncodeError):
    CompressAI's encoder loops without end on a NaN. The coding itself runs, like the decoder,
    in a forked child (isolate.call) with a time limit, which Ctrl-C and SIGTERM stop too.
    """
    problem = coding_problem(y.detach(), z.detach())
    if problem:
        raise EncodeError(f"cannot entropy-code this image: {problem}")
    net = coding_net(model, version)
    lm = LatentModel(net)
    height, width = size
    y, z = y.detach().float().cpu(), z.detach().float().cpu()
    per_image = memory.image_bytes(synthesis_channels(net), height, width)
    memory.check(per_image, f"coding a {width}x{height} image")
    workers = memory.fitting(per_image, min(CODING_THREADS, y.size(0)))

    def code(i):
        with torch.no_grad():  # grad mode is per thread
            y_strings, z_strings = lm.compress_latents(y[i : i + 1], z[i : i + 1])
            x_hat = lm.decompress(y_strings, z_strings, z.shape[-2:])
        rgb = to_uint8(x_hat[0, :, :height, :width])
        bs = bitstream.Bitstream(model.identity, height, width, tuple(z.shape[-2:]),
                                 tuple(y.shape[-2:]), recon_hash(rgb), z_strings[0], y_strings[0],
                                 version)
        return [bitstream.pack(bs), rgb]

    def code_all():
        with isolate.single_thread():
            if workers == 1:
                return [code(i) for i in range(y.size(0))]
            if isolate.in_child():  # the parent's pool threads do not exist in a forked child
                with ThreadPoolExecutor(workers, "sgacodec-coding", initializer=torch.get_num_threads) as pool:
                    return list(pool.map(code, range(y.size(0))))
            return list(_coding_pool().map(code, range(y.size(0))))

    timeout = coding_timeout(y.size(0), 256 * y.size(-2) * y.size(-1))
    try:
        coded = isolate.call(code_all, timeout, what="entropy coding")
    except isolate.OutOfMemory as exc:
        raise ResourceError(f"not enough memory to code a {width}x{height} image ({exc})") from None
    except isolate.IsolatedError as exc:
        raise EncodeError(f"entropy coding failed: {exc}") from None
    return [(data, rgb) for data, rgb in coded]


CODING_THREADS = min(os.cpu_count() or 1, 16)  # images code_latents codes in parallel, at most


@functools.cache
def _coding_pool() -> ThreadPoolExecutor:
    """code_latents' worker threads when coding in-process (SGACODEC_ISOLATE=0, or not Linux),
    kept for the process's life: a thread that exits frees MKL's per-thread buffers under a lock,
    and a fork meanwhile (isolate.call decodes in a forked child) leaves the child spinning on
    that lock. Workers start inside isolate.single_thread, and a thread takes torch's
    process-wide thread count at its first torch call (the initializer), so each worker computes
    on one thread, like the decoder."""
    return ThreadPoolExecutor(CODING_THREADS, "sgacodec-coding", initializer=torch.get_num_threads)


def check_memory(model: LoadedModel, n_images: int, height: int, width: int, device: torch.device) -> None:
    """ResourceError before any work when the images cannot be coded in this machine's memory
    (memory.py): refinement on the CPU holds the whole batch; coding holds one image at least."""
    per_image = memory.image_bytes(synthesis_channels(model.net), height, width)
    count = n_images if device.type == "cpu" else 1
    what = f"encoding {n_images} image(s) of {width}x{height}" if count > 1 else f"encoding {width}x{height}"
    memory.check(per_image * count, what)


def encode_batch(
    model: LoadedModel,
    images: list[np.ndarray],
    config: RefineConfig = RefineConfig(),
    device: str | torch.device = "cpu",
    on_step: Callable[[int], None] | None = None,
    keep_history: bool = False,
    refine_model: LatentModel | None = None,
) -> list[EncodeReport]:
    """Encode same-size RGB uint8 images, refined together as one batch (pipeline.encode takes
    any sizes). lambda: ``config.lmbda``, else the model's training lambda."""
    lmbda = model.resolve_lmbda(config.lmbda)
    if model.identity.metric != "mse" and config.method != "none":
        raise ModelError("refinement optimises lambda * 255^2 * MSE + bpp; ms-ssim models are "
                         "supported with --method none only")
    if len({image.shape for image in images}) > 1:
        raise ValueError("encode_batch takes images of one size (pipeline.encode groups them)")
    size = images[0].shape[:2]
    bitstream.check_size(*size)  # refuse before refining what the decoder would refuse
    device = torch.device(device)
    check_memory(model, len(images), *size, device)
    try:
        lm = refine_model or device_model(model, device, config.channels_last)
        x = pad(torch.cat([to_tensor(image) for image in images])).to(device)
        with torch.no_grad():
            y0, z0 = lm.analysis(x)
        if config.refines or keep_history:
            result = refine(lm, x, size, lmbda, config, y0, z0, on_step=on_step, keep_history=keep_history)
            y, z, iterations, seconds, histories = (result.y, result.z, result.iterations, result.seconds,
                                                    result.history)
        else:  # nothing to refine: the encoder's latents, measured on their real bytes below (refine()
            # would first evaluate their loss with another g_s pass, for nothing)
            y, z, iterations, seconds, histories = y0, z0, 0, 0.0, []
    except (RuntimeError, MemoryError) as exc:
        if isinstance(exc, torch.cuda.OutOfMemoryError) or not isolate.is_allocation_failure(exc):
            raise  # pipeline.py halves the batch on a GPU out-of-memory error
        raise ResourceError(f"not enough memory to encode {size[1]}x{size[0]} "
                            f"({len(images)} image(s)): an allocation failed") from None
    coded = code_latents(model, y, z, size)
    base = coded if not config.refines else code_latents(model, y0, z0, size)
    return [make_report(image, config.method, lmbda, coded[j], base[j], iterations, seconds / len(images),
                        [{"step": h["step"], "loss": h["loss"][j], "bpp": h["bpp"][j], "psnr": h["psnr"][j]}
                         for h in histories])
            for j, image in enumerate(images)]


def make_report(image: np.ndarray, method: str, lmbda: float, coded: tuple[bytes, np.ndarray],
                base: tuple[bytes, np.ndarray], iterations: int, seconds: float,
                history: list | None = None) -> EncodeReport:
    """The report of one image: ``coded`` and ``base`` are (file bytes, decoded pixels) of the
    refined and of the encoder's latents (code_latents), measured against ``image``."""
    (data, rgb), (base_data, base_rgb) = coded, base
    size = image.shape[:2]
    mse, base_mse = metrics.mse(image, rgb), metrics.mse(image, base_rgb)
    bpp, base_bpp = (metrics.bpp(len(d), *size) for d in (data, base_data))
    return EncodeReport(
        data, rgb, size[0], size[1], method, lmbda, bpp, metrics.psnr_from_mse(mse),
        metrics.rd_loss(lmbda, mse, bpp), base_bpp, metrics.psnr_from_mse(base_mse),
        metrics.rd_loss(lmbda, base_mse, base_bpp), iterations, seconds, base_rgb, history or [])


def device_model(model: LoadedModel, device: torch.device, channels_last: bool | None = None) -> LatentModel:
    """The network for refinement: the CPU model itself, or a copy on the device (in channels_last
    there, unless ``channels_last`` is False; refine.frozen leaves the model as it found it)."""
    if device.type == "cpu":
        return LatentModel(model.net)
    net = copy.deepcopy(model.net).to(device)
    if channels_last is not False:
        net = net.to(memory_format=torch.channels_last)
    return LatentModel(net)


def decode(data: bytes, model: LoadedModel | None = None, checkpoint=None,
           verify: bool = True, strict: bool = False, allow_download: bool = False) -> Decoded:
    """Decode an sgacodec file with the stock CompressAI decoder: (RGB uint8, header, exact).

    The pixels are checked against the encoder's reference decode (a hash in the file): ``exact``
    says whether they match; with ``strict`` a mismatch raises DecodeError instead;
    ``verify=False`` skips the check (``exact`` None). A zoo model the file names is read from
    torch.hub's cache, never downloaded unless ``allow_download``. An image whose synthesis
    needs more memory than allowed (memory.py) is refused before anything is allocated.
    """
    bs = bitstream.unpack(data)
    if model is None:
        model = load_for_bitstream(bs.model, checkpoint, allow_download)
    elif model.identity.weights_sha != bs.model.weights_sha:
        raise ModelError(f"model mismatch: the file needs {bs.model.describe()}, "
                         f"not {model.identity.describe()}")
    # Untrusted strings: padded, checked, and decoded in a child process where possible, because
    # CompressAI's rANS decoder reads past the end of a forged string (see isolate.py).
    net = coding_net(model, bs.version)
    memory.check(memory.image_bytes(synthesis_channels(net), bs.height, bs.width),
                 f"decoding {bs.width}x{bs.height}")

    def run():
        x_hat = isolate.decompress_untrusted(net, bs.y_string, bs.z_string, bs.z_shape)
        return to_uint8(x_hat[0, :, : bs.height, : bs.width])

    try:
        rgb = isolate.call(run, timeout=60.0 + 2e-5 * 256 * bs.y_shape[0] * bs.y_shape[1])
    except isolate.OutOfMemory as exc:
        raise ResourceError(f"not enough memory to decode {bs.width}x{bs.height} ({exc})") from None
    except isolate.IsolatedError as exc:
        legacy = ("; a version 1 file, coded in float32, may not decode on a CPU other than its "
                  "encoder's (docs/format.md)") if bs.version < 2 else ""
        raise DecodeError(f"the entropy-coded data does not decode: {exc}{legacy}") from None
    exact = recon_hash(rgb) == bs.recon_hash if verify else None
    if strict and exact is False:
        raise DecodeError(MISMATCH_TEXT)
    return Decoded(rgb, bs, exact)
