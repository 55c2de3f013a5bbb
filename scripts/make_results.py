#!/usr/bin/env python3
"""Helpers of scripts/make_results.sh: the models to evaluate, and docs/results.md from the records.

    make_results.py models | default-model         refine options naming the models
    make_results.py semi-lambdas --profile P       --lmbda options of the semi-multi-rate study
    make_results.py prune                          remove the records of models no longer shipped, and superseded ones
    make_results.py page [--profile P]             docs/results.md + docs/figures/*.png

The page shows every profile whose records exist, whatever --profile says: the full-size Kodak
records (docs/results/full.jsonl) first, then the reduced profile (docs/results/reduced.jsonl), then
"Anytime refinement" (stage 9: docs/results/PROFILE-anytime-*.jsonl, one file per model; partial
records render, with what is missing named). The studies of stages 1 to 8 are of the paper's
schedule: budget-schedule records in their files are left out of them, and the page says so.
The numbers come from results_analysis.py; this module words them and draws the figures (the page's
prose is most of its length). Nothing about a machine is written here: who measured what comes from
the records' provenance.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import replace
from pathlib import Path

import results_analysis as ra

from sgacodec.evaluation import fmt, plots

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "results.md"
FIG = ROOT / "docs" / "figures"
DATA = ROOT / "docs" / "results"
PROFILES = ("full", "reduced")
METHOD_NAMES = {"ssl": "SSL", "atanh": "atanh"}
plots.STYLE.setdefault("sweep", ("tab:orange", "D"))  # the semi-multi-rate figure's lambda sweep


def f(v, spec=".2f"):
    return fmt(v, spec)


def pct(v, spec="+.2f"):
    return "-" if v is None or math.isnan(v) else format(v, spec) + "%"


def md_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def cmd(data: Path, profile: str, *stages) -> str:
    """The command lines of these stages (the first one made this section; the others add rows); with
    no stages, those of every stage of the profile, in name order. Comment lines in the .cmd files
    are notes by hand and are not quoted: who ran a command is in its records' provenance."""
    paths = [data / f"{profile}.stage{s}.cmd" for s in stages] or sorted(data.glob(f"{profile}.stage*.cmd"))
    lines = [ln.strip() for p in paths if p.exists() for ln in p.read_text().splitlines()]
    return "```\n" + ("\n".join(ln for ln in lines if ln and not ln.startswith("#")) or "(not run yet)") + "\n```"


def commit(c: str) -> str:
    return c[:10] + ("+dirty" if c.endswith("+dirty") else "")


def measured_on(records, where: str) -> list[str]:
    """Who measured the records: each device and versions from the records' provenance, or that
    the records do not say."""
    out, found = [], ra.machines(records)
    for m in found:
        kinds = [f"{k} of the {what}" for k, what in ((m.learned, "learned models"), (m.classical, "classical codecs"))
                 if k]
        count = ("all " if len(found) == 1 else "") + f"{m.learned + m.classical} records ({', '.join(kinds)})"
        if m.device is None:
            out.append(f"machine and versions not recorded (records written before provenance was stored): {count}")
            continue
        dates = m.first[:10] + (f" to {m.last[:10]}" if m.last[:10] != m.first[:10] else "")
        out.append(f"{m.device}, torch {m.torch}, CompressAI {m.compressai}, sgacodec {m.sgacodec}"
                   + (f" (commit {', '.join(map(commit, m.commits))})" if m.commits else " (commit not known)")
                   + (f", {m.threads} CPU thread(s)" if m.threads else "") + f", {dates}: {count}")
    head = f"Measured on (the `provenance` field of the records in `{where}`):"
    if len(out) == 1:
        return [f"{head} {out[0]}."]
    return [head, ""] + [f"- {x}" for x in out]


def loss_rows(table: ra.LossTable) -> list[list]:
    return [[r.setting, f(r.bpp, ".4f"), pct(r.bpp_vs_none), f(r.psnr, ".2f"), f(r.psnr_vs_none, "+.2f"),
             f(r.ms_ssim, ".4f"), f(r.loss, ".4f"), pct(r.loss_vs_none), f(r.seconds, ".1f")] for r in table.rows]


LOSS_HEADER = ["setting", "bpp", "bpp vs none", "PSNR", "PSNR vs none (dB)", "MS-SSIM", "true R-D loss",
               "loss vs none", "s / image"]


def left_out_text(out: list[ra.LeftOut], name) -> list[str]:
    """Which classical points are left out of the BD figures, and why."""
    if not out:
        return []
    codecs = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}
    items = []
    for x in out:
        qs = sorted({p.quality for p in x.pinned})
        worst = max(x.pinned, key=lambda p: abs(p.miss))
        ends = sorted({p.end for p in x.pinned})
        items.append(f"- {codecs.get(x.codec, x.codec)} at {name(x.anchor)}'s rate point (point {x.point}): "
                     f"mean {x.bpp:.4f} bpp against a mean target of {x.target:.4f} ({pct(x.miss * 100, '+.1f')}); "
                     f"{len(x.pinned)} of {x.images} images at the {' and '.join(ends)} end of its quality range "
                     f"(quality {', '.join(map(str, qs))}), up to {pct(worst.miss * 100, '+.1f')} off their "
                     f"target ({Path(worst.image).name}).")
    return [f"**Classical points left out of the BD figures.** A classical codec is coded at each image's "
            f"'none' rate by bisection on its quality; where that rate lies beyond its lowest (or highest) "
            f"quality step, no quality comes within {ra.TOLERANCE:.0%} of it and the point is not at the rate "
            "it stands for. These points are left out of the BD figures (they stay in the tables and the R-D "
            "figure):", ""] + items + [""]


def other_schedule(w, n: int):
    """Records of the budget-aware schedule in a file of the paper-schedule studies: left out, and said."""
    if n:
        w(f"{n} record(s) refined with the budget-aware schedule are left out of this section: its studies "
          "are of the paper's schedule (section \"Anytime refinement\" compares the two).")
        w("")


# ---------------------------------------------------------------------------------------------
# The page


def page(profile: str | None = None, models: list[ra.Model] | None = None, data: Path = DATA,
         fig: Path = FIG) -> str:
    """docs/results.md. Every profile with records is on it, whichever ``profile`` is given (the
    shell script passes its own): the full-size section, then the reduced one."""
    models = models if models is not None else ra.model_table()
    fig.mkdir(parents=True, exist_ok=True)
    L: list[str] = []
    w = L.append
    w("# R-D results of the shipped models")
    w("")
    w("Two sets of measurements, each with the commands that produced it: the full-size Kodak "
      "images (the issue's protocol, sized for a GPU; its section lists what of it is still missing), "
      "then a reduced profile sized for a CPU (a few center crops, fewer iterations) that runs every "
      "study of the protocol at a small scale. Each record names the machine, library versions, "
      "sgacodec commit and date that measured it (its `provenance` field); each section lists them, "
      "and says so where records predate that field.")
    w("")
    w("All rates are real bitstream bytes (bpp = 8 x file bytes / pixels, the file the stock "
      "CompressAI decoder reads), PSNR and MS-SSIM are measured on the decoded 8-bit image, and the "
      "R-D loss is lambda x 255^2 x MSE + bpp at the model's training lambda. Means are over images. "
      "BD-rate and BD-PSNR use the `bjontegaard` package (Akima interpolation, over the overlapping "
      "range; with only two points per curve it interpolates linearly); negative BD-rate means fewer "
      "bits at equal PSNR. A curve's rate points are the shipped models "
      f"({', '.join('lambda ' + format(m.lmbda, 'g') for m in models)}), each refined at its own "
      "lambda. Records of model versions no longer shipped are removed from the records files "
      "(`make_results.py prune`, run by `make_results.sh`).")
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
    full_section(w, ra.analyse_full(ra.load(data / "full.jsonl", models), models), data, fig)
    reduced_section(w, ra.analyse_reduced(ra.load(data / "reduced.jsonl", models), models), data, fig)
    anytime_section(w, models, data, fig)
    targets_section(w, data)
    return "\n".join(L)


def targets_section(w, data: Path):
    """Encoding to a target (issue 16): the tables benchmarks/targets.py prints from its results
    file, when there is one (docs/results/targets.jsonl)."""
    path = data / "targets.jsonl"
    if not path.exists():
        return
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_targets", ROOT / "benchmarks" / "targets.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    w("## Encoding to a target")
    w("")
    w("`sgacodec encode --target-bpp / --target-psnr` on Kodak centre crops (docs/method.md, \"Encoding to a "
      "target\"): how close the files land, what the search costs against a single encode, and R-D "
      "against the shipped rate points at the files' own rates. From `docs/results/targets.jsonl`, written "
      "by `benchmarks/targets.py` (the command and its machine are the first lines below; rerunning it "
      "continues a stopped run).")
    w("")
    for line in bench.tables(path):
        w(line)
    w("")


def full_section(w, a: ra.Full, data: Path, fig: Path):
    """The full-size Kodak records: what is missing from the protocol, one table per model and
    setting, BD figures, the figures, and what that leaves of the issue's targets."""
    partial = " (partial)" if a.partial else ""
    w("## Full-size Kodak" + partial)
    w("")
    if not a.records:
        w("_No records yet_ (`docs/results/full.jsonl`).")
        w("")
        return
    n = len(a.images)
    w(f"{n} Kodak images at full size ({', '.join(f'{v} of {k}' for k, v in a.sizes.items())}), the shipped "
      f"models, refined at each model's own lambda with the true loss evaluated every "
      f"{' / '.join(a.eval_every) or '-'} steps (the best evaluated iterate is coded); the classical codecs "
      "(Pillow) are coded at the rates of the 'none' records." + (" The protocol is not complete." if partial else ""))
    w("")
    for line in measured_on(a.records, "docs/results/full.jsonl"):
        w(line)
    w("")
    if a.missing or a.absent:
        w("**Missing from the full protocol** (`scripts/make_results.sh` stages 1 to 4 on a GPU), so "
          "not on this page:")
        w("")
        for model, cells in a.missing:
            w(f"- {model}: no " + ", ".join(f"{label}{f' {it}' if it else ''}" + (f" ({got} of {n} images)" if got
                                                                                    else "")
                                          for label, it, got in cells))
        for study in a.absent:
            w(f"- {study}: not run")
        w("")
    if a.stale:
        w(f"Records of {a.stale} model version(s) no longer shipped are left out.")
        w("")
    other_schedule(w, a.other_schedule)

    # ---- per model
    w("### Per model, at its own lambda")
    w("")
    w("The commands that wrote the records, run from the repository root (`.kodak/` holds the Kodak "
      "images); which machine ran them is what the records' provenance says (above), where it was stored:")
    w("")
    w(cmd(data, "full"))
    w("")
    w(md_table(["model", "images"] + LOSS_HEADER,
               [[name, len(t.images)] + row for name, t in a.per_model for row in loss_rows(t)]))
    w("")
    w("Lower loss is better. 'vs none' compares with the same model's 'none' row. The classical "
      "codecs are coded at each image's 'none' rate (quality by bisection), so they have no R-D loss "
      "at a lambda, and their time is that of the bisection. A refined image's time is its "
      "batch's wall time divided by the batch's size (same-size images refine together: the "
      "landscape and the portrait images), so it includes each call's first-batch warm-up and "
      "depends on the batch: it is not a controlled speed comparison (docs/performance.md is). "
      f"Summed over the {n} images: " + "; ".join(f"{k} {v:.1f} s" for k, v in a.seconds.items()) + ".")
    w("")

    # ---- curves and BD
    w("### Curves and BD figures")
    w("")
    w(cmd(data, "full"))
    w("")
    plots.plot_rd(a.rows, fig / "full_rd.png", title=f"Full-size Kodak ({n} images), real bytes{partial}")
    if a.bd_shas:
        w(f"Over the models that have every refined setting here: {', '.join(map(a.name, a.bd_shas))}; "
          f"each curve has {a.bd_points} rate point(s)"
          + (" (the other models lack refined records)." if a.lacking else ".")
          + (" **With two points, each curve is one straight segment (log rate against PSNR) between two "
             "operating points, and a BD figure averages the gap between two such segments over the part "
             "of the range both cover: weak evidence, indicative only.**" if a.bd_points <= 2 else ""))
        w("")
        w(md_table(["test", "anchor", "points (test / anchor)", "common PSNR range", "BD-rate", "BD-PSNR (dB)"],
                   [[b.test, b.anchor, f"{b.points[0]} / {b.points[1]}", f"{b.overlap:.0%}", pct(b.bd_rate),
                     f(b.bd_psnr, "+.3f")] for b in a.bd_rows]))
        w("")
        w("'common PSNR range': the share of the two curves' joint PSNR range that both cover. A '-' "
          "means no common range, or a curve with fewer than two points.")
        w("")
        for line in left_out_text(a.left_out, a.name):
            w(line)
    else:
        w("_No refined setting covers two models: no BD figure._")
        w("")
    w("All the settings above, every model and rate point ('none' and the classical codecs also at "
      "the models without refined records):")
    w("")
    w("![R-D curves, full-size Kodak](figures/full_rd.png)")
    w("")
    figs = []
    for name, recs in a.loss_figures:
        p = fig / f"full_loss_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}.png"
        k = len({r.image for r in recs})
        if plots.plot_loss(recs, p, title=f"{name}: true R-D loss per iteration (mean of {k} images)"):
            figs.append((name, p.name))
    if figs:
        w("True (hard-rounded) R-D loss per iteration, one figure per model at its own lambda, mean over "
          "the images (the paper's Figure 2; one point every evaluation; the 500-iteration runs follow the "
          "first 500 steps of the 2000-iteration ones, so only the longest run of each method is drawn):")
        w("")
        for nm, p in figs:
            w(f"![loss per iteration, {nm}](figures/{p})")
        w("")
    full_targets(w, a)


def full_targets(w, a: ra.Full):
    n = len(a.images)

    def said(changes):
        return "; ".join(f"{c.model} {pct(c.rel)} (lower on {c.lower} of {n} images)" for c in changes)

    w("### What this shows about the issue's targets")
    w("")
    b = a.ssl_vs_none
    w("- **SSL at 2000 iterations against none on Kodak: at most -10% BD-rate on real bytes.** "
      + (f"Measured: BD-rate {pct(b.bd_rate, '+.1f')}, BD-PSNR {f(b.bd_psnr, '+.2f')} dB over "
         f"{b.points[0]} rate points ({', '.join(map(a.name, a.bd_shas))}); mean true R-D loss at "
         f"each model's lambda: {said(a.ssl_vs_none_change)}. "
         + ("On these points the figure is inside the target" if b.bd_rate <= -10 else
            "On these points the figure misses the target")
         + ", but that is not a verdict: "
         + ("a two-point BD-rate is a linear interpolation over a short overlap and is weak evidence"
            if b.points[0] <= 2 else "the curve is short")
         + (f", and {', '.join(a.lacking)} has no SSL record, so the protocol's curve over all the shipped "
            "models is not measured." if a.lacking else ".")
         if b else "No SSL 2000 records on two models or more: cannot be shown."))
    w("- **SSL better than atanh at both 500 and 2000 iterations.**")
    for c in a.comparisons:
        if c.bd:
            w(f"  - {c.iterations} iterations: BD-rate of SSL against atanh {pct(c.bd.bd_rate)}, BD-PSNR "
              f"{f(c.bd.bd_psnr, '+.3f')} dB ({c.bd.points[0]} points); mean true R-D loss of SSL against "
              f"atanh: {said(c.change)}. "
              + ("SSL is ahead on every measure here" if c.ahead else "SSL is behind on every measure here"
                 if c.behind else "The measures disagree")
              + (f"; {', '.join(a.lacking)} not measured." if a.lacking else "."))
            continue
        w(f"  - {c.iterations} iterations: cannot be shown, there are no complete "
          f"{' or '.join(c.missing) or 'paired'} records on two models.")
        i = c.indirect
        if i:
            it = c.iterations
            w(f"    Indirect only, not the protocol's measurement: in the histories of the {i.longest}-"
              f"iteration runs (the true loss evaluated during refinement: hard-rounded latents, rate "
              f"from the entropy model rather than the file), the best loss reached by step {it}, SSL "
              "against atanh, is " + "; ".join(f"{m} {pct(v)}" for m, v in i.best)
              + f". The temperature schedule does not depend on a run's length, so a {it}-iteration run "
              f"follows the first {it} steps of a longer one up to the device's floating-point "
              f"nondeterminism: the ssl {it} histories differ from the first {it} steps of the ssl "
              f"{i.longest} ones by at most {pct(i.drift, '.2f')} per evaluation.")
    shown = [c.ahead if c.bd else None for c in a.comparisons]
    w("  - Both counts: " + ("not established: a comparison is missing." if None in shown else
                             "SSL ahead at both here." if all(shown) else "SSL not ahead at both here."))
    w("")


def reduced_section(w, a: ra.Reduced, data: Path, fig: Path):
    """The reduced profile, run by every stage of scripts/make_results.sh: the main R-D comparison,
    all rounding methods, tau_max, semi-multi-rate, and the targets."""
    w("## Reduced profile")
    w("")
    if not a.records:
        w("_No records of the shipped models yet_ (`docs/results/reduced.jsonl`; "
          "`PROFILE=reduced scripts/make_results.sh` makes them).")
        w("")
        return
    iters = a.iterations
    w("> **REDUCED SETTINGS.** These numbers come from a profile sized for a CPU: "
      f"{len(a.images)} Kodak image(s) ({', '.join(Path(i).name for i in a.images)}), center-cropped to "
      f"{a.crop}x{a.crop} pixels, refined for {' / '.join(map(str, iters))} iterations"
      + (" (per study: see below)" if a.protocol_iterations else " instead of 500 / 2000") + ", "
      + ("on checkpoints given with CHECKPOINTS" if ra.checkpoints() else "on the shipped embedded models")
      + ". They show that the evaluation pipeline works and give a first, noisy look at every study; they "
      "are **not** the paper's protocol and do not establish (or refute) its claims. The section above "
      "has the full-size measurements made so far.")
    w("")
    for line in measured_on(a.records, "docs/results/reduced.jsonl"):
        w(line)
    w("")
    w("What these numbers are not:")
    w("")
    w("- Not Kodak as the paper uses it: small center crops have a larger share of side "
      f"information and header bytes, and {len(a.images)} images make every mean noisy.")
    w("- Not the paper's base models: the shipped models are much weaker than the published "
      "ones (docs/models.md). Gains are relative to these base models.")
    if a.protocol_iterations:
        w("- Iterations per study: " + "; ".join(
            f"{name} {' / '.join(map(str, its)) or 'not run'}" for name, its in a.studies.items())
          + ". Methods converge at different speeds (atanh at tau_max = 1 barely moves in 100 "
          "steps), so a ranking from a study not run at 2000 need not hold at 2000.")
    else:
        w("- Not 500 / 2000 iterations: methods converge at different speeds (atanh at tau_max = 1 "
          "barely moves in 100 steps), so rankings at 100 / 300 steps need not hold later.")
    npts = max((len(c.points) for c in a.curves), default=0)
    w(f"- Curves have one point per shipped model ({npts}), which Akima interpolation accepts but "
      "which makes BD values sensitive to each point.")
    w("")
    if a.stale:
        w(f"Records of {a.stale} model version(s) no longer shipped are left out of this page.")
        w("")
    other_schedule(w, a.other_schedule)
    w("Regenerate these records: `PROFILE=reduced scripts/make_results.sh`.")
    w("")
    prefix = "REDUCED: "

    # ---- 1. main
    w("### 1. Refinement against the base model, and classical codecs")
    w("")
    w(cmd(data, "reduced", 1, 5, 6))
    w("")
    if a.main_rows:
        plots.plot_rd(a.main_rows, fig / "rd.png", title=prefix + "Kodak, real bytes")
        w("![R-D curves](figures/rd.png)")
        w("")
        w(md_table(["curve", "points", "mean bpp per point", "mean PSNR per point", "BD-rate vs none",
                    "BD-PSNR vs none (dB)", "s / image"],
                   [[c.name, len(c.points) if c.bd_points == len(c.points) or c.name == "none"
                     else f"{len(c.points)} ({c.bd_points} in BD)",
                     " / ".join(f"{p[0]:.3f}" for p in c.points), " / ".join(f"{p[1]:.2f}" for p in c.points),
                     pct(c.bd_rate, "+.1f"), f(c.bd_psnr, "+.2f"), f(c.seconds, ".1f")] for c in a.curves]))
        w("")
        w(f"Images: {len(a.main_images)}. Time is wall-clock per image and setting on the machine that "
          "measured it (see above). A '-' BD-rate means the two curves share no PSNR range (BD-rate "
          "averages over the common PSNR range, BD-PSNR over the common log-rate range).")
        w("")
        for line in left_out_text(a.left_out, lambda sha: next(
                (r.model for r in a.records if r.model_sha == sha), sha[:8])):
            w(line)
        if a.ssl_vs_atanh:
            w("SSL (SGA+) against atanh (SGA) at each iteration count:")
            w("")
            w(md_table(["test", "anchor", "BD-rate", "BD-PSNR (dB)"],
                       [[b.test, b.anchor, pct(b.bd_rate), f(b.bd_psnr, "+.3f")] for _, b in a.ssl_vs_atanh]))
            w("")
    else:
        w("_Not run yet._")
        w("")

    # ---- 2. single-model comparisons (other methods, longer runs): R-D loss at the model's lambda
    w("### 2. All rounding methods")
    w("")
    w(cmd(data, "reduced", 2, 1, 5, 6, 7, 8))
    w("")
    if a.methods and a.methods.rows:
        k = len(a.methods.images)
        w(f"Model: {a.default_name} at its own lambda; {k} image(s). Lower loss is better; the "
          "loss is measured on the real file.")
        w("")
        w(md_table(LOSS_HEADER, loss_rows(a.methods)))
        w("")
        if a.methods_bd:
            w(f"BD-rate and BD-PSNR against none over the {a.methods_models} models (the settings run on every "
              "model; one curve point per model):")
            w("")
            w(md_table(["curve", "BD-rate vs none", "BD-PSNR vs none (dB)"],
                       [[b.test, pct(b.bd_rate, "+.1f"), f(b.bd_psnr, "+.2f")] for b in a.methods_bd]))
            w("")
        if plots.plot_loss(a.history, fig / "loss_per_iteration.png",
                           title=prefix + f"true R-D loss per iteration, {a.default_name} (mean of {k} images)"):
            w(f"True (hard-rounded) R-D loss per iteration of {a.default_name} alone, at its own lambda, mean "
              f"over the {k} images (the paper's Figure 2; the best iterate is what gets coded; a shorter run "
              "follows the first steps of a longer one, so only the longest run of each method is drawn):")
            w("")
            w("![loss per iteration](figures/loss_per_iteration.png)")
            w("")
    else:
        w("_Not run yet._")
        w("")

    # ---- 3. tau_max
    w("### 3. Sensitivity to tau_max")
    w("")
    w(cmd(data, "reduced", 3, 7, 8))
    w("")
    if a.tau and len(a.tau.rows) > 1:
        w(f"Model: {a.default_name}; {len(a.tau.images)} image(s).")
        w("")
        w(md_table(LOSS_HEADER, loss_rows(a.tau)))
        w("")
    else:
        w("_Not run yet._")
        w("")

    # ---- 4. semi-multi-rate
    w("### 4. Semi-multi-rate: one model at other lambdas")
    w("")
    w(cmd(data, "reduced", 4, 1, 7))
    w("")
    s = a.semi
    if s:
        sweep = f"sweep of lambda, {a.default_name} only (ssl {s.iterations}it)"
        plots.plot_rd([replace(r, curve=sweep) for r in s.sweep]
                      + [replace(r, curve=r.curve + " (all models)") for r in s.base],
                      fig / "semi_multirate.png", title=prefix + "semi-multi-rate")
        w(f"{a.default_name} refined with SSL at inference lambdas between and beyond its neighbours' "
          f"training lambdas; {len(s.images)} image(s).")
        w("")
        w(md_table(["inference lambda", "bpp", "PSNR", "MS-SSIM", "R-D loss at that lambda"],
                   [[f"{r.lmbda:.5g}", f(r.bpp, ".4f"), f(r.psnr, ".2f"), f(r.ms_ssim, ".4f"), f(r.loss, ".4f")]
                    for r in s.sweep]))
        w("")
        w(md_table(["test", "anchor", "BD-rate", "BD-PSNR (dB)", "overlap (PSNR range)"],
                   [[sweep, f"{k} (all models)", pct(rate, "+.1f"), f(dpsnr, "+.2f"), f(ov, ".0%")]
                    for k, rate, dpsnr, ov in s.bd]))
        w("")
        w("![semi-multi-rate](figures/semi_multirate.png)")
        w("")
    else:
        w("_Not run yet._")
        w("")

    # ---- targets
    w("### Targets of issue 5 (reduced settings)")
    w("")
    w(f"- SSL at the longest run over all models here ({a.longest or '-'} iterations) against none: "
      f"BD-rate {pct(a.ssl_vs_none, '+.1f')} (target: at most -10%, aim -15%, at 2000 iterations on full "
      "Kodak). Measured with reduced settings, so this is **not** a verdict on the target.")
    for it, b in a.ssl_vs_atanh:
        r = b.bd_rate
        verdict = "SSL better" if r < 0 else "SSL not better" if r >= 0 else "undetermined: too few points"
        w(f"- SSL against atanh at {it} iterations: BD-rate {pct(r)} "
          f"({verdict}, reduced settings).")
    for it, ssl, atanh in a.single:
        w(f"- {a.default_name} alone, {it} iterations: mean true R-D loss SSL {ssl:.4f} vs atanh {atanh:.4f} "
          f"({(ssl / atanh - 1) * 100:+.2f}%; lower is better, reduced settings).")
    w("")


# ---------------------------------------------------------------------------------------------
# Anytime refinement (stage 9)


def anytime_section(w, models, data: Path, fig: Path):
    """Issue 17: the gain over no refinement against the iteration count, for the paper's schedule
    and the budget-aware one, from each profile's docs/results/PROFILE-anytime-*.jsonl."""
    w("## Anytime refinement")
    w("")
    w("How much of the refinement's gain a short run keeps, with the paper's temperature schedule "
      "(`--schedule paper`: tau(t) = min(exp(-1e-3 t), 1) and a constant step size, whatever the run's length) "
      "and with the budget-aware one (`--schedule budget`: it anneals within the run's T iterations; "
      "docs/method.md, \"Schedule\"), for SSL and atanh on every shipped model. `--schedule auto`, the "
      f"default, is the budget schedule up to {ra.PAPER_ITERATIONS} iterations and the paper's beyond.")
    w("")
    p = ra.PAPER_ITERATIONS
    w("Gain: (none - refined) / none of the true R-D loss at the model's lambda, measured on the real "
      "file, per image and model, then the mean over images and models. "
      f"'share of paper {p}': that mean "
      f"gain as a percentage of the paper schedule's {p}-iteration mean gain of the same method, over the "
      "image-model pairs both have. BD-rate against 'none': each model is one rate point. **The budget "
      f"schedule at {p} iterations is the paper's run:** with T = {p} it has the paper's temperature and "
      "step size at every step, identical by construction "
      "(`tests/test_rounding.py::test_budget_schedule_at_2000_steps_is_the_papers_exactly`), so it is "
      f"not run twice and the budget columns at {p} are the paper's records.")
    w("")
    shown = False
    for profile in PROFILES:
        files = ra.anytime_files(data, profile)
        if files:
            shown = True
            anytime_profile(w, profile, files, ra.analyse_anytime(ra.load(files, models), models), data, fig)
    if not shown:
        w("_Not run yet_ (`docs/results/reduced-anytime-*.jsonl`; stage 9 of "
          "`PROFILE=reduced scripts/make_results.sh` makes them, `STAGES=9` runs it alone).")
        w("")


def anytime_profile(w, profile: str, files: list[Path], a: ra.Anytime, data: Path, fig: Path):
    reduced = profile != "full"
    w("### " + ("Reduced profile" if reduced else "Full-size Kodak") + (" (partial)" if a.partial else ""))
    w("")
    where = f"docs/results/{profile}-anytime-*.jsonl"
    if not a.records:
        w(f"_No records of the shipped models yet_ (`{where}`).")
        w("")
        return
    n = a.expected
    w(("> **REDUCED SETTINGS.** " if reduced else "")
      + f"{len(a.images)} Kodak image(s) ({', '.join(Path(i).name for i in a.images)})"
      + (f", center-cropped to {a.crop}x{a.crop} pixels" if a.crop else ", at full size")
      + f", {len(a.models)} models ({n} image-model pairs per setting); the true loss evaluated "
      + ("at every step" if a.eval_every == ["1"] else f"every {' / '.join(a.eval_every) or '-'} steps")
      + ", the best evaluated iterate is coded."
      + (" A small, noisy sample: a first look, not the full protocol." if reduced else ""))
    w("")
    for line in measured_on(a.records, where):
        w(line)
    w("")
    stages = sorted(p.name[len(profile) + len(".stage"):-len(".cmd")] for p in data.glob(f"{profile}.stage9-*.cmd"))
    w("The commands (`scripts/make_results.sh` stage 9, one model per records file):")
    w("")
    w(cmd(data, profile, *stages) if stages else "```\n(not run yet)\n```")
    w("")
    if a.stale:
        w(f"Records of {a.stale} model version(s) no longer shipped are left out.")
        w("")
    if a.earlier_budget:
        w(f"{a.earlier_budget} budget-schedule record(s) refined with other settings than today's defaults "
          "(an earlier tuning; their keys name the settings) are left out.")
        w("")
    if a.partial:
        w("**Missing** (stage 9 has not finished, or was stopped), so the numbers below are partial; the "
          "settings without all their images, with the images they have in brackets:")
        w("")
        for name in a.not_started:
            w(f"- {name}: no records yet")
        for name, cells in a.missing:
            w(f"- {name}: " + "; ".join(missing_cells(cells, len(a.images))))
        w("")
        w(f"A cell averages over the image-model pairs it has, with their number in brackets where it is "
          f"fewer than the {n} of a complete cell; a '-' is a cell without records (or, for the share, "
          "without the paper schedule's 2000-iteration records of the same pairs).")
        w("")

    def cov(k, text):
        return text if text == "-" or k >= n else f"{text} ({k} of {n})"

    def cells(c: ra.Cell | None) -> list[str]:
        if c is None or not c.pairs:
            return ["-", "-", "-"]
        pts = "" if c.bd_points >= len(a.models) or math.isnan(c.bd_rate) else f" ({c.bd_points} models)"
        same = " (= paper)" if c.from_paper else ""
        return [cov(c.pairs, pct(c.gain)) + same, cov(c.share_pairs, pct(c.share, ".1f")) + same,
                pct(c.bd_rate, "+.1f") + pts + same]

    rows = [[m, it] + cells(a.cell("paper", m, it)) + cells(a.cell("budget", m, it))
            for m in ra.ANYTIME_METHODS for it in a.iterations]
    w(md_table(["method", "iterations", "paper: gain", "paper: share of paper 2000", "paper: BD-rate vs none",
                "budget: gain", "budget: share of paper 2000", "budget: BD-rate vs none"], rows))
    w("")
    w("'(= paper)': the budget schedule at 2000 iterations is the paper's run (above). Positive gains "
      "are lower losses; negative BD-rates are fewer bits at equal PSNR. Time per iteration: "
      "docs/performance.md.")
    w("")
    name = "anytime.png" if reduced else f"{profile}_anytime.png"
    if plot_anytime(a, fig / name, ("REDUCED: " if reduced else "")
                    + f"anytime refinement, mean over {len(a.images)} images x {len(a.models)} models"
                    + (" (partial)" if a.partial else "")):
        w("The gain as a share of the paper schedule's 2000-iteration gain against the iteration count (log "
          "scale), mean over images and models: dashed the paper's schedule, solid the budget-aware one; the "
          "crosses are issue 17's targets for the budget schedule; the budget lines end on the paper's run.")
        w("")
        w(f"![anytime refinement](figures/{name})")
        w("")
    else:
        w("_No figure yet: it needs the paper schedule's 2000-iteration records._")
        w("")
    anytime_targets(w, a)


def missing_cells(cells: list[tuple[str, str, int, int]], images: int) -> list[str]:
    """'paper ssl 100 (2 of 3 images), 200, 500', one item per schedule and method ('... all counts'
    when none of them has an image)."""
    groups: dict[str, list[tuple[int, int]]] = {}
    for schedule, method, it, got in cells:
        groups.setdefault("none" if method == "none" else f"{schedule} {method}", []).append((it, got))
    out = []
    for setting, its in groups.items():
        full = len(its) == len([i for i in ra.ANYTIME_ITERATIONS
                                if not (setting.startswith("budget") and i == ra.PAPER_ITERATIONS)])
        if setting != "none" and full and not any(got for _, got in its):
            out.append(f"{setting} at every count")
            continue
        out.append(setting + ("" if setting == "none" else " ") + ", ".join(
            ("" if setting == "none" else str(it)) + (f" ({got} of {images} images)" if got else "")
            for it, got in its).strip())
    return out


def plot_anytime(a: ra.Anytime, path: Path, title: str) -> bool:
    """Share of the paper's 2000-iteration gain against iterations (log x): paper / budget x SSL / atanh."""
    lines = {(s, m): [(c.iterations, c.share) for c in a.cells if (c.schedule, c.method) == (s, m)
                      and not math.isnan(c.share)] for m in ra.ANYTIME_METHODS for s in ra.SCHEDULES}
    if not any(lines.values()):
        return False
    plt = plots._plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for (s, m), pts in lines.items():
        if pts:
            color, marker = plots.STYLE[m]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, marker=marker, markersize=5,
                    linewidth=1.2, linestyle="-" if s == "budget" else "--", label=f"{m}, {s} schedule")
    ax.scatter([it for it, _ in ra.ANYTIME_TARGETS], [g for _, g in ra.ANYTIME_TARGETS], marker="x", color="k",
               zorder=3, label="issue 17 targets (budget)")
    ax.axhline(100, color="0.6", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xticks(a.iterations)
    ax.set_xticklabels([str(i) for i in a.iterations])
    ax.minorticks_off()
    ax.set_xlabel("iterations (log scale)")
    ax.set_ylabel("gain over none, % of the paper's 2000-it gain")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def anytime_targets(w, a: ra.Anytime):
    n = a.expected
    w("#### Issue 17's targets")
    w("")

    def measured(t: ra.Target) -> str:
        c, p = t.budget, t.paper
        name = METHOD_NAMES.get(t.method, t.method)
        if t.met is None:
            return (f"{name}: not measured yet (" + ("no budget-schedule records" if not c or not c.pairs
                                                     else "no paper-schedule 2000-iteration records") + ").")
        notes = ([f"per model {', '.join(f'{m} {v:.1f}%' for m, v in c.per_model)}"] if len(c.per_model) > 1 else [])
        notes += [f"provisional: over {c.share_pairs} of the {n} image-model pairs"] if c.share_pairs < n else []
        return (f"{name}: {c.share:.1f}% (gain {pct(c.gain)}"
                + (f"; the paper schedule at {t.iterations}: {p.share:.1f}%" if p and not math.isnan(p.share) else "")
                + "), " + ("**met**" if t.met else "**not met**") + (f" ({'; '.join(notes)})" if notes else "") + ".")

    for it, goal in ra.ANYTIME_TARGETS:
        w(f"- **At {it} iterations the budget-aware schedule reaches at least {goal:.0f}% of the paper "
          f"schedule's {ra.PAPER_ITERATIONS}-iteration gain** (true R-D loss against none, mean over the images "
          "and models). Measured:")
        for t in a.targets:
            if t.iterations == it:
                w(f"  - {measured(t)}")
    w(f"- **It never does worse than the paper schedule at {ra.PAPER_ITERATIONS} iterations (within noise).** "
      f"At {ra.PAPER_ITERATIONS} iterations the budget-aware schedule is the paper's run, the same records: "
      "equal by construction, so there is no noise between the two "
      "(`tests/test_rounding.py::test_budget_schedule_at_2000_steps_is_the_papers_exactly`).")
    if a.versus:
        w(f"- Below {ra.PAPER_ITERATIONS} iterations (what `--schedule auto` rests on), the budget schedule "
          "against the paper's at the same count: mean gain, budget vs paper, and on how many image-model "
          "pairs the budget schedule's true loss is lower:")
        for m in ra.ANYTIME_METHODS:
            vs = [v for v in a.versus if v.method == m]
            if vs:
                better = sum(v.budget > v.paper for v in vs)
                w(f"  - {METHOD_NAMES.get(m, m)}: " + "; ".join(
                    f"{v.iterations}: {pct(v.budget)} vs {pct(v.paper)} ({v.lower} of {v.pairs})" for v in vs)
                  + f". Higher mean gain at {better} of {len(vs)} count(s).")
    w("")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["models", "default-model", "semi-lambdas", "prune", "page"])
    ap.add_argument("--profile", default="full", help="for semi-lambdas; page shows every profile")
    a = ap.parse_args()
    models = ra.model_table()
    if a.what == "models":
        print(" ".join(" ".join(m.option) for m in models))
    elif a.what == "default-model":
        print(" ".join(ra.default_model(models).option))
    elif a.what == "semi-lambdas":
        print(" ".join(f"--lmbda {v:g}" for v in ra.semi_lambdas(models, a.profile)))
    elif a.what == "prune":
        if not ra.shipped(models):
            print("prune: no shipped models to compare with (CHECKPOINTS is set): nothing removed", file=sys.stderr)
            return
        for profile in PROFILES:
            path = DATA / f"{profile}.jsonl"
            if path.exists():
                kept, removed = ra.prune(path, models)
                print(f"prune: {path.relative_to(ROOT)}: {removed} record(s) of models not shipped or "
                      f"superseded removed, {kept} kept", file=sys.stderr)
    else:
        DOC.write_text(page(a.profile, models))
        print(f"wrote {DOC.relative_to(ROOT)} and {FIG.relative_to(ROOT)}/", file=sys.stderr)


if __name__ == "__main__":
    main()
