"""The lambda search behind encoding to a target, on one model (docs/method.md, "Encoding to a
target"; the whole procedure: targets.py).

``Axis`` is where files are measured: position = ln(bytes) for a rate ceiling, PSNR in dB for a floor,
with the target's band and the goal inside it. ``Search`` holds one model's chain of refinements
(``Candidate``), aims lambda from a model of how refinement moves position, and codes candidates into
real files. ``run_search`` runs the chain of probes and then the corrections; ``choose`` picks the
best coded candidate.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .. import metrics
from ..config import RefineConfig, SearchConfig, Target, eval_every_for
from ..errors import ModelError
from ..models.loaded import LoadedModel
from ..network.grid import Grid
from ..refinement.loop import refine_latents, true_terms
from . import container
from .devices import DeviceNetworks
from .encoder import EncodeReport, code_latents, make_report
from .pixels import pad, to_tensor
from .tiled import analyse

# The model that aims lambda (docs/method.md, "Encoding to a target"): refining at ln(lambda) = x moves
# u, the position on the axis (ln rate, or PSNR in dB), towards u_eq(x) = c + SLOPE * x, closing the
# gap by exp(-a n) in n steps, a = RATE_PER_LR * lr; c is fitted to each image as the search goes.
# Measured on a 256x256 Kodak crop with msh-q2 (lr 0.005): 200 steps at lambda / 4 took the rate 20%
# below those at the training lambda and PSNR 1.2 dB (0.27 dB up at lambda x 4); the gap closed
# about 27% in the first 30 of those steps.
SLOPE = {"rate": 0.16, "psnr": 0.5}
RATE_PER_LR = 2.0
MAX_STEP = math.log(2.0)  # the most ln(lambda) moves in one step
FIT = 3  # refinements c is fitted to (the mean of their fits: one alone is noisy)
# How far past the band (ln rate, or dB) a chain pinned at the end of its span must be predicted to
# end for the search to leave that model early (Search.beyond_reach): a margin for the aim's model
BEYOND = {"rate": math.log(1.1), "psnr": 0.5}

@dataclass
class Candidate:
    """One refinement of the search: its lambda, latents, predicted value, and its file once coded."""

    lmbda: float
    y: torch.Tensor
    z: torch.Tensor
    position: float  # position on the target's axis, ln(bytes) or PSNR: predicted, then the real file's
    bits: float  # the true loss's estimate: bits and MSE
    mse: float
    iterations: int  # refinement steps behind these latents, along the warm-start chain
    kind: str  # probe | correction | unrefined
    position_start: float = math.nan  # position of the latents it started from, and its own steps
    steps: int = 0
    adam: dict | None = None  # the optimiser's state, which a refinement continuing it takes on
    report: EncodeReport | None = None


class Axis:
    """The target's axis: position = ln(bytes) for a rate, PSNR in dB for quality; the goal, the band."""

    def __init__(self, target: Target, pixels: int, search: SearchConfig):
        self.target, self.pixels, self.rate = target, pixels, target.ceiling
        if self.rate:
            limit = target.value * pixels / 8 if target.kind == "bpp" else target.value  # bytes
            self.hi = math.log(limit)
            self.lo = self.hi + math.log(1 - search.rate_tolerance)
            self.goal = self.hi + math.log(1 - search.rate_tolerance / 3)
        else:
            self.lo, self.hi = target.value, target.value + search.psnr_tolerance
            self.goal = target.value + search.psnr_tolerance / 3
        self.key = "rate" if self.rate else "psnr"

    def predict(self, bits: float, mse: float, offset: float) -> float:
        """u from the true loss's estimate: bits plus the real file's overhead, or PSNR plus offset."""
        return math.log(max(bits + offset, 8.0) / 8) if self.rate else metrics.psnr_from_mse(mse) + offset

    def real(self, report: EncodeReport) -> float:
        return math.log(len(report.data)) if self.rate else report.psnr

    def achieved(self, report: EncodeReport) -> float:
        return {"bpp": report.bpp, "size": float(len(report.data)), "psnr": report.psnr}[self.target.kind]

    def meets(self, report: EncodeReport) -> bool:
        return self.real(report) <= self.hi if self.rate else self.real(report) >= self.lo

    def within(self, report: EncodeReport) -> bool:
        return self.lo <= self.real(report) <= self.hi

    def side(self, report: EncodeReport) -> int:
        """+1 above the band, -1 below it, 0 within it."""
        return (self.real(report) > self.hi) - (self.real(report) < self.lo)


class Search:
    """The search on one model: the image on the device, the chain of candidates."""

    def __init__(self, model: LoadedModel, image: np.ndarray, axis: Axis, config: RefineConfig,
                 search: SearchConfig, device: torch.device, on_step, networks: DeviceNetworks | None = None,
                 unrefined: dict | None = None):
        if model.lmbda is None:
            raise ModelError("the model's training lambda is unknown, and a target's search starts from it "
                             "(a checkpoint names it in its metadata, 'lmbda')")
        if model.identity.metric != "mse" and config.refines:
            raise ModelError("refinement optimises lambda * 255^2 * MSE + bpp; ms-ssim models are "
                             "supported with --method none only")
        container.check_size(*image.shape[:2])
        self.model, self.image, self.axis, self.search = model, image, axis, search
        # the paper's schedule: a chain continues it, and aim() assumes its constant step size
        self.config = config.with_(eval_every=config.eval_every or eval_every_for(device.type), schedule="paper")
        self.latent_model = (networks or DeviceNetworks()).get(model, device, config.channels_last)
        self.size = image.shape[:2]
        self.image_tensor = pad(to_tensor(image)).to(device)
        self.on_step = on_step
        self.refinements = self.iterations = 0
        self.lmbda0 = model.resolve_lmbda(None)
        span = math.log(search.lambda_span)
        self.bounds = (math.log(self.lmbda0) - span, math.log(self.lmbda0) + span)
        # the encoder's latents and their coded file: choose_model's (``unrefined``), else made here
        self.y0, self.z0, self.base_coded = unrefined_coding(unrefined, model, self.latent_model,
                                                             self.image_tensor, self.size, config.tile_size)
        base = true_terms(self.latent_model, self.image_tensor, self.size, self.y0, self.z0, self.lmbda0,
                          config)
        self.base_bits = float(base.bpp[0]) * axis.pixels
        self.base_mse = float(base.mse[0])
        self.offset = 0.0  # real minus estimated: bits of a rate, dB of PSNR
        self.candidates: list[Candidate] = []

    def unrefined_position(self) -> float:
        return self.axis.predict(self.base_bits, self.base_mse, self.offset)

    def code(self, y, z) -> tuple[bytes, np.ndarray]:
        return code_latents(self.model, y, z, self.size, tile=self.config.tile_size)[0]

    def calibrate(self) -> None:
        """The encoder's latents' file: the real file's overhead over the estimate, and the base report."""
        data, rgb = self.base_coded
        if self.axis.rate:
            self.offset = 8 * len(data) - self.base_bits
        else:
            self.offset = metrics.psnr(self.image, rgb) - metrics.psnr_from_mse(self.base_mse)

    def unrefined(self) -> Candidate:
        """The encoder's own latents as a candidate, coded (a file that may meet the target too)."""
        c = Candidate(self.lmbda0, self.y0, self.z0, self.unrefined_position(), self.base_bits, self.base_mse, 0,
                      "unrefined")
        c.report = make_report(self.image, "none", self.lmbda0, self.base_coded, self.base_coded, 0, 0.0)
        c.position = self.axis.real(c.report)
        self.candidates.append(c)
        return c

    def nearest_goal(self, terms) -> torch.Tensor:
        """An iterate's score for refine(select=...): inside the band's inner two thirds (by the
        estimate and the latest real file's offset), the axis's preference (MSE under a rate
        ceiling, bits over a PSNR floor), and past it the distance to the goal plus 1e9, so that any
        iterate inside beats any outside. From one state a correction's best-loss iterate jumped over
        the 3% band between all but equal lambdas (kodim05's 256x256 crop at 0.5 bpp)."""
        axis, bits = self.axis, terms.bpp * self.axis.pixels
        if axis.rate:
            position, preference = torch.log((bits + self.offset).clamp(min=8.0) / 8), terms.mse
        else:
            position, preference = metrics.psnr_from_mse(terms.mse) + self.offset, bits
        margin = (axis.hi - axis.lo) / 6
        inside = (position >= axis.lo + margin) & (position <= axis.hi - margin)
        return torch.where(inside, preference, 1e9 + (position - axis.goal).abs())

    def refine(self, lmbda: float, iterations: int, start: Candidate | None, kind: str,
               select: Callable | None = None) -> Candidate:
        y, z = (self.y0, self.z0) if start is None else (start.y, start.z)
        done = self.iterations

        def on_step(step):
            if self.on_step is not None:
                self.on_step(done + step)

        at = start.iterations if start is not None else 0  # the chain continues schedule, noise and Adam
        result = refine_latents(self.latent_model, self.image_tensor, self.size, lmbda,
                        self.config.with_(iterations=iterations, lmbda=lmbda, seed=self.config.seed + at),
                        y, z, on_step=on_step, start_step=at,
                        adam=copy.deepcopy(start.adam) if start is not None and start.adam else None,
                        select=select)
        self.refinements += 1
        self.iterations += result.iterations
        bits, mse = float(result.best.bpp[0]) * self.axis.pixels, float(result.best.mse[0])
        chain = (start.iterations if start is not None else 0) + result.iterations
        begin = start.position if start is not None else self.unrefined_position()
        candidate = Candidate(lmbda, result.y, result.z, self.axis.predict(bits, mse, self.offset), bits, mse,
                              chain, kind, begin, result.iterations, result.adam)
        self.candidates.append(candidate)
        return candidate

    def finish(self, candidate: Candidate, seconds: float) -> Candidate:
        """Code a candidate into its file; the estimate's offset follows the latest real file."""
        coded = self.code(candidate.y, candidate.z)
        candidate.report = make_report(self.image, self.config.method, candidate.lmbda, coded, self.base_coded,
                                       candidate.iterations, seconds)
        candidate.position = self.axis.real(candidate.report)
        self.offset = (8 * len(coded[0]) - candidate.bits if self.axis.rate
                       else candidate.report.psnr - metrics.psnr_from_mse(candidate.mse))
        return candidate

    def balance(self) -> float:
        """c of the aim's model (u_eq = c + slope x), fitted to the last few refinements: from how
        far each moved in its steps, u_eq at its lambda; the mean of their c = u_eq - slope x."""
        slope, rate = SLOPE[self.axis.key], RATE_PER_LR * self.config.lr
        fits = []
        for c in [c for c in self.candidates if c.steps][-FIT:]:
            e = math.exp(-rate * c.steps)
            fits.append((c.position - c.position_start * e) / (1 - e) - slope * math.log(c.lmbda))
        return sum(fits) / len(fits) if fits else math.nan

    def aim(self, position: float, remaining: int, start: Candidate | None = None, max_step: float = MAX_STEP) -> float:
        """The ln(lambda) at which ``remaining`` steps from u end at the goal, by the model above
        with c fitted to the last few refinements; within ``max_step`` of the lambda of ``start`` (by
        default the last refinement's) and within the span."""
        slope, rate = SLOPE[self.axis.key], RATE_PER_LR * self.config.lr
        seen = [c for c in self.candidates if c.steps]
        x_last = math.log(start.lmbda if start else seen[-1].lmbda if seen else self.lmbda0)
        # nothing seen yet: the encoder's latents are taken to be at balance at the training lambda
        c = self.balance() if seen else position - slope * x_last
        e = math.exp(-rate * max(remaining, 1))
        wanted = (self.axis.goal - position * e) / (1 - e)  # the u_eq that ends at the goal
        new = x_last + max(-max_step, min(max_step, (wanted - c) / slope - x_last))
        return max(self.bounds[0], min(self.bounds[1], new))

    def beyond_reach(self, last: Candidate, remaining: int, leave: tuple[int, ...] = (0, 1)) -> bool:
        """Whether the chain cannot reach the band: its last two probes sat at the same end of the
        span (of those in ``leave``: 0 the low end, 1 the high one), and the aim's model, run on at
        that end for the ``remaining`` steps, ends past the band by more than BEYOND (u rises with
        lambda on both axes). On kodim05's 256x256 crop with msh-q2 at lambda / 8 it predicted
        0.66 bpp at step 200 from step 100; the chain ended at 0.657."""
        probes = [c for c in self.candidates if c.kind == "probe"][-2:]
        ends = [self.bounds[i] for i in leave
                if all(abs(math.log(c.lmbda) - self.bounds[i]) < 1e-9 for c in probes)]
        if len(probes) < 2 or not ends:
            return False
        e = math.exp(-RATE_PER_LR * self.config.lr * remaining)
        u_eq = self.balance() + SLOPE[self.axis.key] * ends[0]
        u_end = u_eq + (last.position - u_eq) * e
        margin = BEYOND[self.axis.key]
        return u_end > self.axis.hi + margin if ends[0] == self.bounds[0] else u_end < self.axis.lo - margin


def run_search(run: Search, start: float, leave: tuple[int, ...] = ()) -> Candidate:
    """The chain of probes, then corrections; returns the chosen coded candidate. ``leave``: the
    ends of the span (0 low, 1 high) past which another rate point is there to try, so that a chain
    pinned at one and predicted to miss stops early (Search.beyond_reach)."""
    axis, search, config = run.axis, run.search, run.config
    if not config.refines:  # no refinement: the model's own latents are the only candidate
        return run.unrefined()
    k = min(search.probes_for(config.iterations), config.iterations)
    position, last = run.unrefined_position(), None
    while last is None or last.iterations < config.iterations:
        done = last.iterations if last else 0
        log_lmbda = run.aim(position, config.iterations - done)
        last = run.refine(math.exp(log_lmbda), min(k, config.iterations - done), last, "probe")
        position = last.position
        if leave and last.iterations < config.iterations and \
                run.beyond_reach(last, config.iterations - last.iterations, leave):
            break  # this model cannot reach the target: the next rate point's search can
    coded, unrefined = [run.finish(last, time.perf_counter() - start)], run.unrefined()
    if last.iterations < config.iterations:
        return choose(axis, coded + [unrefined])
    # Corrections all continue the chain's end (``origin``): from one state, a short refinement's
    # file grows with lambda, so once one file lies below the band and another above it, lambda is
    # bisected between theirs (in ln lambda); before that, the aim sets the first and each next one
    # moves a factor 2 on.
    origin, corrections, tried = last, [], set()
    for attempt in range(2 * search.max_corrections):
        best = choose(axis, coded)
        below = [log_lmbda for log_lmbda, c in corrections if axis.side(c.report) < 0]
        above = [log_lmbda for log_lmbda, c in corrections if axis.side(c.report) > 0]
        bracketed = bool(below and above) and max(below) < min(above)
        if axis.within(best.report) or attempt >= search.max_corrections and not bracketed and (
                axis.meets(best.report) or axis.meets(unrefined.report)):
            break  # within the band; or, past the budget, a file meets it and lambda is not being
            # bisected (more only while none meets or the bisection runs)
        if bracketed:
            log_lmbda = (max(below) + min(above)) / 2
        elif corrections:
            log_lmbda_prev, c_prev = corrections[-1]
            log_lmbda = max(run.bounds[0], min(run.bounds[1], log_lmbda_prev - axis.side(c_prev.report) * MAX_STEP))
        else:
            log_lmbda = run.aim(origin.position, k, origin)
        if round(log_lmbda, 9) in tried:
            break  # at the end of the span, or the bracket closed
        tried.add(round(log_lmbda, 9))
        correction = run.refine(math.exp(log_lmbda), k, origin, "correction", run.nearest_goal)
        corrections.append((log_lmbda, run.finish(correction, time.perf_counter() - start)))
        coded.append(corrections[-1][1])
    return choose(axis, coded + [unrefined])


def choose(axis: Axis, coded: list[Candidate]) -> Candidate:
    """The best coded candidate: among those meeting the target, the highest PSNR under a rate
    ceiling or the fewest bytes over a PSNR floor; when none meets it, the nearest."""
    meeting = [c for c in coded if axis.meets(c.report)]
    if meeting:
        if axis.rate:
            return max(meeting, key=lambda c: (c.report.psnr, -len(c.report.data)))
        return min(meeting, key=lambda c: (len(c.report.data), -c.report.psnr))
    return min(coded, key=lambda c: len(c.report.data)) if axis.rate else max(coded, key=lambda c: c.report.psnr)


def unrefined_coding(cache: dict | None, model: LoadedModel, latent_model, x: torch.Tensor, size,
                     tile: int) -> tuple:
    """(y, z, (file bytes, decoded pixels)) of the encoder's own latents, made once per model in
    ``cache`` (when given) per model and device copy: the model choice and that model's search
    share them."""
    key = (id(model.net), id(latent_model))
    if cache is not None and key in cache:
        return cache[key]
    with torch.no_grad():
        y, z = analyse(latent_model.net, x, Grid(*size, tile), latent_model.has_means)
    entry = (y, z, code_latents(model, y, z, size, tile=tile)[0])
    if cache is not None:
        cache[key] = entry
    return entry


