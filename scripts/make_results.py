#!/usr/bin/env python3
"""Helpers of scripts/make_results.sh: the models to evaluate, and docs/results.md from the records.

    make_results.py models | default-model         refine options naming the models
    make_results.py semi-lambdas --profile P       --lmbda options of the semi-multi-rate study
    make_results.py page [--profile P]             docs/results.md + docs/figures/*.png

The page shows every profile whose records exist, whatever --profile says: the full-size Kodak
records (docs/results/full.jsonl) first, then the reduced CPU profile (docs/results/reduced.jsonl).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sgacodec import evaluate as ev  # noqa: E402

DOC = ROOT / "docs" / "results.md"
FIG = ROOT / "docs" / "figures"
DATA = ROOT / "docs" / "results"
CLASSICAL = set(ev.CLASSICAL_CODECS)
ev.STYLE["sweep"] = ("tab:orange", "D")
# The full protocol's main grid (scripts/make_results.sh stage 1 on a GPU): (method, iterations).
FULL_GRID = (("none", 0), ("ssl", 500), ("ssl", 2000), ("atanh", 500), ("atanh", 2000))
OTHER_METHODS = ["ste", "uniform", "linear", "cosine", "linear3", "ssl3"]  # its stage 2


# ---------------------------------------------------------------------------------------------
# The models


def checkpoints() -> list[str]:
    return os.environ.get("CHECKPOINTS", "").split()


def model_table() -> list[dict]:
    """[{'option': [...], 'lmbda': float, 'default': bool}] sorted by lambda."""
    cps = checkpoints()
    if cps:
        from sgacodec.models import read_state_dict

        out = []
        for c in cps:
            _, meta = read_state_dict(Path(c))
            out.append({"option": ["--checkpoint", c], "lmbda": float(meta["lmbda"]), "default": False})
        out.sort(key=lambda m: m["lmbda"])
        out[len(out) // 2]["default"] = True
        return out
    from sgacodec.models import embedded_manifest

    manifest = embedded_manifest()
    models = sorted(manifest["models"], key=lambda m: m["lmbda"])
    if not models:
        sys.exit("no embedded models in sgacodec/weights; set CHECKPOINTS")
    default = manifest.get("default_quality", models[len(models) // 2]["quality"])
    return [{"option": ["--quality", str(m["quality"])], "lmbda": float(m["lmbda"]),
             "default": m["quality"] == default, "quality": m["quality"], "name": m.get("name"),
             "sha": m["sha256"][:16]}
            for m in models]


def semi_lambdas(profile: str) -> list[float]:
    """Inference lambdas for the default model: between it and its neighbours, at them, beyond."""
    models = model_table()
    lams = [m["lmbda"] for m in models]
    d = next(i for i, m in enumerate(models) if m["default"])
    out = []
    for j in (d - 1, d + 1):
        ratio = (lams[j] / lams[d]) if 0 <= j < len(lams) else (2.0 if j > d else 0.5)
        steps = (0.5, 1.5) if profile != "full" else (0.5, 1.0, 1.5)
        out += [lams[d] * ratio**s for s in steps]
    return sorted(float(f"{v:.5g}") for v in out)


# ---------------------------------------------------------------------------------------------
# Selections and tables


def f(v, spec=".2f"):
    return ev.fmt(v, spec)


def pct(v, spec="+.2f"):
    return "-" if v is None or math.isnan(v) else format(v, spec) + "%"


def rel(v, ref) -> float:
    """v against ref, in percent (NaN where either is missing)."""
    return (v / ref - 1) * 100 if v is not None and ref else math.nan


def common_images(records, groups) -> set:
    """Images present in every group of records (so means compare like with like)."""
    sets = [{r["image"] for r in g} for g in groups if g]
    return set.intersection(*sets) if sets else set()


def at_default(r, default_sha):
    return r.get("model_sha") == default_sha


def is_x1(r):
    return r.get("lmbda_scale") == 1.0


def tau_of(r):
    return r.get("tau_max") if r.get("tau_max") is not None else 1.0


def owner(r):
    """The model of a record: its own, or for a classical codec the model whose rates it matched."""
    return r["model_sha"] or r.get("anchor_model")


def rows_for(records):
    return sorted(ev.aggregate(records), key=lambda r: (r["curve"], r["bpp"] or 0))


def curve_order(name: str):
    """Sort key for curve names like "ssl 500it": by method, then by iteration count."""
    method, _, its = name.partition(" ")
    return method, int(its.removesuffix("it")) if its.removesuffix("it").isdigit() else 0, its


def md_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def cmd(profile, *stages) -> str:
    """The commands of these stages (the first one made this section; the others add rows); with no
    stages, those of every stage of the profile, in name order."""
    paths = [DATA / f"{profile}.stage{s}.cmd" for s in stages] or sorted(DATA.glob(f"{profile}.stage*.cmd"))
    out = [p.read_text().strip() for p in paths if p.exists()]
    return "```\n" + ("\n".join(out) or "(not run yet)") + "\n```"


def load(profile):
    """(records, stale): the profile's records of the shipped models, with one display name per
    model, and how many model versions were left out (records of models since retrained stay in
    the file but not on the page)."""
    records = ev.load_records(DATA / f"{profile}.jsonl")
    shipped = {m["sha"] for m in model_table() if m.get("sha")}
    stale = set()
    if shipped:
        stale = {r["model_sha"] for r in records if r["model_sha"] and r["model_sha"] not in shipped}
        records = [r for r in records if owner(r) in shipped]
    names = {}  # one display name per model: the embedded name where some record has it
    for r in records:
        if r["label"] not in CLASSICAL and (r["model_sha"] not in names or r["model"].startswith("embedded")):
            names[r["model_sha"]] = r["model"]
    for r in records:
        if r["label"] not in CLASSICAL:
            r["model"] = names[r["model_sha"]]
    return records, len(stale)


LOSS_HEADER = ["setting", "bpp", "bpp vs none", "PSNR", "PSNR vs none (dB)", "MS-SSIM", "true R-D loss",
               "loss vs none", "s / image"]


def loss_table(sel_records, title=lambda r: r["curve"]):
    """Rows of LOSS_HEADER for one model's settings (means over the images all of them have;
    'none' first, then by true R-D loss, classical codecs last), those images, the records used."""
    groups = {}
    for r in sel_records:
        groups.setdefault(ev.setting_of(r), []).append(r)
    imgs = common_images(sel_records, list(groups.values()))
    sel = [r for r in sel_records if r["image"] in imgs]
    rws = rows_for(sel)
    none = next((r for r in rws if r["label"] == "none"), None) or {"bpp": None, "psnr": None, "loss": None}
    out = []
    for r in sorted(rws, key=lambda r: (r["label"] != "none", r["label"] in CLASSICAL, r["loss"] or 0)):
        dpsnr = r["psnr"] - none["psnr"] if None not in (r["psnr"], none["psnr"]) else None
        out.append([title(r), f(r["bpp"], ".4f"), pct(rel(r["bpp"], none["bpp"])), f(r["psnr"], ".2f"),
                    f(dpsnr, "+.2f"), f(r["ms_ssim"], ".4f"), f(r["loss"], ".4f"),
                    pct(rel(r["loss"], none["loss"])), f(r["seconds"], ".1f")])
    return out, imgs, sel


# ---------------------------------------------------------------------------------------------
# The page


def page(profile: str | None = None) -> str:
    """docs/results.md. Every profile with records is on it, whichever ``profile`` is given (the
    shell script passes its own): the full-size section, then the reduced one."""
    models = model_table()
    FIG.mkdir(parents=True, exist_ok=True)
    L = []
    w = L.append
    w("# R-D results of the shipped models")
    w("")
    w("Two sets of measurements, each with the commands that produced it: the full-size Kodak "
      "images on a GPU (the issue's protocol; its section lists what of it is still missing), then a "
      "reduced CPU profile (a few center crops, fewer iterations) that runs every study of the "
      "protocol at a small scale.")
    w("")
    w("All rates are real bitstream bytes (bpp = 8 x file bytes / pixels, the file the stock "
      "CompressAI decoder reads), PSNR and MS-SSIM are measured on the decoded 8-bit image, and the "
      "R-D loss is lambda x 255^2 x MSE + bpp at the model's training lambda. Means are over images. "
      "BD-rate and BD-PSNR use the `bjontegaard` package (Akima interpolation, over the overlapping "
      "range; with only two points per curve it interpolates linearly); negative BD-rate means fewer "
      "bits at equal PSNR. A curve's rate points are the shipped models "
      f"({', '.join('lambda ' + format(m['lmbda'], 'g') for m in models)}), each refined at its own "
      "lambda. Records of model versions no longer shipped stay in the records files but are left out.")
    w("")
    w("Regenerate (resumable; records in `docs/results/`, one JSON line per image and setting):")
    w("")
    w("```\nPAGE_ONLY=1 scripts/make_results.sh        # this page and docs/figures/, from the records\n"
      "PROFILE=reduced scripts/make_results.sh    # the reduced records (CPU)\n"
      "KODAK=.kodak scripts/make_results.sh       # the full protocol (GPU); continues full.jsonl,\n"
      "                                           # whose records name the images .kodak/kodimNN.png\n```")
    w("")
    w("The same tool evaluates any image set; for example (records make it resumable):")
    w("")
    w("```\nsgacodec refine photos/ --quality 1 --quality 2 --quality 3 --method none --method atanh "
      "--method ssl \\\n    --iterations 500 --classical jpeg,webp,avif --records photos.jsonl --plot figures/\n```")
    w("")
    full_section(w)
    profile_section(w, "reduced")
    return "\n".join(L)


def full_section(w):
    """The full-size Kodak records (docs/results/full.jsonl), which may be partial: one table per
    model and setting, BD figures over the models every refined setting has, the classical codecs,
    the figures, what is missing from the protocol, and what that leaves of the issue's targets."""
    records, stale = load("full")
    learned = [r for r in records if r["label"] not in CLASSICAL]
    main = [r for r in records if r["label"] in CLASSICAL
            or (is_x1(r) and tau_of(r) == 1.0 and (r["label"], r["iterations"]) in FULL_GRID)]
    lams = {r["model_sha"]: r["lmbda"] for r in learned if is_x1(r)}
    shas = [m["sha"] for m in model_table() if m.get("sha")] or sorted(lams, key=lams.get)
    names = {r["model_sha"]: r["model"] for r in learned}

    def name(sha):
        return names.get(sha, sha[:8])

    images = sorted({r["image"] for r in records})
    n = len(images)
    have = {}  # (model, method, iterations) -> images
    for r in main:
        have.setdefault((r["model_sha"], r["label"], r["iterations"]), set()).add(r["image"])
    missing = []
    for sha in shas:
        cells = [f"{label}{f' {it}' if it else ''}" + (f" ({len(got)} of {n} images)" if got else "")
                 for label, it in FULL_GRID for got in [have.get((sha, label, it), set())] if len(got) < n]
        if cells:
            missing.append(f"{name(sha)}: no {', '.join(cells)}")
    studies = {  # the protocol's other stages: is there any record of them?
        f"the other rounding methods ({', '.join(OTHER_METHODS)})": lambda r: r["label"] in OTHER_METHODS,
        "the tau_max study": lambda r: r["label"] not in CLASSICAL and tau_of(r) != 1.0,
        "the semi-multi-rate study (other inference lambdas)":
            lambda r: r["label"] not in CLASSICAL and not is_x1(r),
        "the classical codecs": lambda r: r["label"] in CLASSICAL}
    absent = [k for k, test in studies.items() if not any(map(test, records))]
    partial = " (partial)" if missing or absent or not records else ""
    w("## Full-size Kodak on an H100" + partial)
    w("")
    if not records:
        w("_No records yet_ (`docs/results/full.jsonl`).")
        w("")
        return
    # settings with every image only (an interrupted one is listed as missing, not averaged)
    count = Counter(ev.setting_of(r) for r in main)
    main = [r for r in main if count[ev.setting_of(r)] == n]
    sizes = {}
    for r in records:
        sizes.setdefault(f"{r['width']}x{r['height']}", set()).add(r["image"])
    evals = sorted({str(v) for r in learned if r["label"] != "none"
                    for v in [json.loads(r["key"]).get("eval_every")]})
    w(f"{n} Kodak images at full size ({', '.join(f'{len(v)} of {k}' for k, v in sorted(sizes.items()))}), "
      "the shipped models, refined on one NVIDIA H100 80GB HBM3 at each model's own lambda with the "
      f"true loss evaluated every {' / '.join(evals) or '-'} steps (the best evaluated iterate is "
      "coded); the classical codecs were computed afterwards on a CPU at the rates of the 'none' "
      "records." + (" The GPU session's time ran out before the protocol was complete." if partial else ""))
    w("")
    if missing or absent:
        w("**Missing from the full protocol** (`scripts/make_results.sh` stages 1 to 4 on a GPU), so "
          "not on this page:")
        w("")
        for m in missing:
            w(f"- {m}")
        for a in absent:
            w(f"- {a}: not run")
        w("")
    if stale:
        w(f"Records of {stale} model version(s) no longer shipped are left out.")
        w("")

    # ---- per model
    w("### Per model, at its own lambda")
    w("")
    w("The commands that wrote the records, run from the repository root (`.kodak/` holds the Kodak "
      "images); a comment under a command says where it stopped:")
    w("")
    w(cmd("full"))
    w("")
    tab = []
    for sha in shas:
        rows, imgs, _ = loss_table([r for r in main if owner(r) == sha])
        tab += [[name(sha), len(imgs)] + row for row in rows]
    w(md_table(["model", "images"] + LOSS_HEADER, tab))
    w("")
    tot = {}
    for r in main:
        if r["label"] not in CLASSICAL and r["label"] != "none":
            k = f"{name(r['model_sha'])} {ev.curve_of(r)}"
            tot[k] = tot.get(k, 0.0) + r["seconds"]
    w("Lower loss is better. 'vs none' compares with the same model's 'none' row. The classical "
      "codecs are coded at each image's 'none' rate (quality by bisection), so they have no R-D loss "
      "at a lambda, and their time is that of the bisection on a CPU. A refined image's time is its "
      "batch's wall time divided by the batch's size (same-size images refine together: the "
      "landscape and the portrait images), so it includes each call's first-batch warm-up and "
      "depends on the batch: it is not a controlled speed comparison (docs/performance.md is). "
      f"Summed over the {n} images: " + "; ".join(f"{k} {v:.1f} s" for k, v in sorted(tot.items())) + ".")
    w("")

    # ---- curves and BD
    refined = [(label, it) for label, it in FULL_GRID if label != "none"]
    sets = [{r["model_sha"] for r in main if (r["label"], r["iterations"]) == c} for c in refined]
    sets = [x for x in sets if x]  # the models of each refined setting that has any
    bd_shas = [s for s in shas if sets and all(s in x for x in sets)]
    w("### Curves and BD figures")
    w("")
    w(cmd("full"))
    w("")
    rows_all = rows_for(main)
    ev.plot_rd(rows_all, FIG / "full_rd.png", title=f"Full-size Kodak ({n} images), real bytes{partial}")
    bd_rows = []
    if bd_shas:
        rows = rows_for([r for r in main if owner(r) in bd_shas])
        curves = ev.curves_from_rows(rows)
        its = sorted({it for _, it in refined})
        pairs = ([(f"{label} {it}it", "none") for label, it in refined]
                 + [(f"ssl {it}it", f"atanh {it}it") for it in its]
                 + [(ev.curve_of({"label": c}), "none") for c in ev.CLASSICAL_CODECS])
        bd_rows = ev.bd_table(curves, pairs=pairs)
        npts = min(len(v) for v in curves.values())
        w(f"Over the models that have every refined setting here: {', '.join(name(s) for s in bd_shas)}; "
          f"each curve has {npts} rate point(s)"
          + (" (the other models lack refined records)." if len(bd_shas) < len(shas) else ".")
          + (" **With two points, each curve is one straight segment (log rate against PSNR) between two "
             "operating points, and a BD figure averages the gap between two such segments over the part "
             "of the range both cover: weak evidence, indicative only.**" if npts <= 2 else ""))
        w("")
        w(md_table(["test", "anchor", "points (test / anchor)", "common PSNR range", "BD-rate",
                    "BD-PSNR (dB)"],
                   [[b["test"], b["anchor"], f"{b['points'][0]} / {b['points'][1]}", f"{b['overlap']:.0%}",
                     pct(b["bd_rate"]), f(b["bd_psnr"], "+.3f")] for b in bd_rows]))
        w("")
        w("'common PSNR range': the share of the two curves' joint PSNR range that both cover. A '-' "
          "means no common range.")
        w("")
    else:
        w("_No refined setting covers two models: no BD figure._")
        w("")
    w("All the settings above, every model and rate point ('none' and the classical codecs also at "
      "the models without refined records):")
    w("")
    w("![R-D curves, full-size Kodak](figures/full_rd.png)")
    w("")
    figs = []
    for sha in shas:
        recs = [r for r in main if r["model_sha"] == sha and r.get("history")]
        p = FIG / f"full_loss_{re.sub(r'[^A-Za-z0-9]+', '_', name(sha)).strip('_')}.png"
        if ev.plot_loss(recs, p, title=f"{name(sha)}: true R-D loss per iteration (mean of {n} images)"):
            figs.append((name(sha), p.name))
    if figs:
        w("True (hard-rounded) R-D loss per iteration, mean over the images, at the model's lambda "
          "(the paper's Figure 2; one point every evaluation; the 500-iteration runs follow the first "
          "500 steps of the 2000-iteration ones, so only the longest run of each method is drawn):")
        w("")
        for nm, p in figs:
            w(f"![loss per iteration, {nm}](figures/{p})")
        w("")

    # ---- targets
    per = {(r["model_sha"], r["curve"]): r for r in rows_for([r for r in main if r["label"] not in CLASSICAL])}
    by_image = {(r["model_sha"], ev.curve_of(r), r["image"]): r for r in main if r["label"] not in CLASSICAL}

    def change(test, anchor):
        """Per model: the mean true loss of test against anchor, and on how many images it is lower."""
        out = []
        for s in shas:
            if (s, test) in per and (s, anchor) in per:
                lower = sum(by_image[(s, test, i)]["loss"] < by_image[(s, anchor, i)]["loss"] for i in images)
                out.append((name(s), rel(per[(s, test)]["loss"], per[(s, anchor)]["loss"]), lower))
        return out

    def best_by(curve, step):
        """Per model: the mean over images of the lowest true loss the histories reached by ``step``."""
        out = {}
        for s in shas:
            hs = [r["history"] for (m, c, _), r in by_image.items() if (m, c) == (s, curve) and r.get("history")]
            if hs:
                out[s] = sum(min(v for t, v in zip(h["step"], h["loss"]) if t <= step) for h in hs) / len(hs)
        return out

    def drift(short, long):
        """The largest relative gap between a short run's history and the start of the long run's."""
        gaps = [abs(a / b - 1) for (s, c, i), r in by_image.items() if c == short and r.get("history")
                for a, b in zip(r["history"]["loss"], by_image[(s, long, i)]["history"]["loss"])
                if (s, long, i) in by_image]
        return max(gaps) if gaps else math.nan

    def said(ch):
        return "; ".join(f"{nm} {pct(v)} (lower on {k} of {n} images)" for nm, v, k in ch)

    bdd = {(b["test"], b["anchor"]): b for b in bd_rows}
    lacking = [name(s) for s in shas if s not in bd_shas]
    w("### What this shows about the issue's targets")
    w("")
    b = bdd.get(("ssl 2000it", "none"))
    w("- **SSL at 2000 iterations against none on Kodak: at most -10% BD-rate on real bytes.** "
      + (f"Measured: BD-rate {pct(b['bd_rate'], '+.1f')}, BD-PSNR {f(b['bd_psnr'], '+.2f')} dB over "
         f"{b['points'][0]} rate points ({', '.join(name(s) for s in bd_shas)}); mean true R-D loss at "
         f"each model's lambda: {said(change('ssl 2000it', 'none'))}. "
         + ("On these points the figure is inside the target" if b["bd_rate"] <= -10 else
            "On these points the figure misses the target")
         + ", but that is not a verdict: "
         + ("a two-point BD-rate is a linear interpolation over a short overlap and is weak evidence"
            if b["points"][0] <= 2 else "the curve is short")
         + (f", and {', '.join(lacking)} has no SSL record, so the protocol's curve over all the shipped "
            "models is not measured." if lacking else ".")
         if b else "No SSL 2000 records on two models or more: cannot be shown."))
    w("- **SSL better than atanh at both 500 and 2000 iterations.**")
    shown = []
    for it in sorted({it for _, it in refined}):
        b = bdd.get((f"ssl {it}it", f"atanh {it}it"))
        if b:
            ch = change(f"ssl {it}it", f"atanh {it}it")
            ahead = b["bd_rate"] < 0 and all(v < 0 for _, v, _ in ch)
            behind = b["bd_rate"] > 0 and all(v > 0 for _, v, _ in ch)
            shown.append(ahead)
            w(f"  - {it} iterations: BD-rate of SSL against atanh {pct(b['bd_rate'])}, BD-PSNR "
              f"{f(b['bd_psnr'], '+.3f')} dB ({b['points'][0]} points); mean true R-D loss of SSL against "
              f"atanh: {said(ch)}. "
              + ("SSL is ahead on every measure here" if ahead else "SSL is behind on every measure here"
                 if behind else "The measures disagree")
              + (f"; {', '.join(lacking)} not measured." if lacking else "."))
        else:
            gone = [f"{m} {it}" for m in ("ssl", "atanh") if not any(r["label"] == m and r["iterations"] == it
                                                                       for r in main)]
            shown.append(None)
            w(f"  - {it} iterations: cannot be shown, there are no complete {' or '.join(gone) or 'paired'} "
              "records on two models.")
            longest = max(i for _, i in refined)
            a, s = best_by(f"atanh {longest}it", it), best_by(f"ssl {longest}it", it)
            if it < longest and a and s:
                w(f"    Indirect only, not the protocol's measurement: in the histories of the {longest}-"
                  f"iteration runs (the true loss evaluated during refinement: hard-rounded latents, rate "
                  f"from the entropy model rather than the file), the best loss reached by step {it}, SSL "
                  "against atanh, is " + "; ".join(f"{name(x)} {pct(rel(s[x], a[x]))}" for x in shas
                                                    if x in a and x in s)
                  + f". The temperature schedule does not depend on a run's length, so a {it}-iteration run "
                  f"follows the first {it} steps of a longer one up to GPU nondeterminism: the ssl {it} "
                  f"histories differ from the first {it} steps of the ssl {longest} ones by at most "
                  f"{pct(drift(f'ssl {it}it', f'ssl {longest}it') * 100, '.2f')} per evaluation.")
    w("  - Both counts: " + ("not established: a comparison is missing." if None in shown else
                             "SSL ahead at both here." if all(shown) else "SSL not ahead at both here."))
    w("")


def profile_section(w, profile: str):
    """A profile run by every stage of scripts/make_results.sh (today the reduced one): the main
    R-D comparison, all rounding methods, tau_max, semi-multi-rate, and the targets."""
    records, stale = load(profile)
    models = model_table()
    reduced = profile != "full"
    w("## Reduced CPU profile" if reduced else "## Full protocol")
    w("")
    if not records:
        w(f"_No records of the shipped models yet_ (`docs/results/{profile}.jsonl`; "
          + ("`PROFILE=reduced scripts/make_results.sh` makes them)." if reduced else "see above)."))
        w("")
        return
    learned = [r for r in records if r["label"] not in CLASSICAL]
    shas = {}
    for r in learned:
        shas.setdefault(r["model_sha"], (r["model"], r["lmbda"] if is_x1(r) else None))
    default_sha = None
    for sha, (name, lam) in shas.items():
        dm = next(m for m in models if m["default"])
        if lam is not None and abs(lam - dm["lmbda"]) < 1e-9:
            default_sha = sha
    default_name = shas.get(default_sha, ("?",))[0]
    iters = sorted({r["iterations"] for r in learned if r["label"] != "none"})
    protocol_iters = {500, 2000} <= set(iters)
    images = sorted({r["image"] for r in records})
    crop = sorted({r["crop"] for r in records})
    if reduced:
        w("> **REDUCED SETTINGS (CPU).** These numbers come from a CPU-only session: "
          f"{len(images)} Kodak image(s) ({', '.join(Path(i).name for i in images)}), center-cropped to "
          f"{crop[0]}x{crop[0]} pixels, refined for {' / '.join(map(str, iters))} iterations"
          + (" (per study: see below)" if protocol_iters else " instead of 500 / 2000")
          + ", "
          + ("on checkpoints given with CHECKPOINTS" if checkpoints() else
             "on the shipped embedded models") + ". They show that the evaluation "
          "pipeline works and give a first, noisy look at every study; they are **not** the paper's "
          "protocol and do not establish (or refute) its claims. The section above has the full-size "
          "measurements made so far.")
    else:
        w(f"Full protocol: {len(images)} Kodak images at full size, {' and '.join(map(str, iters))} iterations.")
    w("")
    if reduced:
        w("What these numbers are not:")
        w("")
        w("- Not Kodak as the paper uses it: small center crops have a larger share of side "
          "information and header bytes, and 3 images make every mean noisy.")
        w("- Not the paper's base models: the shipped models are much weaker than the published "
          "ones (docs/models.md). Gains are relative to these base models.")
        if protocol_iters:
            studies = {  # iteration counts each study ran at, from its records
                "the main comparison (none, atanh, SSL)": {
                    r["iterations"] for r in learned if r["label"] in ("atanh", "ssl") and is_x1(r)
                    and tau_of(r) == 1.0},
                "the other rounding methods": {
                    r["iterations"] for r in learned if r["label"] not in ("none", "atanh", "ssl")},
                "tau_max": {r["iterations"] for r in learned if tau_of(r) != 1.0},
                "semi-multi-rate": {r["iterations"] for r in learned if not is_x1(r)}}
            w("- Iterations per study: " + "; ".join(
                f"{name} {' / '.join(map(str, sorted(its))) or 'not run'}" for name, its in studies.items())
              + ". Methods converge at different speeds (atanh at tau_max = 1 barely moves in 100 "
              "steps), so a ranking from a study not run at 2000 need not hold at 2000.")
        else:
            w("- Not 500 / 2000 iterations: methods converge at different speeds (atanh at tau_max = 1 "
              "barely moves in 100 steps), so rankings at 100 / 300 steps need not hold later.")
        w("- Curves have one point per shipped model (3), which Akima interpolation accepts but "
          "which makes BD values sensitive to each point.")
        w("")
    if stale:
        w(f"Records of {stale} model version(s) no longer shipped (retrained since) are kept in "
          "the records file but left out of this page.")
        w("")
    if any(r.get("provenance") for r in records):
        w("Note: to save time, some records of the default model (the tau_max and 300-iteration runs) "
          "were computed from an export of the same training checkpoint before the manifest was "
          "written; its weights are the shipped ones (identical per-iteration trajectories were "
          "checked), only its file name made the bitstream header 6 bytes longer, which was "
          "subtracted. The records say so in their `provenance` field.")
        w("")
    w("Regenerate these records: `" + ("PROFILE=reduced " if reduced else "") + "scripts/make_results.sh`.")
    w("")

    # ---- 1. main
    main = [r for r in records if r["label"] in CLASSICAL
            or (is_x1(r) and tau_of(r) == 1.0 and r["label"] in ("none", "atanh", "ssl"))]
    groups = {}
    for r in main:
        groups.setdefault(ev.setting_of(r), []).append(r)
    keep = common_images(main, [g for k, g in groups.items() if k[1] not in CLASSICAL])
    main = [r for r in main if r["image"] in keep]
    rows = rows_for(main)
    npts = ev.curves_from_rows(rows)
    need = min(len(npts.get("none", [])), 2) or 2
    rows = [r for r in rows if len(npts[r["curve"]]) >= need]  # curves over all models only
    curves = ev.curves_from_rows(rows)
    w("### 1. Refinement against the base model, and classical codecs")
    w("")
    w(cmd(profile, 1, 5, 6))
    w("")
    if rows:
        ev.plot_rd(rows, FIG / "rd.png", title=("REDUCED: " if reduced else "") + "Kodak, real bytes")
        w("![R-D curves](figures/rd.png)")
        w("")
        ptab = []
        for name, pts in curves.items():
            sel = [r for r in rows if r["curve"] == name]
            b = ev.bd(curves["none"], pts) if "none" in curves and name != "none" else (math.nan, math.nan)
            t = [r["seconds"] for r in sel if r["seconds"] is not None]
            ptab.append([name, len(pts), " / ".join(f"{p[0]:.3f}" for p in pts),
                         " / ".join(f"{p[1]:.2f}" for p in pts),
                         pct(b[0], "+.1f"), f(b[1], "+.2f"),
                         f(sum(t) / len(t), ".1f") if t else "-"])
        w(md_table(["curve", "points", "mean bpp per point", "mean PSNR per point", "BD-rate vs none",
                    "BD-PSNR vs none (dB)", "s / image"], ptab))
        w("")
        w(f"Images: {len(keep)}. Time is wall-clock per image and setting on the machine that ran it"
          + (" (a shared 2-core CPU, one thread)." if reduced else ".")
          + " A '-' BD-rate means the two curves share no PSNR range (BD-rate averages over the "
          "common PSNR range, BD-PSNR over the common log-rate range).")
        w("")
        pairs = [(f"ssl {i}it", f"atanh {i}it") for i in iters if f"ssl {i}it" in curves]
        bd_rows = ev.bd_table(curves, pairs=pairs)
        if bd_rows:
            w("SSL (SGA+) against atanh (SGA) at each iteration count:")
            w("")
            w(md_table(["test", "anchor", "BD-rate", "BD-PSNR (dB)"],
                       [[b["test"], b["anchor"], pct(b["bd_rate"]), f(b["bd_psnr"], "+.3f")]
                        for b in bd_rows]))
            w("")
    else:
        w("_Not run yet._")
        w("")
    main_bd = {name: ev.bd(curves["none"], pts) for name, pts in curves.items()
               if "none" in curves and name != "none"}

    # ---- 2. single-model comparisons (other methods, longer runs): R-D loss at the model's lambda
    header = LOSS_HEADER
    w("### 2. All rounding methods")
    w("")
    w(cmd(profile, 2, 1, 5, 6, 7, 8))
    w("")
    allm = [r for r in learned if is_x1(r) and tau_of(r) == 1.0 and at_default(r, default_sha)]
    tab, imgs, sel2 = loss_table(allm, lambda r: r["curve"]) if allm else ([], set(), [])
    if tab:
        w(f"Model: {default_name} at its own lambda; {len(imgs)} image(s). Lower loss is better; the "
          "loss is measured on the real file.")
        w("")
        w(md_table(header, tab))
        w("")
        # BD-rates over the models: only curves run on every model the none curve has
        allc = ev.curves_from_rows(rows_for([r for r in learned if is_x1(r) and tau_of(r) == 1.0]))
        nmodels = max(len(allc.get("none", [])), 2)
        allc = {k: v for k, v in sorted(allc.items(), key=lambda kv: curve_order(kv[0]))
                if len(v) >= nmodels}
        bd_all = ev.bd_table(allc, "none")
        if bd_all:
            w(f"BD-rate and BD-PSNR against none over the {nmodels} models (the settings run on every "
              "model; one curve point per model):")
            w("")
            w(md_table(["curve", "BD-rate vs none", "BD-PSNR vs none (dB)"],
                       [[b["test"], pct(b["bd_rate"], "+.1f"), f(b["bd_psnr"], "+.2f")] for b in bd_all]))
            w("")
        hist = [r for r in sel2 if r["label"] != "none"]
        if ev.plot_loss(hist, FIG / "loss_per_iteration.png",
                        title=("REDUCED: " if reduced else "") + f"true R-D loss per iteration, {default_name}"):
            w("True (hard-rounded) R-D loss per iteration, mean over images, at the model's lambda "
              "(the paper's Figure 2; the best iterate is what gets coded):")
            w("")
            w("![loss per iteration](figures/loss_per_iteration.png)")
            w("")
    else:
        w("_Not run yet._")
        w("")

    # ---- 3. tau_max
    w("### 3. Sensitivity to tau_max")
    w("")
    w(cmd(profile, 3, 7, 8))
    w("")
    # the full profile: its longest runs; the reduced one: every count the study was run at
    tau_its = ({max(iters)} if not reduced else
               {r["iterations"] for r in learned if r["label"] in ("atanh", "ssl") and tau_of(r) != 1.0
                and at_default(r, default_sha)}) if iters else set()
    taus = [r for r in learned if is_x1(r) and at_default(r, default_sha)
            and (r["label"] == "none" or r["label"] in ("atanh", "ssl") and r["iterations"] in tau_its)]
    tab, imgs, _ = loss_table(taus, lambda r: r["curve"] + ("" if r["label"] == "none" or tau_of(r) != 1.0
                                                         else " tau1"))
    if len(tab) > 1:
        w(f"Model: {default_name}; {len(imgs)} image(s).")
        w("")
        w(md_table(header, tab))
        w("")
    else:
        w("_Not run yet._")
        w("")

    # ---- 4. semi-multi-rate
    w("### 4. Semi-multi-rate: one model at other lambdas")
    w("")
    w(cmd(profile, 4, 1, 7))
    w("")
    swept = {r["iterations"] for r in learned if at_default(r, default_sha) and r["label"] == "ssl"
             and not is_x1(r) and tau_of(r) == 1.0}  # iteration counts the lambda sweep was run at
    if swept:  # its longest run
        semi_it = max(swept)
    else:  # not run: the count the sweep would use (the page then says "not run yet")
        semi_it = max(iters) if not reduced else (min(iters) if iters else 0)
    semi = [r for r in learned if at_default(r, default_sha) and r["label"] == "ssl"
            and r["iterations"] == semi_it and tau_of(r) == 1.0]
    if len([r for r in semi if not is_x1(r)]):
        base = [r for r in main if r["label"] in ("none", "ssl") and r["iterations"] in (0, semi_it)]
        imgs = common_images(semi + base, [semi, base])
        srows = rows_for([r for r in semi if r["image"] in imgs])
        for r in srows:
            r["curve"] = f"sweep of lambda, {default_name} only (ssl {semi_it}it)"
        brows = rows_for([r for r in base if r["image"] in imgs])
        for r in brows:
            r["curve"] = r["curve"] + " (all models)"
        ev.plot_rd(srows + brows, FIG / "semi_multirate.png",
                   title=("REDUCED: " if reduced else "") + "semi-multi-rate")
        sc = ev.curves_from_rows(srows)
        bc = ev.curves_from_rows(brows)
        w(f"{default_name} refined with SSL at inference lambdas between and beyond its neighbours' "
          f"training lambdas; {len(imgs)} image(s).")
        w("")
        w(md_table(["inference lambda", "bpp", "PSNR", "MS-SSIM", "R-D loss at that lambda"],
                   [[f"{r['lmbda']:.5g}", f(r["bpp"], ".4f"), f(r["psnr"], ".2f"), f(r["ms_ssim"], ".4f"),
                     f(r["loss"], ".4f")] for r in sorted(srows, key=lambda r: r["lmbda"])]))
        w("")
        sname = next(iter(sc))
        brs = [[f"{sname}", k, pct(v[0], "+.1f"), f(v[1], "+.2f"),
                f(ev.overlap(bc[k], sc[sname]), ".0%")]
               for k in bc for v in [ev.bd(bc[k], sc[sname])]]
        w(md_table(["test", "anchor", "BD-rate", "BD-PSNR (dB)", "overlap (PSNR range)"], brs))
        w("")
        w("![semi-multi-rate](figures/semi_multirate.png)")
        w("")
    else:
        w("_Not run yet._")
        w("")

    # ---- targets
    w("### Targets of issue 5" + (" (reduced settings)" if reduced else ""))
    w("")
    main_iters = sorted({r["iterations"] for r in rows if r["label"] == "ssl"})
    long = f"ssl {max(main_iters)}it" if main_iters else None
    v = main_bd.get(long, (math.nan, math.nan))[0] if long else math.nan
    w(f"- SSL at the longest run over all models here ({max(main_iters) if main_iters else '-'} "
      "iterations) against none: "
      f"BD-rate {pct(v, '+.1f')} (target: at most -10%, aim -15%, at 2000 iterations on full Kodak). "
      + ("Measured with reduced settings, so this is **not** a verdict on the target."
         if reduced else ("Target met." if v <= -10 else "Target **not** met.")))
    for i in main_iters:
        b = ev.bd_table(curves, pairs=[(f"ssl {i}it", f"atanh {i}it")])
        if b:
            r = b[0]["bd_rate"]
            verdict = "SSL better" if r < 0 else "SSL not better" if r >= 0 else "undetermined: too few points"
            w(f"- SSL against atanh at {i} iterations: BD-rate {pct(r)} ({verdict}"
              + (", reduced settings" if reduced else "") + ").")
    single = {(r["label"], r["iterations"]): r for r in rows_for(
        [r for r in sel2 if r["label"] in ("atanh", "ssl")])} if sel2 else {}
    for i in iters:
        if ("ssl", i) in single and ("atanh", i) in single:
            a_, s_ = single[("atanh", i)]["loss"], single[("ssl", i)]["loss"]
            w(f"- {default_name} alone, {i} iterations: mean true R-D loss SSL {s_:.4f} vs atanh {a_:.4f} "
              f"({(s_ / a_ - 1) * 100:+.2f}%; lower is better" + (", reduced settings" if reduced else "") + ").")
    w("")



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["models", "default-model", "semi-lambdas", "page"])
    ap.add_argument("--profile", default="full", help="for semi-lambdas; page shows every profile")
    a = ap.parse_args()
    if a.what == "models":
        print(" ".join(" ".join(m["option"]) for m in model_table()))
    elif a.what == "default-model":
        print(" ".join(next(m for m in model_table() if m["default"])["option"]))
    elif a.what == "semi-lambdas":
        print(" ".join(f"--lmbda {v:g}" for v in semi_lambdas(a.profile)))
    else:
        DOC.write_text(page(a.profile))
        print(f"wrote {DOC.relative_to(ROOT)} and {FIG.relative_to(ROOT)}/", file=sys.stderr)


if __name__ == "__main__":
    main()
