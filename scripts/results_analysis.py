"""The analysis behind docs/results.md, as plain data; scripts/make_results.py words it into the page.

    models  = model_table()                          # the shipped models (or CHECKPOINTS)
    data    = load(DATA / "full.jsonl", models)      # the shipped models' records, one name per model
    full    = analyse_full(data, models)             # coverage, per-model tables, BD figures, targets
    reduced = analyse_reduced(data, models)          # the reduced profile's four studies and targets
    anytime = analyse_anytime(load(anytime_files(DATA, "reduced"), models), models)  # stage 9: schedules
    machines(data.records)                           # who measured them, from the records' provenance

Nothing here formats text or draws: selections, means (``sgacodec.evaluation.aggregate``), BD
figures (``bd_table``) and the records behind each figure come back as dataclasses and lists.
One module for one idea (the page's analysis), hence longer than most.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from sgacodec.config import BUDGET_KNOBS, PAPER_ITERATIONS, RefineConfig
from sgacodec.evaluation import (
    BDRow,
    Record,
    Row,
    aggregate,
    bd,
    bd_table,
    curve_name,
    curves_from_rows,
    load_records,
    rewrite_records,
)
from sgacodec.evaluation.bd import overlap, schedule_of, setting_of
from sgacodec.evaluation.classical import QUALITY_RANGE

# The full protocol's main grid (scripts/make_results.sh stage 1 on a GPU): (method, iterations).
FULL_GRID = (("none", 0), ("ssl", 500), ("ssl", 2000), ("atanh", 500), ("atanh", 2000))
OTHER_METHODS = ["ste", "uniform", "linear", "cosine", "linear3", "ssl3"]  # its stage 2
TOLERANCE = 0.05  # a classical point further than this from its target rate is off target


# ---------------------------------------------------------------------------------------------
# The models and their records


@dataclass
class Model:
    """A model the page evaluates: a shipped quality (from the manifest) or a CHECKPOINTS file."""

    option: list[str]  # the refine options naming it ('--quality 2')
    lmbda: float
    default: bool = False
    quality: int | None = None
    name: str | None = None
    sha: str | None = None  # first 16 hex digits of the weights' sha256, as records hold it


def checkpoints() -> list[str]:
    return os.environ.get("CHECKPOINTS", "").split()


def model_table() -> list[Model]:
    """The models sorted by lambda, the middle (or the manifest's default) one marked default."""
    cps = checkpoints()
    if cps:
        from sgacodec.models.checkpoints import read_state_dict

        out = sorted((Model(["--checkpoint", c], float(read_state_dict(Path(c))[1]["lmbda"])) for c in cps),
                     key=lambda m: m.lmbda)
        out[len(out) // 2].default = True
        return out
    from sgacodec.models.embedded import embedded_manifest

    manifest = embedded_manifest()
    models = sorted(manifest["models"], key=lambda m: m["lmbda"])
    if not models:
        sys.exit("no embedded models in sgacodec/models/weights; set CHECKPOINTS")
    default = manifest.get("default_quality", models[len(models) // 2]["quality"])
    return [Model(["--quality", str(m["quality"])], float(m["lmbda"]), m["quality"] == default, m["quality"],
                  m.get("name"), m["sha256"][:16]) for m in models]


def default_model(models: list[Model]) -> Model:
    return next(m for m in models if m.default)


def semi_lambdas(models: list[Model], profile: str) -> list[float]:
    """Inference lambdas for the default model: between it and its neighbours, at them, beyond."""
    lams = [m.lmbda for m in models]
    d = next(i for i, m in enumerate(models) if m.default)
    out = []
    for j in (d - 1, d + 1):
        ratio = (lams[j] / lams[d]) if 0 <= j < len(lams) else (2.0 if j > d else 0.5)
        steps = (0.5, 1.5) if profile != "full" else (0.5, 1.0, 1.5)
        out += [lams[d] * ratio**s for s in steps]
    return sorted(float(f"{v:.5g}") for v in out)


def shipped(models: list[Model]) -> set[str]:
    """The shipped models' sha prefixes (empty with CHECKPOINTS: nothing to compare with)."""
    return {m.sha for m in models if m.sha}


def prune(path, models: list[Model]) -> tuple[int, int]:
    """Remove from a records file the records of models not shipped (a classical record belongs to
    the model whose rates it matched) and those superseded by a later record of the same key
    (``sgacodec refine --redo-unproven``); (kept, removed). Does nothing without shipped models."""
    ships = shipped(models)
    if not ships or not Path(path).exists():
        n = len(load_records(path))
        return n, 0
    later = Counter(r.key for r in load_records(path))  # records of each key still to come

    def keep(record) -> bool:
        later[record.key] -= 1
        return later[record.key] == 0 and record.owner() in ships
    return rewrite_records(path, keep)


@dataclass
class Records:
    records: list[Record]  # the shipped models' records, each model under one display name
    stale: int  # model versions in the file that are not shipped (left out)


def load(path, models: list[Model]) -> Records:
    """The shipped models' records of a records file, or of several (a list of paths)."""
    records = [r for p in (path if isinstance(path, (list, tuple)) else [path]) for r in load_records(p)]
    records = list({r.key: r for r in records}.values())  # a later record of a key supersedes it
    ships = shipped(models)
    stale: set[str] = set()
    if ships:
        stale = {r.model_sha for r in records if r.model_sha and r.model_sha not in ships}
        records = [r for r in records if r.owner() in ships]
    names: dict[str, str] = {}  # one display name per model: the embedded name where some record has it
    for r in records:
        if not r.classical and (r.model_sha not in names or r.model.startswith("embedded")):
            names[r.model_sha] = r.model
    return Records([r if r.classical else replace(r, model=names[r.model_sha]) for r in records], len(stale))


# ---------------------------------------------------------------------------------------------
# Who measured: the records' provenance


@dataclass
class Machine:
    """Records measured with one device and one set of versions; ``device`` None: not recorded."""

    device: str | None
    torch: str | None
    compressai: str | None
    sgacodec: str | None
    threads: int | None
    commits: list[str]
    first: str | None  # dates (UTC) of the first and last record
    last: str | None
    learned: int  # records of the learned models ('none' included)
    classical: int


def machines(records: list[Record]) -> list[Machine]:
    """One entry per device and versions, in order of first date; records without provenance last."""
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        p = r.provenance
        key = (p.device, p.torch, p.compressai, p.sgacodec, p.threads) if p else (None,) * 5
        groups.setdefault(key, []).append(r)
    out = []
    for key, sel in groups.items():
        provs = sorted((r.provenance for r in sel if r.provenance), key=lambda p: p.date)
        commits = list(dict.fromkeys(p.commit for p in provs if p.commit))
        dates = [p.date for p in provs]
        out.append(Machine(*key, commits, dates[0] if dates else None, dates[-1] if dates else None,
                           sum(not r.classical for r in sel), sum(r.classical for r in sel)))
    return sorted(out, key=lambda m: (m.device is None, m.first or ""))


# ---------------------------------------------------------------------------------------------
# Classical points off their target rate


@dataclass
class Pinned:
    """A classical record at an end of its codec's quality range, off its target rate."""

    codec: str
    anchor: str  # sha of the model whose 'none' rate was the target
    point: int
    image: str
    quality: int
    target: float
    bpp: float
    end: str  # 'low' or 'high'

    @property
    def miss(self) -> float:
        return self.bpp / self.target - 1


def pinned(records: list[Record], tolerance: float = TOLERANCE) -> list[Pinned]:
    """Classical records whose bpp misses the target by more than ``tolerance`` because the target
    lies beyond the codec's end quality step: at its lowest (highest) quality, or between its two
    lowest (highest) qualities, where the bisection on quality cannot come closer."""
    out = []
    for r in records:
        if not r.classical or r.quality is None or not r.target_bpp or r.label not in QUALITY_RANGE:
            continue
        lo, hi = QUALITY_RANGE[r.label]
        miss = r.bpp / r.target_bpp - 1
        if abs(miss) <= tolerance:
            continue
        if r.quality == lo or (r.quality == lo + 1 and miss > 0):
            end = "low"
        elif r.quality == hi or (r.quality == hi - 1 and miss < 0):
            end = "high"
        else:
            continue
        out.append(Pinned(r.label, r.anchor_model or "", r.point or 0, r.image, r.quality, r.target_bpp, r.bpp,
                          end))
    return out


def point_of(r: Record) -> tuple:
    """A classical curve point: codec, anchor model, rate point."""
    return (r.label, r.anchor_model or "", r.point or 0)


@dataclass
class LeftOut:
    """A classical curve point left out of BD figures: some of its images are pinned."""

    codec: str
    anchor: str
    point: int
    images: int  # images in the point
    bpp: float  # mean bpp and mean target of the point
    target: float
    pinned: list[Pinned]

    @property
    def miss(self) -> float:
        return self.bpp / self.target - 1


def left_out(records: list[Record], tolerance: float = TOLERANCE) -> list[LeftOut]:
    pins: dict[tuple, list[Pinned]] = {}
    for p in pinned(records, tolerance):
        pins.setdefault((p.codec, p.anchor, p.point), []).append(p)
    out = []
    for key, ps in pins.items():
        sel = [r for r in records if r.classical and point_of(r) == key]
        out.append(LeftOut(*key, len(sel), sum(r.bpp for r in sel) / len(sel),
                           sum(r.target_bpp for r in sel) / len(sel), ps))
    return sorted(out, key=lambda x: (x.codec, x.anchor, x.point))


def without(records: list[Record], out: list[LeftOut]) -> list[Record]:
    """The records less those of the classical points left out."""
    gone = {(x.codec, x.anchor, x.point) for x in out}
    return [r for r in records if not (r.classical and point_of(r) in gone)]


# ---------------------------------------------------------------------------------------------
# Selections and tables


def paper_only(records: list[Record]) -> tuple[list[Record], int]:
    """The records of the paper's schedule (records made before schedules existed are; 'none' and
    the classical codecs have no schedule), and how many others were left out. The studies of
    stages 1 to 8 are of the paper's schedule: a budget-schedule record in their file stays out of
    them rather than join a curve keyed by method and iteration count."""
    keep = [r for r in records if r.classical or r.label == "none" or schedule_of(r) == "paper"]
    return keep, len(records) - len(keep)


def rel(v, ref) -> float:
    """v against ref, in percent (NaN where either is missing)."""
    return (v / ref - 1) * 100 if v is not None and ref else math.nan


def common_images(groups) -> set:
    """Images present in every non-empty group of records (so means compare like with like)."""
    sets = [{r.image for r in g} for g in groups if g]
    return set.intersection(*sets) if sets else set()


def is_x1(r) -> bool:
    return r.lmbda_scale == 1.0


def tau_of(r) -> float:
    return r.tau_max if r.tau_max is not None else 1.0


def rows_for(records: list[Record]) -> list[Row]:
    return sorted(aggregate(records), key=lambda r: (r.curve, r.bpp or 0))


def curve_order(name: str):
    """Sort key for curve names like "ssl 500it": by method, then by iteration count."""
    method, _, its = name.partition(" ")
    return method, int(its.removesuffix("it")) if its.removesuffix("it").isdigit() else 0, its


@dataclass
class LossRow:
    """One setting of one model: means, and changes against the same model's 'none'."""

    setting: str
    label: str
    iterations: int
    bpp: float | None
    bpp_vs_none: float  # percent
    psnr: float | None
    psnr_vs_none: float | None  # dB
    ms_ssim: float | None
    loss: float | None
    loss_vs_none: float  # percent
    seconds: float | None


@dataclass
class LossTable:
    rows: list[LossRow]
    images: set[str]  # the images every setting has, over which the means run
    records: list[Record]  # the records used


def loss_table(records: list[Record], title: Callable[[Row], str] = lambda r: r.curve) -> LossTable:
    """One model's settings: means over the images all of them have; 'none' first, then by true
    R-D loss, classical codecs last."""
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        groups.setdefault(setting_of(r), []).append(r)
    imgs = common_images(groups.values())
    sel = [r for r in records if r.image in imgs]
    rows = rows_for(sel)
    none = next((r for r in rows if r.label == "none"), None)
    nb, npsnr, nloss = (none.bpp, none.psnr, none.loss) if none else (None, None, None)
    out = []
    for r in sorted(rows, key=lambda r: (r.label != "none", r.classical, r.loss or 0)):
        dpsnr = r.psnr - npsnr if None not in (r.psnr, npsnr) else None
        out.append(LossRow(title(r), r.label, r.iterations, r.bpp, rel(r.bpp, nb), r.psnr, dpsnr, r.ms_ssim,
                           r.loss, rel(r.loss, nloss), r.seconds))
    return LossTable(out, imgs, sel)


# ---------------------------------------------------------------------------------------------
# The full-size profile


@dataclass
class Change:
    """A model's mean true R-D loss of one setting against another, and on how many images it is lower."""

    model: str
    rel: float  # percent
    lower: int


@dataclass
class Indirect:
    """From the longest runs' histories: the best loss by a step, SSL against atanh, per model."""

    longest: int
    best: list[tuple[str, float]]  # (model, percent)
    drift: float  # the largest relative gap of the short ssl runs' histories from the long ones'


@dataclass
class Comparison:
    """SSL against atanh at one iteration count."""

    iterations: int
    bd: BDRow | None
    change: list[Change]
    missing: list[str] = field(default_factory=list)  # settings without records, when bd is None
    indirect: Indirect | None = None

    @property
    def ahead(self) -> bool:
        return self.bd is not None and self.bd.bd_rate < 0 and all(c.rel < 0 for c in self.change)

    @property
    def behind(self) -> bool:
        return self.bd is not None and self.bd.bd_rate > 0 and all(c.rel > 0 for c in self.change)


@dataclass
class Full:
    records: list[Record]
    stale: int
    other_schedule: int = 0  # budget-schedule records in the file, left out (paper_only)
    images: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # 'WxH' -> images
    names: dict[str, str] = field(default_factory=dict)  # sha -> display name
    shas: list[str] = field(default_factory=list)
    eval_every: list[str] = field(default_factory=list)
    # per model: the main grid's settings it lacks, (label, iterations, images it has)
    missing: list[tuple[str, list[tuple[str, int, int]]]] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # studies without any record
    main: list[Record] = field(default_factory=list)  # the main grid's complete settings
    per_model: list[tuple[str, LossTable]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # 'model setting' -> seconds over the images
    rows: list[Row] = field(default_factory=list)  # every setting and model, for the R-D figure
    bd_shas: list[str] = field(default_factory=list)  # the models every refined setting has
    bd_rows: list[BDRow] = field(default_factory=list)
    bd_points: int = 0  # rate points per curve (before classical points are left out)
    left_out: list[LeftOut] = field(default_factory=list)
    loss_figures: list[tuple[str, list[Record]]] = field(default_factory=list)  # (model, records)
    ssl_vs_none: BDRow | None = None
    ssl_vs_none_change: list[Change] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    lacking: list[str] = field(default_factory=list)  # models outside the BD figures

    @property
    def partial(self) -> bool:
        return bool(self.missing or self.absent or not self.records)

    def name(self, sha: str) -> str:
        return self.names.get(sha, sha[:8])


def analyse_full(data: Records, models: list[Model]) -> Full:
    """The full-size Kodak records, which may be partial: what of the protocol is missing, one
    table per model, BD figures over the models every refined setting has, the targets."""
    records, other = paper_only(data.records)
    out = Full(records, data.stale, other)
    if not records:
        return out
    learned = [r for r in records if not r.classical]
    main = [r for r in records if r.classical
            or (is_x1(r) and tau_of(r) == 1.0 and (r.label, r.iterations) in FULL_GRID)]
    lams = {r.model_sha: r.lmbda for r in learned if is_x1(r)}
    out.shas = [m.sha for m in models if m.sha] or sorted(lams, key=lams.get)
    out.names = {r.model_sha: r.model for r in learned}
    out.images = images = sorted({r.image for r in records})
    n = len(images)
    have: dict[tuple, set] = {}
    for r in main:
        have.setdefault((r.model_sha, r.label, r.iterations), set()).add(r.image)
    for sha in out.shas:
        cells = [(label, it, len(got)) for label, it in FULL_GRID
                 for got in [have.get((sha, label, it), set())] if len(got) < n]
        if cells:
            out.missing.append((out.name(sha), cells))
    studies = {  # the protocol's other stages: is there any record of them?
        f"the other rounding methods ({', '.join(OTHER_METHODS)})": lambda r: r.label in OTHER_METHODS,
        "the tau_max study": lambda r: not r.classical and tau_of(r) != 1.0,
        "the semi-multi-rate study (other inference lambdas)": lambda r: not r.classical and not is_x1(r),
        "the classical codecs": lambda r: r.classical}
    out.absent = [k for k, test in studies.items() if not any(map(test, records))]
    # settings with every image only (an interrupted one is listed as missing, not averaged)
    count = Counter(setting_of(r) for r in main)
    out.main = main = [r for r in main if count[setting_of(r)] == n]
    sizes: dict[str, set] = {}
    for r in records:
        sizes.setdefault(f"{r.width}x{r.height}", set()).add(r.image)
    out.sizes = {k: len(v) for k, v in sorted(sizes.items())}
    out.eval_every = sorted({str(json.loads(r.key).get("eval_every")) for r in learned if r.label != "none"})
    out.per_model = [(out.name(sha), loss_table([r for r in main if r.owner() == sha])) for sha in out.shas]
    for r in main:
        if not r.classical and r.label != "none":
            k = f"{out.name(r.model_sha)} {curve_name(r.label, r.iterations, r.tau_max)}"
            out.seconds[k] = out.seconds.get(k, 0.0) + r.seconds
    out.seconds = dict(sorted(out.seconds.items()))

    # curves and BD figures
    refined = [(label, it) for label, it in FULL_GRID if label != "none"]
    sets = [{r.model_sha for r in main if (r.label, r.iterations) == c} for c in refined]
    sets = [x for x in sets if x]  # the models of each refined setting that has any
    out.bd_shas = [s for s in out.shas if sets and all(s in x for x in sets)]
    out.lacking = [out.name(s) for s in out.shas if s not in out.bd_shas]
    out.rows = rows_for(main)
    if out.bd_shas:
        sel = [r for r in main if r.owner() in out.bd_shas]
        out.left_out = left_out(sel)
        out.bd_points = min(len(v) for v in curves_from_rows(rows_for(sel)).values())
        curves = curves_from_rows(rows_for(without(sel, out.left_out)))
        its = sorted({it for _, it in refined})
        pairs = ([(f"{label} {it}it", "none") for label, it in refined]
                 + [(f"ssl {it}it", f"atanh {it}it") for it in its]
                 + [(curve_name(c), "none") for c in ("jpeg", "webp", "avif")])
        out.bd_rows = bd_table(curves, pairs=pairs)
    out.loss_figures = [(out.name(sha), recs) for sha in out.shas
                        for recs in [[r for r in main if r.model_sha == sha and r.history]] if recs]
    _full_targets(out, refined)
    return out


def _full_targets(out: Full, refined) -> None:
    main, shas, images = out.main, out.shas, out.images
    learned = [r for r in main if not r.classical]
    per = {(r.model_sha, r.curve): r for r in rows_for(learned)}
    by_image = {(r.model_sha, curve_name(r.label, r.iterations, r.tau_max), r.image): r for r in learned}

    def change(test, anchor) -> list[Change]:
        return [Change(out.name(s), rel(per[(s, test)].loss, per[(s, anchor)].loss),
                       sum(by_image[(s, test, i)].loss < by_image[(s, anchor, i)].loss for i in images))
                for s in shas if (s, test) in per and (s, anchor) in per]

    def best_by(curve, step) -> dict[str, float]:
        """Per model: the mean over images of the lowest true loss the histories reached by ``step``."""
        res = {}
        for s in shas:
            hs = [r.history for (m, c, _), r in by_image.items() if (m, c) == (s, curve) and r.history]
            if hs:
                res[s] = sum(min(v for t, v in zip(h["step"], h["loss"]) if t <= step) for h in hs) / len(hs)
        return res

    def drift(short, long) -> float:
        gaps = [abs(a / b - 1) for (s, c, i), r in by_image.items() if c == short and r.history
                for a, b in zip(r.history["loss"], by_image[(s, long, i)].history["loss"])
                if (s, long, i) in by_image]
        return max(gaps) if gaps else math.nan

    bdd = {(b.test, b.anchor): b for b in out.bd_rows}
    out.ssl_vs_none = bdd.get(("ssl 2000it", "none"))
    out.ssl_vs_none_change = change("ssl 2000it", "none")
    longest = max(i for _, i in refined)
    for it in sorted({it for _, it in refined}):
        b = bdd.get((f"ssl {it}it", f"atanh {it}it"))
        comp = Comparison(it, b, change(f"ssl {it}it", f"atanh {it}it"))
        if b is None:
            comp.missing = [f"{m} {it}" for m in ("ssl", "atanh")
                            if not any(r.label == m and r.iterations == it for r in main)]
            a, s = best_by(f"atanh {longest}it", it), best_by(f"ssl {longest}it", it)
            if it < longest and a and s:
                comp.indirect = Indirect(longest, [(out.name(x), rel(s[x], a[x])) for x in shas if x in a and x in s],
                                         drift(f"ssl {it}it", f"ssl {longest}it") * 100)
        out.comparisons.append(comp)


# ---------------------------------------------------------------------------------------------
# The reduced profile


@dataclass
class CurveSummary:
    name: str
    points: list[tuple[float, float]]  # (mean bpp, mean PSNR) per rate point
    bd_points: int  # points in its BD figure (classical points off target are left out)
    bd_rate: float
    bd_psnr: float
    seconds: float | None  # mean per image


@dataclass
class SemiStudy:
    iterations: int
    images: set[str]
    sweep: list[Row]  # the default model at each inference lambda
    base: list[Row]  # none and ssl at the same count, every model
    bd: list[tuple[str, float, float, float]]  # (anchor curve, BD-rate, BD-PSNR, overlap)


@dataclass
class Reduced:
    records: list[Record]
    stale: int
    other_schedule: int = 0  # budget-schedule records in the file, left out (paper_only)
    default_name: str = "?"
    iterations: list[int] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    crop: int = 0
    studies: dict[str, list[int]] = field(default_factory=dict)  # study -> iteration counts run
    # 1. none, atanh, SSL over the models, and the classical codecs
    main_images: set[str] = field(default_factory=set)
    main_rows: list[Row] = field(default_factory=list)
    curves: list[CurveSummary] = field(default_factory=list)
    ssl_vs_atanh: list[tuple[int, BDRow]] = field(default_factory=list)  # per iteration count
    left_out: list[LeftOut] = field(default_factory=list)
    # 2. every rounding method: the default model's table, BD over the models, loss histories
    methods: LossTable | None = None
    methods_models: int = 0
    methods_bd: list[BDRow] = field(default_factory=list)
    history: list[Record] = field(default_factory=list)
    # 3. tau_max; 4. semi-multi-rate
    tau: LossTable | None = None
    semi: SemiStudy | None = None
    semi_iterations: int = 0
    # targets: the longest SSL run against none; SSL against atanh per count, over the models
    # and on the default model alone ((iterations, SSL loss, atanh loss))
    longest: int | None = None
    ssl_vs_none: float = math.nan
    single: list[tuple[int, float, float]] = field(default_factory=list)

    @property
    def protocol_iterations(self) -> bool:
        return {500, 2000} <= set(self.iterations)


def analyse_reduced(data: Records, models: list[Model]) -> Reduced:
    """A profile run by every stage of scripts/make_results.sh on a few crops (the reduced one)."""
    records, other = paper_only(data.records)
    out = Reduced(records, data.stale, other)
    if not records:
        return out
    learned = [r for r in records if not r.classical]
    dm = default_model(models)
    default_sha = next((r.model_sha for r in learned if is_x1(r) and abs(r.lmbda - dm.lmbda) < 1e-9), None)
    out.default_name = next((r.model for r in learned if r.model_sha == default_sha), "?")

    def at_default(r):
        return r.model_sha == default_sha

    out.iterations = iters = sorted({r.iterations for r in learned if r.label != "none"})
    out.images = sorted({r.image for r in records})
    out.crop = min(r.crop for r in records)
    studies = {  # iteration counts each study ran at, from its records
        "the main comparison (none, atanh, SSL)": {
            r.iterations for r in learned if r.label in ("atanh", "ssl") and is_x1(r) and tau_of(r) == 1.0},
        "the other rounding methods": {r.iterations for r in learned if r.label not in ("none", "atanh", "ssl")},
        "tau_max": {r.iterations for r in learned if tau_of(r) != 1.0},
        "semi-multi-rate": {r.iterations for r in learned if not is_x1(r)}}
    out.studies = {k: sorted(v) for k, v in studies.items()}

    # 1. main
    main = [r for r in records if r.classical
            or (is_x1(r) and tau_of(r) == 1.0 and r.label in ("none", "atanh", "ssl"))]
    groups: dict[tuple, list[Record]] = {}
    for r in main:
        groups.setdefault(setting_of(r), []).append(r)
    out.main_images = keep = common_images([g for g in groups.values() if not g[0].classical])
    main = [r for r in main if r.image in keep]
    rows = rows_for(main)
    npts = curves_from_rows(rows)
    need = min(len(npts.get("none", [])), 2) or 2
    out.main_rows = rows = [r for r in rows if len(npts[r.curve]) >= need]  # curves over all models only
    curves = curves_from_rows(rows)
    out.left_out = left_out([r for r in main if r.classical])
    bd_curves = curves_from_rows(rows_for(without(main, out.left_out)))
    for name, pts in curves.items():
        test = bd_curves.get(name, [])
        b = bd(curves["none"], test) if "none" in curves and name != "none" else (math.nan, math.nan)
        t = [r.seconds for r in rows if r.curve == name and r.seconds is not None]
        out.curves.append(CurveSummary(name, pts, len(test), b[0], b[1], sum(t) / len(t) if t else None))
    out.ssl_vs_atanh = [(i, b) for i in iters for b in bd_table(curves, pairs=[(f"ssl {i}it", f"atanh {i}it")])]

    # 2. every rounding method, at the default model's lambda
    allm = [r for r in learned if is_x1(r) and tau_of(r) == 1.0 and at_default(r)]
    if allm:
        out.methods = loss_table(allm)
        # BD-rates over the models: only curves run on every model the none curve has
        allc = curves_from_rows(rows_for([r for r in learned if is_x1(r) and tau_of(r) == 1.0]))
        out.methods_models = max(len(allc.get("none", [])), 2)
        allc = {k: v for k, v in sorted(allc.items(), key=lambda kv: curve_order(kv[0]))
                if len(v) >= out.methods_models}
        out.methods_bd = bd_table(allc, "none")
        out.history = [r for r in out.methods.records if r.label != "none"]

    # 3. tau_max: every count the study was run at
    tau_its = {r.iterations for r in learned if r.label in ("atanh", "ssl") and tau_of(r) != 1.0 and at_default(r)}
    taus = [r for r in learned if is_x1(r) and at_default(r)
            and (r.label == "none" or r.label in ("atanh", "ssl") and r.iterations in tau_its)]
    out.tau = loss_table(taus, lambda r: r.curve + ("" if r.label == "none" or tau_of(r) != 1.0 else " tau1"))

    # 4. semi-multi-rate: the longest lambda sweep
    swept = {r.iterations for r in learned if at_default(r) and r.label == "ssl" and not is_x1(r) and tau_of(r) == 1.0}
    out.semi_iterations = semi_it = max(swept) if swept else (min(iters) if iters else 0)
    semi = [r for r in learned if at_default(r) and r.label == "ssl" and r.iterations == semi_it
            and tau_of(r) == 1.0]
    if any(not is_x1(r) for r in semi):
        base = [r for r in main if r.label in ("none", "ssl") and r.iterations in (0, semi_it)]
        imgs = common_images([semi, base])
        srows = rows_for([r for r in semi if r.image in imgs])
        brows = rows_for([r for r in base if r.image in imgs])
        sweep = next(iter(curves_from_rows(srows).values()))
        bc = curves_from_rows(brows)
        out.semi = SemiStudy(semi_it, imgs, sorted(srows, key=lambda r: r.lmbda), brows,
                             [(k, *bd(v, sweep), overlap(v, sweep)) for k, v in bc.items()])

    # targets
    main_iters = sorted({r.iterations for r in rows if r.label == "ssl"})
    if main_iters:
        out.longest = max(main_iters)
        b = next((c for c in out.curves if c.name == f"ssl {out.longest}it"), None)
        out.ssl_vs_none = b.bd_rate if b else math.nan
    if out.methods:
        single = {(r.label, r.iterations): r for r in rows_for(
            [r for r in out.methods.records if r.label in ("atanh", "ssl")])}
        out.single = [(i, single[("ssl", i)].loss, single[("atanh", i)].loss) for i in iters
                      if ("ssl", i) in single and ("atanh", i) in single]
    return out


# ---------------------------------------------------------------------------------------------
# Anytime refinement (scripts/make_results.sh stage 9): the gain against the iteration count, the
# paper's schedule and the budget-aware one


ANYTIME_ITERATIONS = (25, 50, 100, 200, 500, 2000)  # issue 17's counts
ANYTIME_METHODS = ("ssl", "atanh")
SCHEDULES = ("paper", "budget")
# issue 17: the budget schedule's gain at these counts, as a share (percent) of the paper
# schedule's gain at 2000 iterations
ANYTIME_TARGETS = ((200, 80.0), (100, 65.0))


def anytime_files(data: Path, profile: str) -> list[Path]:
    """A profile's anytime records: one file per model (docs/results/PROFILE-anytime-MODEL.jsonl)."""
    return sorted(Path(data).glob(f"{profile}-anytime-*.jsonl"))


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


@dataclass
class Cell:
    """One schedule, method and iteration count. ``gain``: the mean over the (model, image) pairs
    it has of (none - refined) / none in true R-D loss (percent); ``share``: its mean gain as a
    percentage of the paper schedule's 2000-iteration mean gain of the same method, both over the
    pairs the two have; BD figures against 'none', each model one rate point."""

    schedule: str
    method: str
    iterations: int
    pairs: int = 0
    gain: float = math.nan
    share: float = math.nan
    share_pairs: int = 0
    bd_rate: float = math.nan
    bd_psnr: float = math.nan
    bd_points: int = 0  # models (rate points) in the BD figure
    from_paper: bool = False  # the budget schedule at PAPER_ITERATIONS: the paper's records (the same run)
    per_model: list[tuple[str, float]] = field(default_factory=list)  # (model, share) where it has pairs


@dataclass
class Target:
    """Issue 17's target at one count: the budget schedule's share of the paper's 2000 gain."""

    method: str
    iterations: int
    goal: float  # percent
    budget: Cell | None
    paper: Cell | None  # the paper schedule at the same count, for comparison

    @property
    def met(self) -> bool | None:
        """None: not measured (yet)."""
        if self.budget is None or math.isnan(self.budget.share):
            return None
        return self.budget.share >= self.goal


@dataclass
class Versus:
    """The budget schedule against the paper's at one count, over the pairs both have."""

    method: str
    iterations: int
    pairs: int
    budget: float  # mean gains, percent
    paper: float
    lower: int  # pairs where the budget schedule's true loss is lower


def current_budget(r: Record) -> bool:
    """Whether a record is not the budget schedule's, or is it with today's knobs (config.BUDGET_KNOBS
    at RefineConfig's defaults, which its key holds): records of earlier budget settings stay in the
    file and out of the figures."""
    if schedule_of(r) != "budget":
        return True
    key, now = json.loads(r.key), RefineConfig()
    return all(key.get(name) == getattr(now, name) for name in BUDGET_KNOBS)


@dataclass
class Anytime:
    records: list[Record]
    stale: int
    earlier_budget: int = 0  # budget-schedule records of other knobs than today's defaults, left out
    images: list[str] = field(default_factory=list)
    crop: int = 0
    eval_every: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # display names, lowest lambda first
    iterations: list[int] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    # per model: the settings lacking images, (schedule, method, iterations, images it has); models
    # without any record
    missing: list[tuple[str, list[tuple[str, str, int, int]]]] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    versus: list[Versus] = field(default_factory=list)

    @property
    def expected(self) -> int:
        """(model, image) pairs of a complete cell."""
        return len(self.images) * len(self.models)

    @property
    def partial(self) -> bool:
        return bool(self.missing or self.not_started)

    def cell(self, schedule: str, method: str, iterations: int) -> Cell | None:
        return next((c for c in self.cells if (c.schedule, c.method, c.iterations) == (schedule, method, iterations)),
                    None)


def analyse_anytime(data: Records, models: list[Model]) -> Anytime:
    """Stage 9's records (all models), which may be partial: per schedule, method and count the
    gain over 'none' on real bytes, its share of the paper's 2000-iteration gain and the BD
    figures; what is missing; issue 17's targets; the budget schedule against the paper's."""
    current = [r for r in data.records if current_budget(r)]
    out = Anytime(current, data.stale, len(data.records) - len(current))
    learned = [r for r in current if not r.classical and is_x1(r) and tau_of(r) == 1.0
               and r.label in ("none",) + ANYTIME_METHODS and r.loss is not None]
    if not learned:
        return out
    names = {r.model_sha: r.model for r in learned}
    lams = {r.model_sha: r.lmbda for r in learned}
    shas = [(m.sha, names.get(m.sha) or (f"{m.name} (quality {m.quality})" if m.name else " ".join(m.option)))
            for m in models if m.sha]
    shas = shas or [(s, names[s]) for s in sorted(lams, key=lams.get)]  # CHECKPOINTS: the models found
    out.models = [name for _, name in shas]
    out.images = images = sorted({r.image for r in learned})
    out.crop = min(r.crop for r in learned)
    out.eval_every = sorted({str(json.loads(r.key).get("eval_every")) for r in learned if r.label != "none"})
    none = {(r.model_sha, r.image): r for r in learned if r.label == "none"}
    runs: dict[tuple, dict[tuple, Record]] = {}  # (schedule, method, iterations) -> (sha, image) -> record
    for r in learned:
        if r.label != "none":
            runs.setdefault((schedule_of(r), r.label, r.iterations), {})[(r.model_sha, r.image)] = r
    out.iterations = its = sorted(set(ANYTIME_ITERATIONS) | {k[2] for k in runs})

    # what is missing, per model (from issue 17's grid)
    grid = [("paper", "none", 0)] + [(s, m, it) for s in SCHEDULES for m in ANYTIME_METHODS
                                     for it in ANYTIME_ITERATIONS if not (s == "budget" and it == PAPER_ITERATIONS)]
    for sha, name in shas:
        cells = [(*k, len(got)) for k in grid
                 for got in [{i for (s, i) in (none if k[1] == "none" else runs.get(k, {})) if s == sha}]
                 if len(got) < len(images)]
        if len(cells) == len(grid) and not any(c[3] for c in cells):
            out.not_started.append(name)
        elif cells:
            out.missing.append((name, cells))

    # the budget schedule at PAPER_ITERATIONS is the paper's run: the same temperature and step size
    # at every step (tests/test_rounding.py::test_budget_schedule_at_2000_steps_is_the_papers_exactly)
    for m in ANYTIME_METHODS:
        runs[("budget", m, PAPER_ITERATIONS)] = runs.get(("paper", m, PAPER_ITERATIONS), {})

    def gains(key) -> dict[tuple, float]:
        """(sha, image) -> (none - refined) / none of the true loss, percent, where both exist."""
        return {p: (none[p].loss - r.loss) / none[p].loss * 100 for p, r in runs.get(key, {}).items()
                if p in none and none[p].loss}

    def share(g: dict, ref: dict) -> tuple[float, int]:
        common = g.keys() & ref.keys()
        den = _mean(ref[p] for p in common)
        return (_mean(g[p] for p in common) / den * 100 if common and den > 0 else math.nan), len(common)

    for s in SCHEDULES:
        for m in ANYTIME_METHODS:
            ref = gains(("paper", m, PAPER_ITERATIONS))
            for it in its:
                key = (s, m, it)
                g = gains(key)
                c = Cell(s, m, it, len(g), from_paper=s == "budget" and it == PAPER_ITERATIONS)
                out.cells.append(c)
                if not g:
                    continue
                c.gain = _mean(g.values())
                c.share, c.share_pairs = share(g, ref)
                for sha, name in shas:
                    v, k = share({p: x for p, x in g.items() if p[0] == sha}, ref)
                    if k:
                        c.per_model.append((name, v))
                curves = curves_from_rows(aggregate([runs[key][p] for p in g] + [none[p] for p in g]))
                test = next(v for k, v in curves.items() if k != "none")
                c.bd_rate, c.bd_psnr = bd(curves["none"], test)
                c.bd_points = len(test)

    out.targets = [Target(m, it, goal, out.cell("budget", m, it), out.cell("paper", m, it))
                   for m in ANYTIME_METHODS for it, goal in ANYTIME_TARGETS]
    for m in ANYTIME_METHODS:
        for it in its:
            b, p = runs.get(("budget", m, it), {}), runs.get(("paper", m, it), {})
            gb, gp = gains(("budget", m, it)), gains(("paper", m, it))
            common = sorted(gb.keys() & gp.keys())
            if it < PAPER_ITERATIONS and common:
                out.versus.append(Versus(m, it, len(common), _mean(gb[k] for k in common),
                                         _mean(gp[k] for k in common), sum(b[k].loss < p[k].loss for k in common)))
    return out
