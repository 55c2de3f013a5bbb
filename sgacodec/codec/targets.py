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
   (``_Run.nearest_goal``), not the one of lowest loss at its lambda.

The file returned is the best coded candidate that meets the target (a rate ceiling: the highest
PSNR at or under it; a PSNR floor: the fewest bytes at or above it). A rate ceiling is exceeded
only when no lambda within the model's span meets it, and then the result says so (out of reach).

The module is one idea, the search, and is longer than most because its parts (the axis, the aim,
the chain, the corrections, the model choice, the reach) are read together.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .. import metrics
from ..config import RefineConfig, SearchConfig, Target, eval_every_for
from ..models.loading import LoadedModel, ModelError, ModelFamily
from ..refinement.loop import refine, true_rd
from . import container as bitstream
from .encoder import EncodeReport, code_latents, device_model, make_report, pad, to_tensor

# The model that aims lambda (docs/method.md, "Encoding to a target"): refining at ln(lambda) = x moves
# u (ln rate, or PSNR in dB) towards u_eq(x) = c + SLOPE * x, closing the gap by exp(-a n) in n steps,
# a = RATE_PER_LR * lr; c is fitted to each image as the search goes. Measured on a 256x256 Kodak crop
# with msh-q2 (lr 0.005): 200 steps at lambda / 4 took the rate 20% below those at the training lambda
# and PSNR 1.2 dB (0.27 dB up at lambda x 4); the gap closed about 27% in the first 30 of those steps.
SLOPE = {"rate": 0.16, "psnr": 0.5}
RATE_PER_LR = 2.0
MAX_STEP = math.log(2.0)  # the most ln(lambda) moves in one step
FIT = 3  # refinements c is fitted to (the mean of their fits: one alone is noisy)
# How far past the band (ln rate, or dB) a chain pinned at the end of its span must be predicted to
# end for the search to leave that model early (_Run.beyond_reach): a margin for the aim's model
BEYOND = {"rate": math.log(1.1), "psnr": 0.5}
REACH = ("in range", "below range", "above range", "between rate points")


@dataclass
class Candidate:
    """One refinement of the search: its lambda, latents, predicted value, and its file once coded."""

    lmbda: float
    y: torch.Tensor
    z: torch.Tensor
    u: float  # position on the target's axis, ln(bytes) or PSNR: predicted, then the real file's
    bits: float  # the true loss's estimate: bits and MSE
    mse: float
    iterations: int  # refinement steps behind these latents, along the warm-start chain
    kind: str  # probe | correction | unrefined
    u_start: float = math.nan  # u of the latents it started from, and its own steps
    steps: int = 0
    adam: dict | None = None  # the optimiser's state, which a refinement continuing it takes on
    report: EncodeReport | None = None


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


class _Axis:
    """The target's axis: u = ln(bytes) for a rate, PSNR in dB for quality; the goal, the band."""

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


class _Run:
    """The search on one model: the image on the device, the chain of candidates."""

    def __init__(self, model: LoadedModel, image: np.ndarray, axis: _Axis, config: RefineConfig,
                 search: SearchConfig, device: torch.device, on_step, networks: dict | None = None,
                 unrefined: dict | None = None):
        if model.lmbda is None:
            raise ModelError("the model's training lambda is unknown, and a target's search starts from it "
                             "(a checkpoint names it in its metadata, 'lmbda')")
        if model.identity.metric != "mse" and config.refines:
            raise ModelError("refinement optimises lambda * 255^2 * MSE + bpp; ms-ssim models are "
                             "supported with --method none only")
        bitstream.check_size(*image.shape[:2])
        self.model, self.image, self.axis, self.search = model, image, axis, search
        # the paper's schedule: a chain continues it, and aim() assumes its constant step size
        self.config = config.with_(eval_every=config.eval_every or eval_every_for(device.type), schedule="paper")
        self.lm = _on_device(networks, model, device, config.channels_last)
        self.size = image.shape[:2]
        self.x = pad(to_tensor(image)).to(device)
        self.on_step = on_step
        self.refinements = self.iterations = 0
        self.lmbda0 = model.resolve_lmbda(None)
        span = math.log(search.lambda_span)
        self.bounds = (math.log(self.lmbda0) - span, math.log(self.lmbda0) + span)
        # the encoder's latents and their coded file: choose_model's (``unrefined``), else made here
        self.y0, self.z0, self.base_coded = _unrefined(unrefined, model, self.lm, self.x, self.size)
        base = true_rd(self.lm, self.x, self.size, self.y0, self.z0, self.lmbda0)
        self.base_bits = float(base.bpp[0]) * axis.pixels
        self.base_mse = float(base.mse[0])
        self.offset = 0.0  # real minus estimated: bits of a rate, dB of PSNR
        self.candidates: list[Candidate] = []

    def unrefined_u(self) -> float:
        return self.axis.predict(self.base_bits, self.base_mse, self.offset)

    def code(self, y, z) -> tuple[bytes, np.ndarray]:
        return code_latents(self.model, y, z, self.size)[0]

    def calibrate(self) -> None:
        """The encoder's latents' file: the real file's overhead over the estimate, and the base report."""
        data, rgb = self.base_coded
        if self.axis.rate:
            self.offset = 8 * len(data) - self.base_bits
        else:
            self.offset = metrics.psnr(self.image, rgb) - metrics.psnr_from_mse(self.base_mse)

    def unrefined(self) -> Candidate:
        """The encoder's own latents as a candidate, coded (a file that may meet the target too)."""
        c = Candidate(self.lmbda0, self.y0, self.z0, self.unrefined_u(), self.base_bits, self.base_mse, 0,
                      "unrefined")
        c.report = make_report(self.image, "none", self.lmbda0, self.base_coded, self.base_coded, 0, 0.0)
        c.u = self.axis.real(c.report)
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
            u, preference = torch.log((bits + self.offset).clamp(min=8.0) / 8), terms.mse
        else:
            u, preference = metrics.psnr_from_mse(terms.mse) + self.offset, bits
        margin = (axis.hi - axis.lo) / 6
        inside = (u >= axis.lo + margin) & (u <= axis.hi - margin)
        return torch.where(inside, preference, 1e9 + (u - axis.goal).abs())

    def refine(self, lmbda: float, iterations: int, start: Candidate | None, kind: str,
               select: Callable | None = None) -> Candidate:
        y, z = (self.y0, self.z0) if start is None else (start.y, start.z)
        done = self.iterations

        def on_step(step):
            if self.on_step is not None:
                self.on_step(done + step)

        at = start.iterations if start is not None else 0  # the chain continues schedule, noise and Adam
        result = refine(self.lm, self.x, self.size, lmbda,
                        self.config.with_(iterations=iterations, lmbda=lmbda, seed=self.config.seed + at),
                        y, z, on_step=on_step, start_step=at,
                        adam=copy.deepcopy(start.adam) if start is not None and start.adam else None,
                        select=select)
        self.refinements += 1
        self.iterations += result.iterations
        bits, mse = float(result.best.bpp[0]) * self.axis.pixels, float(result.best.mse[0])
        chain = (start.iterations if start is not None else 0) + result.iterations
        candidate = Candidate(lmbda, result.y, result.z, self.axis.predict(bits, mse, self.offset), bits, mse,
                              chain, kind, start.u if start is not None else self.unrefined_u(), result.iterations,
                              result.adam)
        self.candidates.append(candidate)
        return candidate

    def finish(self, candidate: Candidate, seconds: float) -> Candidate:
        """Code a candidate into its file; the estimate's offset follows the latest real file."""
        coded = self.code(candidate.y, candidate.z)
        candidate.report = make_report(self.image, self.config.method, candidate.lmbda, coded, self.base_coded,
                                       candidate.iterations, seconds)
        candidate.u = self.axis.real(candidate.report)
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
            fits.append((c.u - c.u_start * e) / (1 - e) - slope * math.log(c.lmbda))
        return sum(fits) / len(fits) if fits else math.nan

    def aim(self, u: float, remaining: int, start: Candidate | None = None, max_step: float = MAX_STEP) -> float:
        """The ln(lambda) at which ``remaining`` steps from u end at the goal, by the model above
        with c fitted to the last few refinements; within ``max_step`` of the lambda of ``start`` (by
        default the last refinement's) and within the span."""
        slope, rate = SLOPE[self.axis.key], RATE_PER_LR * self.config.lr
        seen = [c for c in self.candidates if c.steps]
        x_last = math.log(start.lmbda if start else seen[-1].lmbda if seen else self.lmbda0)
        # nothing seen yet: the encoder's latents are taken to be at balance at the training lambda
        c = self.balance() if seen else u - slope * x_last
        e = math.exp(-rate * max(remaining, 1))
        wanted = (self.axis.goal - u * e) / (1 - e)  # the u_eq that ends at the goal
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
        u_end = u_eq + (last.u - u_eq) * e
        margin = BEYOND[self.axis.key]
        return u_end > self.axis.hi + margin if ends[0] == self.bounds[0] else u_end < self.axis.lo - margin


def _search(run: _Run, start: float, leave: tuple[int, ...] = ()) -> Candidate:
    """The chain of probes, then corrections; returns the chosen coded candidate. ``leave``: the
    ends of the span (0 low, 1 high) past which another rate point is there to try, so that a chain
    pinned at one and predicted to miss stops early (_Run.beyond_reach)."""
    axis, search, config = run.axis, run.search, run.config
    if not config.refines:  # no refinement: the model's own latents are the only candidate
        return run.unrefined()
    k = min(search.probes_for(config.iterations), config.iterations)
    u, last = run.unrefined_u(), None
    while last is None or last.iterations < config.iterations:
        done = last.iterations if last else 0
        x = run.aim(u, config.iterations - done)
        last = run.refine(math.exp(x), min(k, config.iterations - done), last, "probe")
        u = last.u
        if leave and last.iterations < config.iterations and \
                run.beyond_reach(last, config.iterations - last.iterations, leave):
            break  # this model cannot reach the target: the next rate point's search can
    coded, unrefined = [run.finish(last, time.perf_counter() - start)], run.unrefined()
    if last.iterations < config.iterations:
        return _choose(axis, coded + [unrefined])
    # Corrections all continue the chain's end (``origin``): from one state, a short refinement's
    # file grows with lambda, so once one file lies below the band and another above it, lambda is
    # bisected between theirs (in ln lambda); before that, the aim sets the first and each next one
    # moves a factor 2 on.
    origin, corrections, tried = last, [], set()
    for attempt in range(2 * search.max_corrections):
        best = _choose(axis, coded)
        below = [x for x, c in corrections if axis.side(c.report) < 0]
        above = [x for x, c in corrections if axis.side(c.report) > 0]
        bracketed = bool(below and above) and max(below) < min(above)
        if axis.within(best.report) or attempt >= search.max_corrections and not bracketed and (
                axis.meets(best.report) or axis.meets(unrefined.report)):
            break  # within the band; or, past the budget, a file meets it and lambda is not being
            # bisected (more only while none meets or the bisection runs)
        if bracketed:
            x = (max(below) + min(above)) / 2
        elif corrections:
            x_prev, c_prev = corrections[-1]
            x = max(run.bounds[0], min(run.bounds[1], x_prev - axis.side(c_prev.report) * MAX_STEP))
        else:
            x = run.aim(origin.u, k, origin)
        if round(x, 9) in tried:
            break  # at the end of the span, or the bracket closed
        tried.add(round(x, 9))
        corrections.append((x, run.finish(run.refine(math.exp(x), k, origin, "correction", run.nearest_goal),
                                          time.perf_counter() - start)))
        coded.append(corrections[-1][1])
    return _choose(axis, coded + [unrefined])


def _choose(axis: _Axis, coded: list[Candidate]) -> Candidate:
    """The best coded candidate: among those meeting the target, the highest PSNR under a rate
    ceiling or the fewest bytes over a PSNR floor; when none meets it, the nearest."""
    meeting = [c for c in coded if axis.meets(c.report)]
    if meeting:
        if axis.rate:
            return max(meeting, key=lambda c: (c.report.psnr, -len(c.report.data)))
        return min(meeting, key=lambda c: (len(c.report.data), -c.report.psnr))
    return min(coded, key=lambda c: len(c.report.data)) if axis.rate else max(coded, key=lambda c: c.report.psnr)


def _on_device(networks: dict | None, model: LoadedModel, device: torch.device, channels_last=None):
    """codec.device_model, made once per model, device and layout in ``networks`` (when given)."""
    if networks is None:
        return device_model(model, device, channels_last)
    key = (id(model.net), str(device), channels_last)
    if key not in networks:
        networks[key] = device_model(model, device, channels_last)
    return networks[key]


def _unrefined(cache: dict | None, model: LoadedModel, lm, x: torch.Tensor, size) -> tuple:
    """(y, z, (file bytes, decoded pixels)) of the encoder's own latents, made once per model in
    ``cache`` (when given) per model and device copy: the model choice and that model's search
    share them."""
    key = (id(model.net), id(lm))
    if cache is not None and key in cache:
        return cache[key]
    with torch.no_grad():
        y, z = lm.analysis(x)
    entry = (y, z, code_latents(model, y, z, size)[0])
    if cache is not None:
        cache[key] = entry
    return entry


def choose_model(family: ModelFamily, image: np.ndarray, target: Target, device="cpu",
                 networks: dict | None = None, unrefined: dict | None = None) -> int:
    """The index of the family's rate point whose unrefined file's rate (log scale) or PSNR is
    nearest the target: a binary search over the family, which is ordered by rate. The files are
    coded, header included: on a small image the header is a good share of the rate, and the
    estimate without it chose the rate point above a target that the one below reached
    (kodim05's 256x256 crop at 0.5 bpp). ``networks``: as encode_to_target's; ``unrefined``: a dict
    that keeps each model's unrefined latents and file for the search (_unrefined)."""
    if len(family) == 1:
        return 0
    axis = _Axis(target, image.shape[0] * image.shape[1], SearchConfig())
    device = torch.device(device)
    cache: dict[int, float] = {}
    x = pad(to_tensor(image)).to(device)

    def u(i):
        if i not in cache:
            model = family[i]
            lm = _on_device(networks, model, device)
            _, _, (data, rgb) = _unrefined(unrefined, model, lm, x, image.shape[:2])
            cache[i] = math.log(len(data)) if axis.rate else metrics.psnr(image, rgb)
        return cache[i]

    lo, hi = 0, len(family) - 1  # the first member at or above the goal, by bisection
    if u(hi) <= axis.goal:
        return hi
    if u(lo) >= axis.goal:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if u(mid) < axis.goal else (lo, mid)
    return lo if axis.goal - u(lo) < u(hi) - axis.goal else hi


def encode_to_target(family: ModelFamily | LoadedModel, image: np.ndarray, target: Target,
                     config: RefineConfig = RefineConfig(), device="cpu", search: SearchConfig = SearchConfig(),
                     on_step: Callable[[int], None] | None = None, networks: dict | None = None) -> TargetResult:
    """Encode one RGB uint8 image so that its file meets ``target`` (see the module's docstring).

    ``family``: the rate points to choose from (models.load_family), or one model (lambda only).
    ``config``: the refinement (its ``lmbda`` is ignored: lambda is what is searched).
    ``on_step(n)``: refinement steps done so far in this search. ``networks``: a dict that keeps
    the models' copies on the device between searches (pipeline.encode_sources_to_target passes
    one for all its inputs); without it each search makes its own."""
    if isinstance(family, LoadedModel):
        family = ModelFamily.single(family)
    device = torch.device(device)
    start = time.perf_counter()
    axis = _Axis(target, image.shape[0] * image.shape[1], search)
    networks = {} if networks is None else networks  # one copy per model within this search at least
    unrefined: dict = {}  # each model's unrefined latents and file, coded once for this image
    index = choose_model(family, image, target, device, networks, unrefined)
    tried, runs, reaches, done = [], [], set(), 0
    while True:
        run = _Run(family[index], image, axis, config, search, device,
                   None if on_step is None else (lambda n, d=done: on_step(d + n)), networks, unrefined)
        run.calibrate()
        best = _search(run, start, tuple(end for end, nxt in ((0, index - 1), (1, index + 1))
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
    run, best = min(((r, _choose(axis, [c for c in r.candidates if c.report])) for r in runs),
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


def _reach(run: _Run, best: Candidate, axis: _Axis) -> str:
    """Where the target lies for this model: in range, or beyond its lambda span's reach."""
    if axis.within(best.report):
        return "in range"
    u, refines = axis.real(best.report), run.config.refines
    files = [axis.real(c.report) for c in run.candidates if c.report is not None]
    if any(v < axis.lo for v in files) and any(v > axis.hi for v in files):
        return "in range"  # files on both sides of the band: reachable, missed
    tried = [math.log(c.lmbda) for c in run.candidates if c.steps]
    if u > axis.hi and (not refines or any(abs(x - run.bounds[0]) < 1e-9 for x in tried)):
        return "below range"
    if u < axis.lo and (not refines or any(abs(x - run.bounds[1]) < 1e-9 for x in tried)):
        return "above range"
    return "in range"


def _rank(axis: _Axis, c: Candidate) -> tuple:
    """Order of preference among the models' results: within the band, meeting, then nearest."""
    report = c.report
    closeness = -abs(axis.real(report) - axis.goal)
    quality = report.psnr if axis.rate else -len(report.data)
    return (not axis.within(report), not axis.meets(report), -quality if axis.meets(report) else -closeness)

