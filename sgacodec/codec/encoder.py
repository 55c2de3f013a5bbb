"""Images into sgacodec files, one batch of same-size images at a time (docs/method.md,
"Entropy coding"; the container: docs/format.md).

    reports = encode_batch(model, [rgb_uint8], RefineConfig(iterations=500))
    reports[0].data, reports[0].bpp, reports[0].psnr          # the file, measured on its bytes

``encode_batch`` refines same-size images together on any device; entropy coding (h_s on the hard
z, index building, rANS) and the reconstruction the encoder reports run on the CPU with the coding
network (network/coding_net.py: h_s, g_s and the entropy coder's tables in float64), exactly as
the decoder will, so a file encoded on one machine decodes on another to the same pixels. Many
images, size batches and out-of-memory handling: batching.py; files to pixels: decoder.py.
"""

from __future__ import annotations

import contextlib
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .. import metrics
from ..config import TILE_SIZE, RefineConfig, coding_timeout
from ..errors import EncodeError, ModelError, ResourceError
from ..models.loaded import LoadedModel
from ..network.checks import coding_problem, synthesis_channels
from ..network.coding_net import coding_net
from ..network.grid import Grid
from ..network.latent_model import LatentModel
from ..refinement.loop import refine_latents
from ..refinement.tiled import refines_in_tiles
from . import container, isolate, memory, tiled
from .devices import device_model
from .pixels import pad, recon_hash, to_tensor, to_uint8


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


def code_latents(model: LoadedModel, y: torch.Tensor, z: torch.Tensor, size, version: int = container.VERSION,
                 tile: int = TILE_SIZE, grayscale: bool = False,
                 metadata: dict | None = None) -> list[tuple[bytes, np.ndarray]]:
    """Entropy-code latents [B, ...] on the CPU; returns (file bytes, decoded pixels) per image.

    Version 3 (``tile``: the grid's side in pixels, 0 the whole image): each tile of y is one
    stream, coded with the scales and means h_s computes for that tile, and the pixels come from
    the decoder's own tiled synthesis of what those streams decode to (tiled.py), so they are
    exactly what ``decode`` will produce; the tiles are coded and synthesised in parallel on one
    thread each, as the decoder runs them. Versions 1 and 2 (still written for tests and golden
    files): one stream each for y and z, decoded by the stock decoder, several images in parallel.

    Latents that rANS cannot code (NaN, infinite, beyond +-2^20) are refused first (EncodeError):
    CompressAI's encoder loops without end on a NaN. The coding itself runs, like the decoder,
    in a forked child (isolate.call) with a time limit, which Ctrl-C and SIGTERM stop too.
    """
    problem = coding_problem(y.detach(), z.detach())
    if problem:
        raise EncodeError(f"cannot entropy-code this image: {problem}")
    net = coding_net(model.net, version)
    height, width = size
    y, z = y.detach().float().cpu(), z.detach().float().cpu()
    if version < 3:
        return _code_legacy(model, net, y, z, size, version)
    grid = Grid(height, width, tile)
    context = LatentModel(net).has_context
    workers = memory.check_coding(synthesis_channels(net), grid, "coding")

    def code_one(i: int, pool) -> list:
        z_string, y_strings, y_hat = tiled.code_streams(net, y[i : i + 1], z[i : i + 1], grid, context, pool)
        rgb = tiled.TileDecoder.from_y_hat(net, grid, y_hat, pool).image()
        header = container.Bitstream(model.identity, height, width, grid.z_size, grid.y_size, recon_hash(rgb),
                                     z_string, tuple(y_strings), version, tile, grayscale, dict(metadata or {}))
        return [container.pack(header), rgb]

    def code_all():
        with isolate.single_thread(), tile_pool(workers) as pool:
            return [code_one(i, pool) for i in range(y.size(0))]

    timeout = coding_timeout(y.size(0) * grid.padded[0] * grid.padded[1], encoding=True)
    try:
        coded = isolate.call(code_all, timeout, what="entropy coding")
    except isolate.OutOfMemory as exc:
        raise ResourceError(f"not enough memory to code a {width}x{height} image ({exc})") from None
    except isolate.IsolatedError as exc:
        raise EncodeError(f"entropy coding failed: {exc}") from None
    return [(data, rgb) for data, rgb in coded]


def _code_legacy(model: LoadedModel, net, y: torch.Tensor, z: torch.Tensor, size, version: int) -> list:
    """Versions 1 and 2: CompressAI's own compress() and decompress() on the whole image, each
    image on its own (a convolution over a batch of two can round differently from one over a
    single image), several images in parallel, one per worker thread."""
    latent_model = LatentModel(net)
    height, width = size
    per_image = memory.image_bytes(synthesis_channels(net), height, width, per_pixel=memory.LEGACY_BYTES_PER_PIXEL)
    memory.check(per_image, f"coding a {width}x{height} image")
    workers = memory.fitting(per_image, min(CODING_THREADS, y.size(0)))

    def code(i):
        with torch.no_grad():  # grad mode is per thread
            y_strings, z_strings = latent_model.compress_latents(y[i : i + 1], z[i : i + 1])
            x_hat = latent_model.decompress(y_strings, z_strings, z.shape[-2:])
        rgb = to_uint8(x_hat[0, :, :height, :width])
        header = container.Bitstream(model.identity, height, width, tuple(z.shape[-2:]), tuple(y.shape[-2:]),
                                     recon_hash(rgb), z_strings[0], (y_strings[0],), version)
        return [container.pack(header), rgb]

    def code_all():
        with isolate.single_thread():
            if workers == 1:
                return [code(i) for i in range(y.size(0))]
            if isolate.in_child():  # the parent's pool threads do not exist in a forked child
                with ThreadPoolExecutor(workers, "sgacodec-coding", initializer=torch.get_num_threads) as pool:
                    return list(pool.map(code, range(y.size(0))))
            return list(_coding_pool().map(code, range(y.size(0))))

    timeout = coding_timeout(y.size(0) * 256 * y.size(-2) * y.size(-1), encoding=True)
    try:
        coded = isolate.call(code_all, timeout, what="entropy coding")
    except isolate.OutOfMemory as exc:
        raise ResourceError(f"not enough memory to code a {width}x{height} image ({exc})") from None
    except isolate.IsolatedError as exc:
        raise EncodeError(f"entropy coding failed: {exc}") from None
    return [(data, rgb) for data, rgb in coded]


CODING_THREADS = min(os.cpu_count() or 1, 16)  # images code_latents codes in parallel, at most


@contextlib.contextmanager
def tile_pool(workers: int):
    """Worker threads for tiles: a new pool in a forked child (the parent's threads do not exist
    there), the process's coding pool otherwise (see _coding_pool); each computes on one thread."""
    if isolate.in_child() or workers < CODING_THREADS:
        with ThreadPoolExecutor(workers, "sgacodec-tiles", initializer=torch.get_num_threads) as pool:
            yield pool
    else:
        yield _coding_pool()


@functools.cache
def _coding_pool() -> ThreadPoolExecutor:
    """code_latents' worker threads when coding in-process (SGACODEC_ISOLATE=0, or not Linux),
    kept for the process's life: a thread that exits frees MKL's per-thread buffers under a lock,
    and a fork meanwhile (isolate.call decodes in a forked child) leaves the child spinning on
    that lock. Workers start inside isolate.single_thread, and a thread takes torch's
    process-wide thread count at its first torch call (the initializer), so each worker computes
    on one thread, like the decoder."""
    return ThreadPoolExecutor(CODING_THREADS, "sgacodec-coding", initializer=torch.get_num_threads)


def check_memory(model: LoadedModel, n_images: int, height: int, width: int, device: torch.device,
                 tile: int | None = None, config: RefineConfig | None = None) -> None:
    """ResourceError before any work when the images cannot be coded in this machine's memory
    (memory.py): refinement on the CPU holds the whole batch; coding holds one image at least.
    ``tile``: no refinement, the analysis and coding in tiles of that side (0: the whole image);
    ``config``: the refinement's, whose images may refine in tiles (refinement.tiled.refines_in_tiles)."""
    if tile is not None:
        memory.check_coding(synthesis_channels(model.net), Grid(height, width, tile), "encoding")
        return
    grid = Grid(height, width, config.tile_size if config is not None else 0)
    if config is not None and refines_in_tiles(config, grid, device.type, n_images if device.type == "cpu" else 1,
                                               LatentModel(model.net).has_context):
        each = memory.estimate("refine", synthesis_channels(model.net), grid, workers=1) - memory.PROCESS_BYTES
        many = f" ({n_images} images)" if n_images > 1 else ""
        memory.check(each * n_images, f"encoding {width}x{height}{many}")
        return
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
    network: LatentModel | None = None,
) -> list[EncodeReport]:
    """Encode same-size RGB uint8 images, refined together as one batch (batching.encode takes
    any sizes). lambda: ``config.lmbda``, else the model's training lambda."""
    lmbda = model.resolve_lmbda(config.lmbda)
    if model.identity.metric != "mse" and config.method != "none":
        raise ModelError("refinement optimises lambda * 255^2 * MSE + bpp; ms-ssim models are "
                         "supported with --method none only")
    if len({image.shape for image in images}) > 1:
        raise ValueError("encode_batch takes images of one size (batching.encode groups them)")
    size = images[0].shape[:2]
    container.check_size(*size)  # refuse before refining what the decoder would refuse
    device = torch.device(device)
    refines = config.refines or keep_history
    check_memory(model, len(images), *size, device, config.tile_size if not refines else None, config)
    try:
        if not refines:  # the analysis alone, tile by tile on the CPU: no whole image in float
            grid = Grid(*size, config.tile_size)
            has_means = LatentModel(model.net).has_means
            with isolate.single_thread(), tile_pool(memory.workers_for(synthesis_channels(model.net), grid)) as pool:
                latents = [tiled.analyse(model.net, image, grid, has_means, pool) for image in images]
            y0, z0 = (torch.cat([pair[k] for pair in latents]) for k in (0, 1))
        else:  # the images in float on the device, for the loss; their analysis in tiles there
            latent_model = network or device_model(model, device, config.channels_last)
            x = pad(torch.cat([to_tensor(image) for image in images])).to(device)
            with torch.no_grad():
                y0, z0 = tiled.analyse(latent_model.net, x, Grid(*size, config.tile_size), latent_model.has_means)
        if refines:
            result = refine_latents(latent_model, x, size, lmbda, config, y0, z0, on_step=on_step,
                                    keep_history=keep_history, on_tile=on_step)
            y, z, iterations, seconds, histories = (result.y, result.z, result.iterations, result.seconds,
                                                    result.history)
        else:  # nothing to refine: the encoder's latents, measured on their real bytes below (refine_latents()
            # would first evaluate their loss with another g_s pass, for nothing)
            y, z, iterations, seconds, histories = y0, z0, 0, 0.0, []
    except (RuntimeError, MemoryError) as exc:
        if isinstance(exc, torch.cuda.OutOfMemoryError) or not isolate.is_allocation_failure(exc):
            raise  # batching.py halves the batch on a GPU out-of-memory error
        raise ResourceError(f"not enough memory to encode {size[1]}x{size[0]} "
                            f"({len(images)} image(s)): an allocation failed") from None
    coded = code_latents(model, y, z, size, tile=config.tile_size)
    base = coded if not config.refines else code_latents(model, y0, z0, size, tile=config.tile_size)
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


