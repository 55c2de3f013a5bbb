"""Encoding many images with one model: the orchestration that ``sgacodec encode``, the evaluation
runner and library users share.

    encoder = BatchEncoder(model, RefineConfig(iterations=500), device="auto")
    for outcome in encoder.encode_sources(["a.png", "b.png"], read=read_image):   # input order
        print(outcome.source, outcome.report.bpp if outcome.report else outcome.error)

- Same-size images are refined together, ``batch_size`` at a time; ``batch_size=None`` (auto) is
  one image per batch on a CPU and, on a GPU, as many as fit in ``AUTO_BATCH_MEGAPIXELS``.
- Inputs are read a window at a time (bounded memory), ``window_size`` inputs ahead.
- A batch that runs out of GPU memory is halved; a single image that still does not fit is
  refined on the CPU instead (``on_note`` says so).
- Each input gets an ``Outcome``: its report, or the error that stopped it (the others go on).
- ``encode_sources_to_target``: each input encoded to a target (targets.py), one search per image.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..config import (
    AUTO_BATCH_MEGAPIXELS,
    AUTO_WINDOW,
    CPU_MIN_ITERATIONS,
    PROBE_MEGAPIXELS,
    WINDOW_PER_BATCH,
    RefineConfig,
    SearchConfig,
    Target,
    eval_every_for,
)
from ..errors import one_line
from ..models.family import ModelFamily
from ..models.loaded import LoadedModel
from ..refinement.loop import refine_latents
from .devices import DeviceNetworks, resolve_device
from .encoder import EncodeReport, check_memory, encode_batch
from .pixels import pad, to_tensor
from .targets import TargetResult, encode_to_target

# progress(description, total) -> a context manager that yields on_step(step)
Progress = Callable[[str, int], ContextManager[Callable[[int], None] | None]]


def no_progress(description: str, total: int) -> ContextManager[None]:
    return contextlib.nullcontext(None)


def batches_by_size(images: Sequence[np.ndarray], batch_size: int | None) -> list[list[int]]:
    """Indices grouped by image size, in input order, at most ``batch_size`` per group (None: as
    many as fit in AUTO_BATCH_MEGAPIXELS)."""
    groups: dict[tuple, list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.shape[:2], []).append(i)
    out = []
    for (h, w), g in groups.items():
        n = batch_size or max(1, int(AUTO_BATCH_MEGAPIXELS * 1e6 // (h * w)))
        out += [g[k : k + n] for k in range(0, len(g), n)]
    return sorted(out)


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


@dataclass
class Outcome:
    """What became of one input: its report, or the error that stopped it."""

    index: int
    source: object
    report: EncodeReport | None = None
    error: BaseException | None = None
    image: np.ndarray | None = None  # the pixels read (None when reading failed)


class BatchEncoder:
    """Encodes images with one model on one device: size batches, OOM halving, CPU fallback."""

    def __init__(self, model: LoadedModel, config: RefineConfig = RefineConfig(),
                 device: str | torch.device = "auto", batch_size: int | None = None,
                 on_note: Callable[[str], None] | None = None):
        self.model = model
        self.device = resolve_device(device)
        self.config = config
        self.auto_batch = batch_size is None
        self.batch_size = batch_size if batch_size is not None else (
            None if self.device.type == "cuda" else 1)
        self.on_note = on_note or (lambda text: None)
        self.networks = DeviceNetworks()
        self.budget_rule = False  # refine large images only when the time budget affords it (worth_refining)
        self._per_iteration: dict = {}

    @property
    def network(self):
        """The network on the device (made once): the model itself on the CPU, a copy elsewhere."""
        return self.networks.get(self.model, self.device, self.config.channels_last)

    def window_size(self) -> int:
        return AUTO_WINDOW if self.batch_size is None else self.batch_size * WINDOW_PER_BATCH

    def config_for(self, config: RefineConfig | None = None) -> RefineConfig:
        """``config`` (default: the encoder's) with the model's lambda and the device's eval_every
        filled in where they are left open."""
        config = config or self.config
        changes = {"lmbda": self.model.resolve_lmbda(config.lmbda)}
        if config.eval_every is None:
            changes["eval_every"] = eval_every_for(self.device.type)
        return config.with_(**changes)

    def encode_group(self, images: list[np.ndarray], config: RefineConfig | None = None,
                     on_step: Callable[[int], None] | None = None,
                     keep_history: bool = False) -> list[EncodeReport]:
        """Same-size images as one batch, halved while the GPU runs out of memory; an image that
        does not fit even alone is refined on the CPU."""
        config = self.worth_refining(self.config_for(config), images[0])

        def run(part: list[int]) -> list[EncodeReport]:
            return encode_batch(self.model, [images[i] for i in part], config, self.device, on_step,
                                keep_history, self.network)

        try:
            return halving_on_oom(run, list(range(len(images))))
        except torch.cuda.OutOfMemoryError as exc:
            self.on_note(f"GPU out of memory ({one_line(exc, 120, typed=False)}); refining on the CPU instead "
                         "(slower)")
            torch.cuda.empty_cache()
            return encode_batch(self.model, images, config, torch.device("cpu"), on_step, keep_history)

    def batches(self, images: Sequence[np.ndarray]) -> list[list[int]]:
        return batches_by_size(images, self.batch_size)

    def encode(self, images: Sequence[np.ndarray], on_step=None, keep_history: bool = False,
               progress: Progress = no_progress) -> list[EncodeReport]:
        """Reports for ``images`` in input order (errors propagate)."""
        reports: list[EncodeReport | None] = [None] * len(images)
        for group in self.batches(images):
            with progress(f"encode {len(group)} image(s)", self.steps_per_batch()) as bar:
                got = self.encode_group([images[i] for i in group], None, on_step or bar, keep_history)
            for i, report in zip(group, got):
                reports[i] = report
        return reports

    def steps_per_batch(self, config: RefineConfig | None = None) -> int:
        config = config or self.config
        return config.iterations if config.refines else 1

    def encode_sources(self, sources: Sequence, read: Callable[[object], np.ndarray],
                       progress: Progress = no_progress, errors: tuple = (Exception,),
                       name: Callable[[object], str] = str) -> Iterator[Outcome]:
        """One Outcome per source, in input order: sources are read ``window_size()`` at a time
        with ``read``; an error in ``errors`` while reading or encoding becomes that input's
        outcome, and the others carry on."""
        step = self.window_size()
        for begin in range(0, len(sources), step):
            outcomes = {i: Outcome(i, sources[i]) for i in range(begin, min(begin + step, len(sources)))}
            for outcome in outcomes.values():
                try:
                    outcome.image = read(outcome.source)
                except errors as exc:
                    outcome.error = exc
            readable = [outcome for outcome in outcomes.values() if outcome.error is None]
            for group in self.batches([outcome.image for outcome in readable]):
                members = [readable[j] for j in group]
                more = f" (+{len(members) - 1} more)" if len(members) > 1 else ""
                try:
                    with progress(f"encode {name(members[0].source)}{more}", self.steps_per_batch()) as bar:
                        got = self.encode_group([member.image for member in members], on_step=bar)
                except errors as exc:
                    for member in members:
                        member.error = exc
                    continue
                for member, report in zip(members, got):
                    member.report = report
            yield from outcomes.values()

    def worth_refining(self, config: RefineConfig, image: np.ndarray) -> RefineConfig:
        """``config``, or the same without refinement when ``budget_rule`` is on, the image is at
        least PROBE_MEGAPIXELS, and its time budget affords fewer than CPU_MIN_ITERATIONS steps on
        this device (said through ``on_note``): a large photo on a CPU, where a minute buys one or
        two steps, gets its unrefined file at once rather than a minute's wait for nothing."""
        if not (self.budget_rule and config.refines and config.time_budget is not None):
            return config
        height, width = image.shape[:2]
        if height * width < PROBE_MEGAPIXELS * 1e6:
            return config
        key = (height, width)
        if key not in self._per_iteration:
            self._per_iteration[key] = self.estimate_seconds(image, [1], config)[1]
        per_iteration = self._per_iteration[key]
        affordable = int(config.time_budget / per_iteration)
        if affordable >= CPU_MIN_ITERATIONS:
            return config
        self.on_note(f"a {width}x{height} image refines at about {per_iteration:.0f} s per iteration here: "
                     f"{config.time_budget:g} s affords {affordable} of the {CPU_MIN_ITERATIONS} iterations worth "
                     "running, so it is coded without refinement (--iterations N or --time-budget SECONDS "
                     "refine anyway; a GPU, --device cuda, is far faster)")
        return config.with_(method="none")

    def estimate_seconds(self, image: np.ndarray, iterations: Iterable[int],
                         config: RefineConfig | None = None, probe_steps: int = 2) -> tuple[float, float]:
        """(total seconds, seconds per iteration) to refine once per count in ``iterations``,
        timed on a short probe refinement of ``image``: an iteration costs what the probe's last
        step did (its first step carries one-off costs), and the rest of the probe's time is each
        refinement's fixed part. An image of more than PROBE_MEGAPIXELS is timed on its central
        crop of that many pixels, scaled by its pixels (refinement in tiles costs per pixel)."""
        config = self.config_for(config).with_(iterations=probe_steps, time_budget=None)
        height, width = image.shape[:2]
        side = int((PROBE_MEGAPIXELS * 1e6) ** 0.5)
        scale = 1.0
        if height * width > PROBE_MEGAPIXELS * 1e6:
            scale = height * width / (min(side, height) * min(side, width))
            top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
            image = np.ascontiguousarray(image[top : top + side, left : left + side])
        check_memory(self.model, 1, *image.shape[:2], self.device)
        latent_model = self.network
        x = pad(to_tensor(image)).to(latent_model.device)
        stamps: list[float] = []
        result = refine_latents(latent_model, x, image.shape[:2], config.lmbda, config,
                        on_step=lambda step: stamps.append(time.perf_counter()))
        if len(stamps) > 1:
            per_iteration = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        else:
            per_iteration = result.seconds / max(result.iterations, 1)
        fixed = max(result.seconds - per_iteration * result.iterations, 0.0)
        counts = [n for n in iterations if n]
        per_iteration, fixed = per_iteration * scale, fixed * scale
        return per_iteration * sum(counts) + fixed * len(counts), per_iteration


def encode(model: LoadedModel, images: Sequence[np.ndarray], config: RefineConfig = RefineConfig(),
           device: str | torch.device = "cpu", batch_size: int | None = 1,
           on_step: Callable[[int], None] | None = None, keep_history: bool = False) -> list[EncodeReport]:
    """Encode RGB uint8 images (any sizes) into sgacodec files; reports in input order.

    Same-size images are refined together, ``batch_size`` at a time (None: automatic)."""
    return BatchEncoder(model, config, device, batch_size).encode(images, on_step, keep_history)


@dataclass
class TargetOutcome:
    """What became of one input encoded to a target: its result, or the error that stopped it."""

    index: int
    source: object
    result: TargetResult | None = None
    error: BaseException | None = None


def encode_sources_to_target(family: ModelFamily, sources: list, read: Callable[[object], np.ndarray],
                             target: Target, config: RefineConfig = RefineConfig(), device="auto",
                             search: SearchConfig = SearchConfig(), progress=None, errors: tuple = (Exception,),
                             name: Callable[[object], str] = str,
                             on_note: Callable[[str], None] | None = None) -> Iterator[TargetOutcome]:
    """One TargetOutcome per source, in input order, each image with its own search; an error in
    ``errors`` becomes that input's outcome and the others carry on. On a GPU that runs out of
    memory, the image is searched on the CPU instead. ``progress``: a Progress, as above."""
    device = resolve_device(device)
    progress = progress or no_progress
    total = config.iterations + search.probes_for(config.iterations) if config.refines else 1
    networks = DeviceNetworks()  # the models' copies on the device, made once for all the inputs
    for index, source in enumerate(sources):
        outcome = TargetOutcome(index, source)
        try:
            image = read(source)
            with progress(f"{name(source)} to {target.describe()}", total) as bar:
                try:
                    outcome.result = encode_to_target(family, image, target, config, device, search, bar,
                                                      networks)
                except torch.cuda.OutOfMemoryError:
                    if device.type == "cpu":
                        raise
                    torch.cuda.empty_cache()
                    (on_note or (lambda text: None))(f"{name(source)}: GPU out of memory; searching on the CPU")
                    outcome.result = encode_to_target(family, image, target, config, "cpu", search, bar,
                                                      networks)
        except errors as exc:
            outcome.error = exc
        yield outcome
