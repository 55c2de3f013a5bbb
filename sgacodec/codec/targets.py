"""Encoding to a target: a rate ceiling (bpp, or bytes) or a PSNR floor, met by the real file
(docs/method.md, "Encoding to a target").

    from sgacodec.config import RefineConfig, Target
    from sgacodec.models import load_family
    result = encode_to_target(load_family(), image, Target("bpp", 0.3), RefineConfig(iterations=200))
    result.report.data        # the file: at most 0.3 bpp, header included
    result.achieved, result.model, result.lmbda, result.refinements, result.iterations

1. The model: the family's rate point whose unrefined rate (log scale) or PSNR is nearest the
   target (a binary search; members are loaded on first use).
2. Lambda: the refinement runs as a chain of short refinements (probes), each warm-started from
   the previous one's latents and continuing its temperature schedule (the paper's: the budget
   schedule plans one whole run), until the chain has run the
   full iteration count; after each probe lambda is re-aimed by a secant step in (log lambda,
   log rate) or (log lambda, PSNR). A single refinement at a fixed lambda cannot be bracketed from
   short ones: Adam moves the latents about ``lr`` per step whatever lambda is, so the rate keeps
   drifting for hundreds of steps (measured on a Kodak crop: +5% in 200 steps at the training
   lambda, -20% at lambda / 4, of which only a quarter in the first 30 steps). Re-aiming along the
   chain steers where the latents end up.
3. The real file is coded and checked; while it misses the target's band, short corrections
   (each continuing the chain's end) are coded and checked too, lambda bisected once files lie on
   both sides of the band; a correction keeps its iterate predicted inside the band
   (``Search.nearest_goal``), not the one of lowest loss at its lambda.

The file returned is the best coded candidate that meets the target (a rate ceiling: the highest
PSNR at or under it; a PSNR floor: the fewest bytes at or above it). A rate ceiling is exceeded
only when no lambda within the model's span meets it, and then the result says so (out of reach).

This module chooses the model and says where the target lies (``reach``); target_search.py runs
the lambda search on one model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .. import metrics
from ..config import TILE_SIZE, RefineConfig, SearchConfig, Target
from ..models.family import ModelFamily
from ..models.loaded import LoadedModel
from .devices import DeviceNetworks
from .encoder import EncodeReport
from .pixels import pad, to_tensor
from .target_search import Axis, Candidate, Search, choose, run_search, unrefined_coding

REACH = ("in range", "below range", "above range", "between rate points")

@dataclass
class TargetResult:
    """What encoding to a target achieved (every figure measured on the real file)."""

    target: Target
    achieved: float  # on the target's axis: bpp, bytes or dB
    met: bool  # the file respects the ceiling or floor
    within: bool  # ... and lies within the tolerance of it
    reach: str  # one of REACH: whether the target lies within what the family reaches
    model: str
    model_sha: str  # the chosen model's weights (first 8 bytes of the sha256, hex)
    quality: int
    lmbda: float
    refinements: int  # refinement runs spent, probes and corrections included
    iterations: int  # refinement steps spent in all
    seconds: float
    report: EncodeReport
    tried: list[str] = field(default_factory=list)  # the models searched

    @property
    def status(self) -> str:
        """'met', or what was achieved instead and why, in words."""
        if self.met and self.within:
            return "met"
        if self.reach == "in range":
            return f"{'met' if self.met else 'missed'} but not within the tolerance (search budget spent)"
        what = "rate" if self.target.ceiling else "PSNR"
        side = {"below range": f"below the lowest {what} this model family reaches",
                "above range": f"above the highest {what} this model family reaches",
                "between rate points": "between what neighbouring rate points reach"}[self.reach]
        return f"out of reach ({side}; achieved {self.target.describe(self.achieved)} with {self.model})"

    @property
    def reached(self) -> bool:
        return self.met and self.within

    def record(self) -> dict:
        """A JSON-ready summary of the search (the file's own record is report.record())."""
        return {"target": {"kind": self.target.kind, "value": self.target.value}, "achieved": self.achieved,
                "met": self.met, "within": self.within, "reach": self.reach, "status": self.status,
                "model": self.model, "model_sha": self.model_sha, "quality": self.quality, "lmbda": self.lmbda,
                "refinements": self.refinements, "search_iterations": self.iterations,
                "search_seconds": self.seconds, "models_tried": self.tried}


def choose_model(family: ModelFamily, image: np.ndarray, target: Target, device="cpu",
                 networks: DeviceNetworks | None = None, unrefined: dict | None = None,
                 tile: int = TILE_SIZE) -> int:
    """The index of the family's rate point whose unrefined file's rate (log scale) or PSNR is
    nearest the target: a binary search over the family, which is ordered by rate. The files are
    coded, header included: on a small image the header is a good share of the rate, and the
    estimate without it chose the rate point above a target that the one below reached
    (kodim05's 256x256 crop at 0.5 bpp). ``networks``: as encode_to_target's; ``unrefined``: a dict
    that keeps each model's unrefined latents and file for the search (target_search.unrefined_coding)."""
    if len(family) == 1:
        return 0
    axis = Axis(target, image.shape[0] * image.shape[1], SearchConfig())
    device = torch.device(device)
    networks = DeviceNetworks() if networks is None else networks
    cache: dict[int, float] = {}
    image_tensor = pad(to_tensor(image)).to(device)

    def position(i):
        if i not in cache:
            model = family[i]
            latent_model = networks.get(model, device)
            _, _, (data, rgb) = unrefined_coding(unrefined, model, latent_model, image_tensor, image.shape[:2], tile)
            cache[i] = math.log(len(data)) if axis.rate else metrics.psnr(image, rgb)
        return cache[i]

    lo, hi = 0, len(family) - 1  # the first member at or above the goal, by bisection
    if position(hi) <= axis.goal:
        return hi
    if position(lo) >= axis.goal:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if position(mid) < axis.goal else (lo, mid)
    return lo if axis.goal - position(lo) < position(hi) - axis.goal else hi


def encode_to_target(family: ModelFamily | LoadedModel, image: np.ndarray, target: Target,
                     config: RefineConfig = RefineConfig(), device="cpu", search: SearchConfig = SearchConfig(),
                     on_step: Callable[[int], None] | None = None,
                     networks: DeviceNetworks | None = None) -> TargetResult:
    """Encode one RGB uint8 image so that its file meets ``target`` (see the module's docstring).

    ``family``: the rate points to choose from (models.load_family), or one model (lambda only).
    ``config``: the refinement (its ``lmbda`` is ignored: lambda is what is searched).
    ``on_step(n)``: refinement steps done so far in this search. ``networks``: keeps the
    models' copies on the device between searches (batching.encode_sources_to_target passes
    one for all its inputs); without it each search makes its own."""
    if isinstance(family, LoadedModel):
        family = ModelFamily.single(family)
    device = torch.device(device)
    start = time.perf_counter()
    axis = Axis(target, image.shape[0] * image.shape[1], search)
    networks = DeviceNetworks() if networks is None else networks  # one copy per model, in this search
    unrefined: dict = {}  # each model's unrefined latents and file, coded once for this image
    index = choose_model(family, image, target, device, networks, unrefined, config.tile_size)
    tried, runs, reaches, done = [], [], set(), 0
    while True:
        run = Search(family[index], image, axis, config, search, device,
                   None if on_step is None else (lambda n, d=done: on_step(d + n)), networks, unrefined)
        run.calibrate()
        best = run_search(run, start, tuple(end for end, nxt in ((0, index - 1), (1, index + 1))
                                         if 0 <= nxt < len(family) and nxt not in tried))
        runs.append(run)
        tried.append(index)
        done += run.iterations
        reach = _reach(run, best, axis)
        reaches.add(reach)
        # out of this model's reach: the neighbouring rate point, unless already tried
        nxt = index - 1 if reach == "below range" else index + 1 if reach == "above range" else None
        if nxt is None or not 0 <= nxt < len(family) or nxt in tried:
            break
        index = nxt
    run, best = min(((r, choose(axis, [c for c in r.candidates if c.report])) for r in runs),
                    key=lambda rb: _rank(axis, rb[1]))
    reach = _reach(run, best, axis)  # another model's search found the target in its range, or
    # one rate point fell short above the target and another below
    if reach != "in range":
        reach = "in range" if "in range" in reaches else \
            "between rate points" if {"below range", "above range"} <= reaches else reach
    report, ident = best.report, run.model.identity
    report.seconds = time.perf_counter() - start
    return TargetResult(target, axis.achieved(report), axis.meets(report), axis.within(report), reach,
                        run.model.describe(), ident.weights_sha.hex(), ident.quality, best.lmbda,
                        sum(r.refinements for r in runs), sum(r.iterations for r in runs), report.seconds,
                        report, [family.names[i] for i in tried])


def _reach(run: Search, best: Candidate, axis: Axis) -> str:
    """Where the target lies for this model: in range, or beyond its lambda span's reach."""
    if axis.within(best.report):
        return "in range"
    position, refines = axis.real(best.report), run.config.refines
    files = [axis.real(c.report) for c in run.candidates if c.report is not None]
    if any(v < axis.lo for v in files) and any(v > axis.hi for v in files):
        return "in range"  # files on both sides of the band: reachable, missed
    tried = [math.log(c.lmbda) for c in run.candidates if c.steps]
    if position > axis.hi and (not refines or any(abs(log_lmbda - run.bounds[0]) < 1e-9 for log_lmbda in tried)):
        return "below range"
    if position < axis.lo and (not refines or any(abs(log_lmbda - run.bounds[1]) < 1e-9 for log_lmbda in tried)):
        return "above range"
    return "in range"


def _rank(axis: Axis, c: Candidate) -> tuple:
    """Order of preference among the models' results: within the band, meeting, then nearest."""
    report = c.report
    closeness = -abs(axis.real(report) - axis.goal)
    quality = report.psnr if axis.rate else -len(report.data)
    return (not axis.within(report), not axis.meets(report), -quality if axis.meets(report) else -closeness)

