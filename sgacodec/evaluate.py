"""Rate-distortion evaluation: datasets x methods x settings, resumable, with BD-rate and figures.

The ``sgacodec refine`` command is a thin layer over this module:

    inputs   = expand_inputs(["kodak/", "more/*.png"])          # directories, globs, files
    settings = expand_grid(["none", "atanh", "ssl"], [500, 2000], lmbda_scales=[0.5, 1, 2])
    records  = evaluate(model, inputs, settings, records_path="kodak.jsonl")   # resumable
    rows     = aggregate(records)                                # mean per setting (rate point)
    curves   = curves_from_rows(rows)                            # one R-D curve per method/setting
    bd_table(curves, anchor="none")                              # BD-rate / BD-PSNR (bjontegaard)

Every figure is measured on real bitstream bytes (bpp = 8 x bytes / pixels) and the decoded 8-bit
image. A *setting* is one refinement configuration at one rate point (one lambda); a *curve* is a
setting family over its rate points (lambdas, and models when several are aggregated together).
Records are JSON lines keyed by (image, crop, model weights, setting), appended and flushed one by
one, so a stopped evaluation continues where it was when run again with the same records file.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
THREE_CLASS_LABELS = ("linear3", "cosine3", "ssl3")
METHOD_LABELS = ("none", "ste", "uniform", "atanh", "linear", "cosine", "ssl") + THREE_CLASS_LABELS
TEMPERATURE_METHODS = ("atanh", "linear", "cosine", "ssl")  # the ones tau_max changes
CLASSICAL_CODECS = ("jpeg", "webp", "avif")
RECORD_VERSION = 1


class EvaluationError(ValueError):
    """A bad evaluation request (no inputs, unknown codec, ...); the message is one line."""


# ---------------------------------------------------------------------------------------------
# Inputs


def expand_inputs(args: Iterable[str]) -> list[str]:
    """Files from paths, directories (their images, sorted) and globs, in order, without repeats.

    '-' (stdin) is kept. A path that does not exist is kept as given, so reading it reports the
    error; a glob that matches nothing, or a directory without images, is an error.
    """
    out: list[str] = []
    for arg in args:
        if arg == "-":
            found = ["-"]
        elif os.path.isdir(arg):
            found = sorted(str(p) for p in Path(arg).iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise EvaluationError(f"{arg}: no images in this directory")
        elif not os.path.exists(arg) and glob.has_magic(arg):
            found = sorted(p for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
            if not found:
                raise EvaluationError(f"{arg}: matches no file")
        else:
            found = [arg]
        out += [f for f in found if f not in out]
    return out


def center_crop(rgb: np.ndarray, size: int | None) -> np.ndarray:
    """The central size x size window (or the whole side where the image is smaller)."""
    if not size:
        return rgb
    h, w = rgb.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(rgb[top : top + ch, left : left + cw])


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Setting:
    """One refinement configuration at one rate point.

    ``label`` is the method as the user names it ('ssl3' = three-class SSL). ``lmbda`` is an
    absolute inference lambda, or None for ``lmbda_scale`` x the model's training lambda.
    ``tau_max`` is None for methods without a temperature; ``iterations`` is 0 for 'none'.
    """

    label: str
    iterations: int
    lmbda: float | None = None
    lmbda_scale: float = 1.0
    tau_max: float | None = None

    @property
    def method(self) -> str:
        return self.label[:-1] if self.label in THREE_CLASS_LABELS else self.label

    @property
    def three_class(self) -> bool:
        return self.label in THREE_CLASS_LABELS

    def resolved_lmbda(self, model_lmbda: float | None) -> float:
        if self.lmbda is not None:
            return self.lmbda
        if model_lmbda is None:
            raise EvaluationError("the model's training lambda is unknown; pass --lmbda")
        return model_lmbda * self.lmbda_scale

    def tag(self) -> str:
        """A short name, unique within a grid: 'ssl-it500-tau1-x0.5'."""
        parts = [self.label]
        if self.label != "none":
            parts.append(f"it{self.iterations}")
        if self.tau_max is not None:
            parts.append(f"tau{self.tau_max:g}")
        parts.append(f"l{self.lmbda:g}" if self.lmbda is not None else f"x{self.lmbda_scale:g}")
        return "-".join(parts)


def parse_label(label: str, three_class_flag: bool = False) -> str:
    """The method label, with the global --three-class flag applied where it is meaningful."""
    if label not in METHOD_LABELS:
        raise EvaluationError(f"unknown method {label!r}; choose from {', '.join(METHOD_LABELS)}")
    if three_class_flag and label in ("linear", "cosine", "ssl"):
        return label + "3"
    return label


def expand_grid(methods: Iterable[str], iterations: Iterable[int] = (2000,),
                lmbdas: Iterable[float] = (), lmbda_scales: Iterable[float] = (),
                tau_maxes: Iterable[float] = (1.0,), three_class: bool = False) -> list[Setting]:
    """All settings of methods x iterations x rate points x tau_max, without meaningless repeats.

    'none' ignores iterations and tau_max; 'ste' and 'uniform' ignore tau_max. Rate points are the
    absolute ``lmbdas`` and the ``lmbda_scales`` (multiples of the model's lambda); with neither,
    the model's own lambda.
    """
    rates = [(float(l), 1.0) for l in lmbdas] + [(None, float(s)) for s in lmbda_scales]
    if not rates:
        rates = [(None, 1.0)]
    iterations, tau_maxes = list(iterations) or [2000], list(tau_maxes) or [1.0]
    out: list[Setting] = []
    for raw in methods:
        label = parse_label(raw, three_class)
        for it in ([0] if label == "none" else iterations):
            for tau in (tau_maxes if label.rstrip("3") in TEMPERATURE_METHODS else [None]):
                for lmbda, scale in rates:
                    s = Setting(label, int(it), lmbda, scale, None if tau is None else float(tau))
                    if s not in out:
                        out.append(s)
    return out


def refine_config(setting: Setting, base: dict | None = None):
    """The RefineConfig of a setting; ``base`` holds the other RefineConfig fields (lr, a, seed...)."""
    from .refine import RefineConfig

    base = dict(base or {})
    for k in ("method", "iterations", "three_class", "tau_max", "lmbda"):
        base.pop(k, None)
    if setting.tau_max is not None:
        base["tau_max"] = setting.tau_max
    return RefineConfig(method=setting.method, iterations=setting.iterations,
                        three_class=setting.three_class, **base)


# Settings that change results and so belong to a record's key (time_budget does, too: results
# then depend on the machine, and the key keeps such records apart).
KEY_FIELDS = ("lr", "a", "factor", "power", "temp_rate", "seed", "eval_every", "time_budget")


def record_key(image: str, crop: int | None, model_sha: str, setting: Setting | None,
               lmbda: float | None, config=None, codec: str | None = None,
               target: float | None = None) -> str:
    """The identity of one measurement, for resuming: same key, same result."""
    key: dict = {"v": RECORD_VERSION, "image": os.path.normpath(image), "crop": crop or 0}
    if codec is not None:
        key.update(codec=codec, target=round(float(target), 4), anchor_model=model_sha)
    else:
        key.update(model=model_sha, label=setting.label, it=setting.iterations,
                   lmbda=float(f"{lmbda:.6g}"), tau=setting.tau_max)
        if setting.label != "none" and config is not None:
            for f in KEY_FIELDS:
                v = getattr(config, f)
                if f == "a" and setting.method != "ssl":
                    continue
                if f in ("factor", "power") and not setting.three_class:
                    continue
                key[f] = v
    return json.dumps(key, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Records (JSON lines): load for resume, append one at a time


def load_records(path) -> list[dict]:
    """The complete records in a JSON-lines file; a torn last line (interrupted write) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "key" in rec:
            out.append(rec)
    return out


class RecordWriter:
    """Appends records as JSON lines, flushed and synced one by one."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = self.path.exists() and self.path.stat().st_size > 0 and not self.path.read_bytes().endswith(b"\n")
        self.file = open(self.path, "a", encoding="utf-8")
        if torn:  # keep a torn line from an interrupted run on a line of its own
            self.file.write("\n")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def compact_history(history: list[dict]) -> dict:
    """Per-evaluation true loss, bpp and PSNR as parallel lists (small in JSON)."""
    return {"step": [h["step"] for h in history],
            "loss": [round(float(h["loss"]), 6) for h in history],
            "bpp": [round(float(h["bpp"]), 6) for h in history],
            "psnr": [round(float(h["psnr"]), 4) for h in history]}


# ---------------------------------------------------------------------------------------------
# Classical codecs through Pillow, at target bit rates


def classical_available(codec: str) -> bool:
    from PIL import features

    if codec == "jpeg":
        return True
    if codec == "webp":
        return bool(features.check("webp"))
    if codec == "avif":
        return "avif" in features.get_supported_modules() and bool(features.check("avif"))
    return False


def parse_classical(spec: str | Iterable[str] | None) -> list[str]:
    """'jpeg,webp,avif' -> the available ones (AVIF only where Pillow has it); unknown names fail."""
    if not spec:
        return []
    names = [n.strip().lower() for s in ([spec] if isinstance(spec, str) else spec)
             for n in s.split(",") if n.strip()]
    for n in names:
        if n not in CLASSICAL_CODECS:
            raise EvaluationError(f"unknown classical codec {n!r}; choose from {', '.join(CLASSICAL_CODECS)}")
    return [n for n in dict.fromkeys(names) if classical_available(n) or n != "avif"]


def classical_encode(rgb: np.ndarray, codec: str, quality: int) -> tuple[int, np.ndarray]:
    """(bytes, decoded RGB) of one Pillow encoding at ``quality``."""
    from PIL import Image

    img = Image.fromarray(rgb, "RGB")
    buf = io.BytesIO()
    if codec == "jpeg":
        img.save(buf, format="JPEG", quality=quality, optimize=True)
    elif codec == "webp":
        img.save(buf, format="WEBP", quality=quality, method=6)
    elif codec == "avif":
        img.save(buf, format="AVIF", quality=quality)
    else:
        raise EvaluationError(f"unknown classical codec {codec!r}")
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as dec:
        out = np.asarray(dec.convert("RGB"), dtype=np.uint8)
    return len(data), out


QUALITY_RANGE = {"jpeg": (1, 95), "webp": (0, 100), "avif": (0, 100)}


def classical_at_rate(rgb: np.ndarray, codec: str, target_bpp: float) -> dict:
    """Pillow encoding whose bpp is closest (in log) to ``target_bpp``, by bisection on quality."""
    from . import metrics

    h, w = rgb.shape[:2]
    cache: dict[int, tuple[int, np.ndarray]] = {}

    def at(q):
        if q not in cache:
            cache[q] = classical_encode(rgb, codec, q)
        return metrics.bpp(cache[q][0], h, w)

    lo, hi = QUALITY_RANGE[codec]
    if at(hi) <= target_bpp:
        best = hi
    elif at(lo) >= target_bpp:
        best = lo
    else:  # at(lo) < target < at(hi): find the first quality at or above the target
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if at(mid) < target_bpp else (lo, mid)
        best = min((lo, hi), key=lambda q: abs(math.log(at(q) / target_bpp)))
    nbytes, dec = cache[best]
    mse = metrics.mse(rgb, dec)
    return {"quality": best, "bytes": nbytes, "bpp": metrics.bpp(nbytes, h, w),
            "psnr": metrics.psnr(rgb, dec), "ms_ssim": metrics.ms_ssim(rgb, dec), "mse": mse}


# ---------------------------------------------------------------------------------------------
# The evaluation loop


@dataclass
class EvalResult:
    records: list[dict] = field(default_factory=list)  # this grid's records, done now or resumed
    computed: int = 0
    resumed: int = 0
    failures: list[str] = field(default_factory=list)


def model_label(model) -> str:
    ident = model.identity
    q = f" q{ident.quality}" if ident.quality else ""
    return f"{ident.kind} {ident.name}{q}"


EVAL_WINDOW = 256  # inputs held in memory at a time; same-size images among them refine together


def evaluate(model, inputs: list[str], settings: list[Setting], base_config: dict | None = None,
             device="cpu", records_path=None, crop: int | None = None, classical: Iterable[str] = (),
             classical_anchor: str | None = None, read: Callable | None = None,
             on_task: Callable | None = None, on_record: Callable | None = None,
             errors: tuple = (OSError, ValueError), batch_size: int | None = None) -> EvalResult:
    """Run every (image, setting) not yet in ``records_path``; returns this grid's records.

    Setting by setting, the images without a record yet are refined together, same-size images
    ``batch_size`` at a time (None: one on a CPU; on CUDA as many as fit in
    codec.AUTO_BATCH_MEGAPIXELS); a batch that runs out of GPU memory is halved, and a time budget
    applies to a batch. Each batch's records are written as soon as it finishes. Inputs are read
    EVAL_WINDOW at a time.
    ``on_task(description, total)`` returns a context manager yielding an ``on_step(i)`` callback
    (progress bars; one task per batch); ``on_record(record, report)`` sees each record
    (``report`` is the EncodeReport, or None for a resumed or classical record). Classical codecs
    run per image, after the learned records of its window, at the bit rates of the
    ``classical_anchor`` label's records of that image (default: 'none' if in the grid, else the
    first label).
    """
    import contextlib

    from . import metrics
    from .codec import batches_by_size, device_model, encode as encode_images, halving_on_oom

    read = read or _read
    classical = list(classical)
    device = _device(device)
    if batch_size is None and device.type != "cuda":
        batch_size = 1
    base_config = dict(base_config or {})
    sha = model.identity.weights_sha.hex()
    done = {r["key"]: r for r in load_records(records_path)} if records_path else {}
    writer = RecordWriter(records_path) if records_path else None
    labels = list(dict.fromkeys(s.label for s in settings))
    anchor = classical_anchor or ("none" if "none" in labels else labels[0] if labels else None)
    result = EvalResult()
    lm = None
    on_task = on_task or (lambda desc, total: contextlib.nullcontext(None))
    images: dict = {}  # src -> cropped pixels (None: unreadable), for the current window
    learned: dict = {src: [] for src in inputs}  # its learned records, done now or resumed

    def image(src):
        if src not in images:
            try:
                images[src] = center_crop(read(src), crop)
            except errors as exc:
                images[src] = None
                result.failures.append(str(exc) if str(src) in str(exc) else f"{src}: {exc}")
        return images[src]

    def refine_batch(s, lmbda, config, part):
        """Refine ``part``, (src, key) of same-size images, as one batch; write and report the records."""
        more = f" (+{len(part) - 1} more)" if len(part) > 1 else ""
        with on_task(f"{s.tag()} {part[0][0]}{more}", max(s.iterations, 1)) as on_step:
            reports = encode_images(model, [images[src] for src, _ in part], config.with_(lmbda=lmbda),
                                    device, batch_size=len(part), refine_model=lm, on_step=on_step,
                                    keep_history=True)
        recs = []
        for (src, key), report in zip(part, reports):
            rec = {"key": key, "image": src, "crop": crop or 0, "model": model_label(model),
                   "model_sha": sha, "label": s.label, "tag": s.tag(), "tau_max": s.tau_max,
                   "lmbda_scale": None if s.lmbda is not None else s.lmbda_scale,
                   **report.record(), "ms_ssim": metrics.ms_ssim(images[src], report.recon),
                   "history": compact_history(report.history) if s.label != "none" else None}
            rec.update(method=s.label, iterations=s.iterations, steps_run=report.iterations)
            if writer:
                writer.write(rec)
            recs.append(rec)
        for (src, _), rec, report in zip(part, recs, reports):
            result.computed += 1
            learned[src].append(rec)
            result.records.append(rec)
            if on_record:
                on_record(rec, report)
        return reports

    try:
        for begin in range(0, len(inputs), EVAL_WINDOW):
            window = inputs[begin : begin + EVAL_WINDOW]
            images.clear()
            for s in settings:
                lmbda = s.resolved_lmbda(model.lmbda)
                config = refine_config(s, base_config)
                todo = []  # (src, key) of the readable images without this setting's record
                for src in window:
                    key = record_key(src, crop, sha, s, lmbda, config)
                    if key in done:
                        learned[src].append(done[key])
                        result.resumed += 1
                        result.records.append(done[key])
                        if on_record:
                            on_record(done[key], None)
                    elif image(src) is not None:
                        todo.append((src, key))
                for batch in batches_by_size([images[src] for src, _ in todo], batch_size):
                    if lm is None:
                        lm = device_model(model, device)
                    halving_on_oom(lambda part: refine_batch(s, lmbda, config, part),
                                   [todo[i] for i in batch])
            for src in window:
                if src in images and images[src] is None:
                    continue  # unreadable, reported once
                for codec, point, target, key in _classical_plan(src, crop, classical, learned[src],
                                                                 anchor, sha):
                    if key in done:
                        rec = done[key]
                        result.resumed += 1
                    else:
                        rgb = image(src)
                        if rgb is None:
                            break
                        rec = _classical_record(key, src, crop, rgb, codec, point, target, sha)
                        if writer:
                            writer.write(rec)
                        result.computed += 1
                    result.records.append(rec)
                    if on_record:
                        on_record(rec, None)
    finally:
        if writer:
            writer.close()
    return result


def _classical_record(key, src, crop, rgb, codec, point, target, model_sha) -> dict:
    """The record of one classical coding of ``rgb`` at the ``target`` bit rate."""
    t0 = time.perf_counter()
    measured = classical_at_rate(rgb, codec, target)
    h, w = rgb.shape[:2]
    return {"key": key, "image": src, "crop": crop or 0, "model": codec, "model_sha": "",
            "label": codec, "method": codec, "tag": f"{codec}-p{point}", "point": point,
            "anchor_model": model_sha,
            "target_bpp": target, "height": h, "width": w, "lmbda": None,
            "lmbda_scale": None, "tau_max": None, "iterations": 0,
            "seconds": time.perf_counter() - t0, "history": None, **measured}


def _classical_plan(src, crop, codecs, image_records, anchor, model_sha):
    """(codec, point, target bpp, key) for one image: one point per anchor rate point."""
    targets = sorted({round(r["bpp"], 4) for r in image_records if r["label"] == anchor})
    return [(c, i, t, record_key(src, crop, model_sha, None, None, codec=c, target=t))
            for c in codecs for i, t in enumerate(targets)]


def _read(src):
    import sys

    from .imageio import read_image

    return read_image(sys.stdin.buffer.read() if src == "-" else src)


def _device(device):
    import torch

    return device if isinstance(device, torch.device) else torch.device(device)


# ---------------------------------------------------------------------------------------------
# Aggregation, curves and BD


def setting_of(rec: dict) -> tuple:
    """What a table row averages over images: the setting at one rate point, for one model."""
    if rec["label"] in CLASSICAL_CODECS:
        return (rec["label"], rec["label"], 0, None, f"{rec.get('anchor_model', '')[:8]}-p{rec['point']}")
    rate = f"x{rec['lmbda_scale']:g}" if rec.get("lmbda_scale") is not None else f"l{rec['lmbda']:g}"
    return (rec["model_sha"], rec["label"], rec["iterations"] if rec["label"] != "none" else 0,
            rec.get("tau_max"), rate)


def curve_of(row: dict) -> str:
    """The curve a row belongs to: the setting without its rate point. Rate points are lambdas
    and models: the models evaluated together (e.g. the shipped qualities) pool into one curve."""
    if row["label"] in CLASSICAL_CODECS:
        return row["label"].upper() if row["label"] != "webp" else "WebP"
    name = row["label"]
    if row["label"] != "none":
        name += f" {row['iterations']}it"
        if row.get("tau_max") is not None and row["tau_max"] != 1.0:
            name += f" tau{row['tau_max']:g}"
    return name


MEAN_FIELDS = ("bpp", "psnr", "ms_ssim", "loss", "base_bpp", "base_psnr", "base_loss", "seconds", "lmbda")


def aggregate(records: list[dict], images: Iterable[str] | None = None) -> list[dict]:
    """One row per setting and rate point: means over images (PSNR: mean of per-image PSNR).

    With ``images``, only those images count. ``n`` is the number of images averaged.
    """
    keep = None if images is None else set(images)
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if keep is None or r["image"] in keep:
            groups.setdefault(setting_of(r), []).append(r)
    names = {k[0]: sel[0]["model"] for k, sel in groups.items() if k[1] not in CLASSICAL_CODECS}
    clash = len(set(names.values())) < len(names)  # e.g. checkpoints of one architecture
    rows = []
    for k, sel in groups.items():
        row = {"model": sel[0]["model"], "model_sha": k[0], "label": k[1], "iterations": k[2],
               "tau_max": k[3], "rate": k[4], "n": len(sel), "images": sorted({r["image"] for r in sel})}
        name = f"{row['model']} {k[0][:6]}" if clash else row["model"]
        row["point"] = f"{name} {k[4]}" if len(names) > 1 and k[1] not in CLASSICAL_CODECS else k[4]
        for f in MEAN_FIELDS:
            vals = [r[f] for r in sel if r.get(f) is not None and not _isinf(r[f])]
            row[f] = float(np.mean(vals)) if vals else None
        row["curve"] = curve_of(row)
        rows.append(row)
    return rows


def _isinf(v) -> bool:
    return isinstance(v, float) and math.isinf(v)


def curves_from_rows(rows: list[dict], metric: str = "psnr") -> dict[str, list[tuple[float, float]]]:
    """Curve name -> [(mean bpp, mean metric)] sorted by rate."""
    out: dict[str, list] = {}
    for r in rows:
        if r["bpp"] is not None and r.get(metric) is not None:
            out.setdefault(r["curve"], []).append((r["bpp"], r[metric]))
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


def bd_table(curves: dict, anchor: str | None = "none", pairs: Iterable[tuple[str, str]] | None = None,
             method: str = "akima", min_points: int = 2) -> list[dict]:
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
        rows.append({"test": test, "anchor": ref, "bd_rate": rate, "bd_psnr": psnr,
                     "points": (len(curves[test]), len(curves[ref])),
                     "overlap": overlap(curves[ref], curves[test])})
    return rows


def bd_matrix(curves: dict, names: list[str] | None = None, method: str = "akima",
              min_points: int = 2) -> dict[tuple[str, str], float]:
    """BD-rate of every curve (row) against every other (column)."""
    names = names or list(curves)
    return {(t, a): bd(curves[a], curves[t], method, min_points)[0]
            for t in names for a in names if t != a}


def mean_histories(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """Curve name -> (steps, mean true R-D loss over images) at each curve's own lambda (x1 or the
    first rate point), for the per-iteration figure (the paper's Figure 2)."""
    by: dict[str, dict[str, list]] = {}
    rates: dict[str, str] = {}
    for r in records:
        h = r.get("history")
        if not h or r["label"] in CLASSICAL_CODECS:
            continue
        row = {"model": r["model"], "label": r["label"], "iterations": r["iterations"],
               "tau_max": r.get("tau_max")}
        name = curve_of(row)
        rate = setting_of(r)[0] + setting_of(r)[4]
        preferred = rates.setdefault(name, rate)
        if rate.endswith("x1") and not preferred.endswith("x1"):
            rates[name] = rate
            by[name] = {}
        if rates[name] != rate:
            continue
        by.setdefault(name, {})[r["image"]] = h
    out = {}
    for name, hists in by.items():
        n = min(len(h["step"]) for h in hists.values())
        steps = list(hists.values())[0]["step"][:n]
        loss = np.mean([h["loss"][:n] for h in hists.values()], axis=0)
        out[name] = (steps, loss.tolist())
    return out


# ---------------------------------------------------------------------------------------------
# Figures (matplotlib, Agg)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


STYLE = {"none": ("k", "o"), "ste": ("tab:gray", "v"), "uniform": ("tab:brown", "^"),
         "atanh": ("tab:blue", "s"), "linear": ("tab:green", "D"), "cosine": ("tab:purple", "P"),
         "ssl": ("tab:red", "*"), "linear3": ("tab:olive", "d"), "cosine3": ("tab:pink", "p"),
         "ssl3": ("tab:orange", "X"), "JPEG": ("0.55", "1"), "WebP": ("0.4", "2"), "AVIF": ("0.25", "3")}


def _style(name: str):
    base = name.split(": ")[-1].split(" ")[0]
    return STYLE.get(base, (None, "."))


def _family(name: str) -> str:
    """A curve's name without its iteration count ('ssl 500it tau0.5' -> 'ssl tau0.5')."""
    return " ".join(t for t in name.split(" ") if not (t.endswith("it") and t[:-2].isdigit()))


def _iteration_shades(names: list[str]) -> dict[str, float]:
    """Line opacity per curve: within a method, the more iterations, the more opaque (0.35-1)."""
    its = {n: next((int(t[:-2]) for t in n.split(" ") if t.endswith("it") and t[:-2].isdigit()), 0)
           for n in names}
    shades = {}
    for n in names:
        counts = sorted({its[m] for m in names if _family(m) == _family(n)})
        rank = counts.index(its[n])
        shades[n] = 1.0 if len(counts) == 1 else 0.35 + 0.65 * rank / (len(counts) - 1)
    return shades


def plot_rd(rows: list[dict], path, title: str = "Rate-distortion (real bitstream bytes)") -> str:
    """PSNR (and MS-SSIM where measured) against bpp, one line per curve; writes a PNG."""
    plt = _plt()
    metrics_ = ["psnr"] + (["ms_ssim"] if any(r.get("ms_ssim") is not None for r in rows) else [])
    fig, axes = plt.subplots(1, len(metrics_), figsize=(5.2 * len(metrics_), 4.0), squeeze=False)
    for ax, metric in zip(axes[0], metrics_):
        curves = curves_from_rows(rows, metric)
        shade = _iteration_shades(list(curves))
        for name, pts in curves.items():
            color, marker = _style(name)
            dashed = name.split(" ")[0] in ("JPEG", "WebP", "AVIF")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color,
                    alpha=shade[name], linestyle="--" if dashed else "-", markersize=5,
                    linewidth=1.2, label=name)
        ax.set_xlabel("bpp (real bytes)")
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "MS-SSIM")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def plot_loss(records: list[dict], path, title: str = "True R-D loss per iteration (mean over images)") -> str | None:
    """The mean true (hard-rounded) R-D loss per iteration for each method: the paper's Figure 2."""
    hists = mean_histories(records)
    if not hists:
        return None
    # a shorter run's trajectory is a prefix of a longer one (the schedule does not depend on the
    # number of iterations): draw the longest run of each method and temperature only
    longest: dict[str, str] = {}
    for name, (steps, _) in hists.items():
        family = _family(name)
        if family not in longest or steps[-1] > hists[longest[family]][0][-1]:
            longest[family] = name
    hists = {n: hists[n] for n in longest.values()}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for name, (steps, loss) in sorted(hists.items()):
        color, _ = _style(name)
        ax.plot(steps, loss, color=color, linewidth=1.2, label=name)
    # the region of interest is at and below the starting loss (the best iterate is what gets
    # coded): a method whose iterates diverge (STE does) leaves the plot instead of flattening it
    start = max(loss[0] for _, loss in hists.values())
    low = min(min(loss) for _, loss in hists.values())
    if start > low:
        ax.set_ylim(low - 0.05 * (start - low), start + 0.25 * (start - low))
    ax.set_xlabel("iteration")
    ax.set_ylabel("true R-D loss (lambda 255^2 MSE + bpp)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def write_plots(records: list[dict], out_dir, prefix: str = "") -> list[str]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = aggregate(records)
    written = [plot_rd(rows, out_dir / f"{prefix}rd.png")]
    loss = plot_loss(records, out_dir / f"{prefix}loss_per_iteration.png")
    if loss:
        written.append(loss)
    return written


def fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)
