"""From records to tables and curves: means per setting, R-D curves, BD-rate and BD-PSNR.

    rows   = aggregate(records)            # one Row per setting and rate point: means over images
    curves = curves_from_rows(rows)        # curve name -> [(bpp, PSNR)], one per method/setting
    bd_table(curves, anchor="none")        # BD-rate / BD-PSNR (the bjontegaard package)

A *curve* is a setting family over its rate points (lambdas, and models when several are
aggregated together); its name is the method and iteration count ('ssl 500it').
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .classical import CLASSICAL_CODECS
from .records import Record

MEAN_FIELDS = ("bpp", "psnr", "ms_ssim", "loss", "base_bpp", "base_psnr", "base_loss", "seconds", "lmbda")
CLASSICAL_NAMES = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}


@dataclass
class Row:
    """Means over the images of one setting at one rate point, for one model."""

    model: str
    model_sha: str
    label: str
    iterations: int
    tau_max: float | None
    rate: str  # 'x1', 'l0.0035', or for a classical codec '<anchor sha>-p<point>'
    n: int
    images: list[str]
    point: str = ""
    curve: str = ""
    bpp: float | None = None
    psnr: float | None = None
    ms_ssim: float | None = None
    loss: float | None = None
    base_bpp: float | None = None
    base_psnr: float | None = None
    base_loss: float | None = None
    seconds: float | None = None
    lmbda: float | None = None
    schedule: str = "paper"

    @property
    def classical(self) -> bool:
        return self.label in CLASSICAL_CODECS


def schedule_of(rec) -> str:
    """The schedule a record (or row) was refined with: 'paper' for records made before
    schedules existed."""
    return rec.schedule or "paper"


def setting_of(rec: Record) -> tuple:
    """What a table row averages over images: the setting at one rate point, for one model
    (model sha, label, iterations, tau_max, rate point, schedule)."""
    if rec.label in CLASSICAL_CODECS:
        return (rec.label, rec.label, 0, None, f"{(rec.anchor_model or '')[:8]}-p{rec.point}", "paper")
    if rec.target:  # encoded to a target: the family searched, whichever model each image chose
        # (the search refines with the paper's schedule)
        rate = f"{rec.target['target']['kind']}{rec.target['target']['value']:g}"
        return (rec.target["family"], rec.label, rec.iterations if rec.label != "none" else 0, rec.tau_max, rate,
                "paper")
    rate = f"x{rec.lmbda_scale:g}" if rec.lmbda_scale is not None else f"l{rec.lmbda:g}"
    return (rec.model_sha, rec.label, rec.iterations if rec.label != "none" else 0, rec.tau_max, rate,
            schedule_of(rec) if rec.label != "none" else "paper")


def curve_name(label: str, iterations: int = 0, tau_max: float | None = None, schedule: str = "paper") -> str:
    """The curve of a setting without its rate point: 'ssl 500it', 'atanh 2000it tau0.5',
    'ssl 200it budget', 'JPEG'."""
    if label in CLASSICAL_CODECS:
        return CLASSICAL_NAMES[label]
    name = label
    if label != "none":
        name += f" {iterations}it"
        if tau_max is not None and tau_max != 1.0:
            name += f" tau{tau_max:g}"
        if schedule == "budget":
            name += " budget"
    return name


def aggregate(records: list[Record], images: Iterable[str] | None = None) -> list[Row]:
    """One row per setting and rate point: means over images (PSNR: mean of per-image PSNR).

    With ``images``, only those images count. ``n`` is the number of images averaged.
    """
    keep = None if images is None else set(images)
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        if keep is None or r.image in keep:
            groups.setdefault(setting_of(r), []).append(r)
    names = {k[0]: _model_name(sel[0]) for k, sel in groups.items() if k[1] not in CLASSICAL_CODECS}
    clash = len(set(names.values())) < len(names)  # e.g. checkpoints of one architecture
    rows = []
    for k, sel in groups.items():
        row = Row(_model_name(sel[0]), k[0], k[1], k[2], k[3], k[4], len(sel), sorted({r.image for r in sel}),
                  schedule=k[5])
        name = f"{row.model} {k[0][:6]}" if clash else row.model
        row.point = f"{name} {k[4]}" if len(names) > 1 and not row.classical else k[4]
        for f in MEAN_FIELDS:
            vals = [getattr(r, f) for r in sel if getattr(r, f) is not None and not _isinf(getattr(r, f))]
            setattr(row, f, float(np.mean(vals)) if vals else None)
        row.curve = curve_name(row.label, row.iterations, row.tau_max, row.schedule)
        if sel[0].target:  # a curve of its own: the same setting at searched lambdas
            row.curve += f" to {sel[0].target['target']['kind']}"
        rows.append(row)
    return rows


def _model_name(rec: Record) -> str:
    """A row's model: the record's, or for a target the family searched ('embedded family')."""
    family = rec.target["family"] if rec.target else ""
    if family and family != rec.model_sha:  # 'embedded:<shas>', 'zoo:<name>:<metric>'
        return " ".join(family.split(":")[: 2 if family.startswith("zoo:") else 1]) + " family"
    return rec.model


def _isinf(v) -> bool:
    return isinstance(v, float) and math.isinf(v)


def curves_from_rows(rows: list[Row], metric: str = "psnr") -> dict[str, list[tuple[float, float]]]:
    """Curve name -> [(mean bpp, mean metric)] sorted by rate."""
    out: dict[str, list] = {}
    for r in rows:
        if r.bpp is not None and getattr(r, metric) is not None:
            out.setdefault(r.curve, []).append((r.bpp, getattr(r, metric)))
    return {k: sorted(v) for k, v in out.items()}


def _monotone(points, by: int):
    """Points sorted by coordinate ``by``, equal coordinates averaged (the interpolators need
    strictly increasing abscissae)."""
    pts = sorted(points, key=lambda p: p[by])
    out: list[list] = []
    for p in pts:
        if out and abs(out[-1][0][by] - p[by]) < 1e-12:
            out[-1].append(p)
        else:
            out.append([p])
    return [tuple(float(np.mean([q[i] for q in g])) for i in range(2)) for g in out]


def bd(anchor: list[tuple[float, float]], test: list[tuple[float, float]], method: str = "akima",
       min_points: int = 2) -> tuple[float, float]:
    """(BD-rate %, BD-PSNR dB) of ``test`` against ``anchor`` (lists of (bpp, distortion)).

    Negative BD-rate: fewer bits at equal quality. NaN when a curve has fewer than ``min_points``
    points or the curves do not overlap. Uses the ``bjontegaard`` package (Akima interpolation
    by default, over the overlap interval only).
    """
    import bjontegaard

    if len(anchor) < min_points or len(test) < min_points:
        return math.nan, math.nan
    out = []
    for fn, by in ((bjontegaard.bd_rate, 1), (bjontegaard.bd_psnr, 0)):
        a, t = _monotone(anchor, by), _monotone(test, by)
        if len(a) < 2 or len(t) < 2:
            out.append(math.nan)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                v = fn([p[0] for p in a], [p[1] for p in a], [p[0] for p in t], [p[1] for p in t],
                       method, require_matching_points=False, min_overlap=0)
            out.append(float(v))
        except (ValueError, AssertionError, ZeroDivisionError):
            out.append(math.nan)
    return out[0], out[1]


def overlap(anchor, test, by: int = 1) -> float:
    """Fraction of the joint range (of coordinate ``by``) where both curves have points."""
    a, t = [p[by] for p in anchor], [p[by] for p in test]
    if not a or not t:
        return 0.0
    total = max(max(a), max(t)) - min(min(a), min(t))
    both = min(max(a), max(t)) - max(min(a), min(t))
    return max(both, 0.0) / total if total > 0 else 0.0


@dataclass
class BDRow:
    test: str
    anchor: str
    bd_rate: float
    bd_psnr: float
    points: tuple[int, int]  # points of the test and the anchor curve
    overlap: float


def bd_table(curves: dict, anchor: str | None = "none", pairs: Iterable[tuple[str, str]] | None = None,
             method: str = "akima", min_points: int = 2) -> list[BDRow]:
    """BD rows: each curve against ``anchor`` (a curve name), or the given (test, anchor) pairs."""
    if pairs is None:
        if anchor not in curves:
            return []
        pairs = [(name, anchor) for name in curves if name != anchor]
    rows = []
    for test, ref in pairs:
        if test not in curves or ref not in curves:
            continue
        rate, psnr = bd(curves[ref], curves[test], method, min_points)
        rows.append(BDRow(test, ref, rate, psnr, (len(curves[test]), len(curves[ref])),
                          overlap(curves[ref], curves[test])))
    return rows


def bd_matrix(curves: dict, names: list[str] | None = None, method: str = "akima",
              min_points: int = 2) -> dict[tuple[str, str], float]:
    """BD-rate of every curve (row) against every other (column)."""
    names = names or list(curves)
    return {(t, a): bd(curves[a], curves[t], method, min_points)[0]
            for t in names for a in names if t != a}


def mean_histories(records: list[Record]) -> dict[str, tuple[list[int], list[float]]]:
    """Curve name -> (steps, mean true R-D loss over images and models) at each model's own lambda
    (x1, else the first rate point found), for the per-iteration figure (the paper's Figure 2).
    Every model evaluated contributes; the mean runs over the steps all trajectories have."""
    by: dict[str, dict[tuple, dict]] = {}
    rates: dict[tuple, str] = {}  # (curve, model) -> the rate point used
    for r in records:
        if not r.history or r.classical:
            continue
        name = curve_name(r.label, r.iterations, r.tau_max, schedule_of(r))
        rate = setting_of(r)[4]
        preferred = rates.setdefault((name, r.model_sha), rate)
        if rate == "x1" and preferred != "x1":
            rates[(name, r.model_sha)] = rate
            by[name] = {k: h for k, h in by.get(name, {}).items() if k[0] != r.model_sha}
        if rates[(name, r.model_sha)] != rate:
            continue
        by.setdefault(name, {})[(r.model_sha, r.image)] = r.history
    out = {}
    for name, hists in by.items():
        n = min(len(h["step"]) for h in hists.values())
        steps = list(hists.values())[0]["step"][:n]
        loss = np.mean([h["loss"][:n] for h in hists.values()], axis=0)
        out[name] = (steps, loss.tolist())
    return out


def fmt(v, spec: str) -> str:
    """A number for a table: '-' when missing or NaN."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)
