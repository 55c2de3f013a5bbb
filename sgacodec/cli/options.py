"""The commands' options, derived from the library's config (no torch at import time, so
``--help`` and usage errors return at once), and what they turn into: a RefineConfig, targets,
the model or the models a target chooses from."""

from __future__ import annotations

from dataclasses import fields

import click

from .. import config as cfg
from .failures import UserError

MODEL_HELP = (f"'{cfg.DEFAULT_MODEL}' (the embedded model), or a CompressAI zoo name: "
              + ", ".join(cfg.ZOO_NAMES))
METHOD_HELP = ("Rounding during refinement (ssl = SGA+ sigmoid scaled logit, atanh = SGA, none = no "
               "refinement)")
DEFAULTS = cfg.DEFAULTS


def model_options(multiple: bool = False):
    """Decorator: --model, --quality, --metric, --checkpoint, --arch. ``multiple`` (refine):
    repeatable --quality and --checkpoint, one rate point per model."""
    return lambda f: _model_options(f, multiple)


def _model_options(f, multiple: bool):
    more = " Repeatable: each model is one more rate point." if multiple else ""
    for option in reversed([
        click.option("--model", "model_name", type=click.Choice(cfg.MODEL_CHOICES), default=cfg.DEFAULT_MODEL,
                     show_default=True, help=MODEL_HELP),
        click.option("--quality", type=click.IntRange(1, cfg.MAX_QUALITY), default=None, multiple=multiple,
                     help=f"Rate point: embedded model (default: the manifest's), zoo 1..{cfg.MAX_QUALITY} "
                          f"(default {cfg.ZOO_DEFAULT_QUALITY})." + more),
        click.option("--metric", type=click.Choice(cfg.METRICS), default=cfg.METRICS[0], show_default=True,
                     help="Zoo models: the metric the model was trained for."),
        click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, multiple=multiple,
                     help="Local CompressAI state dict (.pth, .pth.tar or .safetensors); never unpickles "
                          "code." + more),
        click.option("--arch", type=click.Choice(cfg.ZOO_NAMES), default=None,
                     help="Architecture of --checkpoint (default: inferred from its keys)."),
    ]):
        f = option(f)
    return f


def refine_options(grid: bool = False):
    """Decorator: the RefineConfig options, with its defaults. ``grid`` (refine): repeatable
    --method (with the three-class labels), --iterations, --lmbda and --tau-max."""
    return lambda f: _refine_options(f, grid)


def _refine_options(f, grid: bool):
    rep = " Repeatable." if grid else ""
    for option in reversed([
        click.option("--method", "methods" if grid else "method",
                     type=click.Choice(cfg.METHOD_LABELS if grid else cfg.METHODS), multiple=grid,
                     default=(DEFAULTS.method,) if grid else DEFAULTS.method, show_default=True,
                     help=METHOD_HELP + ("; repeat to compare methods; "
                                         f"{', '.join(cfg.THREE_CLASS_LABELS)} are three-class." if grid else ".")),
        click.option("--iterations", type=click.IntRange(min=0), default=None, multiple=grid,
                     help=f"Adam steps per image [default: --effort's, else {cfg.PAPER_ITERATIONS}"
                          + ("" if grid else f"; on a CPU, as many as {cfg.CPU_TIME_BUDGET:g} s affords")
                          + "]." + rep),
        click.option("--effort", type=click.IntRange(1, max(cfg.EFFORT_ITERATIONS)), default=None,
                     help="1 (fast) to 9 (best): " + ", ".join(f"{k}={v}" for k, v in cfg.EFFORT_ITERATIONS.items())
                          + " iterations; --iterations wins."),
        click.option("--schedule", "schedules" if grid else "schedule", type=click.Choice(cfg.SCHEDULES),
                     default=("auto",) if grid else "auto", multiple=grid, show_default=True,
                     help=f"Temperature and step-size schedule: budget anneals within the run's iterations, "
                          f"paper is the paper's; auto = budget up to {cfg.PAPER_ITERATIONS} iterations, "
                          "paper beyond." + rep),
        click.option("--a", "ssl_a", type=float, default=None,
                     help=f"SSL sharpness a (default {cfg.DEFAULT_A}; {cfg.DEFAULT_A_THREE_CLASS} with "
                          "--three-class); a = 1 is linear."),
        click.option("--three-class", is_flag=True, help="Three-class rounding (linear, cosine, ssl)."),
        click.option("--factor", type=float, default=DEFAULTS.factor, show_default=True, help="Three-class factor s."),
        click.option("--power", type=float, default=DEFAULTS.power, show_default=True, help="Three-class power n."),
        click.option("--lr", type=float, default=DEFAULTS.lr, show_default=True, help="Adam learning rate."),
        click.option("--tau-max", type=float, default=(DEFAULTS.tau_max,) if grid else DEFAULTS.tau_max, multiple=grid,
                     show_default=True, help="Temperature cap: tau(t) = min(exp(-c t), tau_max)." + rep),
        click.option("--temp-rate", type=float, default=DEFAULTS.temp_rate, show_default=True,
                     help="Temperature decay c."),
        click.option("--lmbda", type=float, default=None, multiple=grid,
                     help="Inference lambda (default: the model's training lambda); moves along the R-D "
                          "curve." + rep),
        click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Random seed."),
        click.option("--time-budget", type=float, default=None, help="Stop refining a batch after SECONDS."),
        click.option("--eval-every", type=click.IntRange(min=1), default=None,
                     help="Evaluate the true (hard) loss and keep the best every k steps "
                          f"[default: {cfg.GPU_EVAL_EVERY} on a GPU, {cfg.CPU_EVAL_EVERY} on a CPU]."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--tile-size", type=int, default=cfg.TILE_SIZE, show_default=True, metavar="PIXELS",
                     help=f"The file's tile grid: tiles of PIXELS a side (a multiple of {cfg.LATENT_MULTIPLE}), "
                          "coded in bounded memory, in parallel, each decodable alone (decode --region); 0: the "
                          "whole image as one tile, as CompressAI codes it."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Same-size images refined together [default: 1 on a CPU; on a GPU as many as "
                          f"fit in {cfg.AUTO_BATCH_MEGAPIXELS:g} megapixels, halved while it runs out of "
                          "memory]."),
    ]):
        f = option(f)
    return f


TARGET_HELP = {
    "bpp": "Encode to at most B bits per pixel (the real file, header included).",
    "size": "Encode to at most BYTES bytes (the real file, header included).",
    "psnr": "Encode to at least DB dB PSNR (of the decoded 8-bit image).",
}


def target_options(multiple: bool = False):
    """Decorator: --target-bpp, --target-size, --target-psnr (and --strict unless ``multiple``).
    ``multiple`` (refine): repeatable, each value one more rate point."""
    def decorate(f):
        more = " Repeatable: each value is one more rate point." if multiple else ""
        positive = click.FloatRange(min=0, min_open=True)
        options = [click.option(f"--target-{kind}", f"target_{kind}", multiple=multiple, default=None,
                                type=click.IntRange(min=1) if kind == "size" else positive,
                                metavar={"bpp": "B", "size": "BYTES", "psnr": "DB"}[kind],
                                help=TARGET_HELP[kind] + " Searches the model (unless --quality or --checkpoint "
                                     "pins it) and lambda (docs/method.md)." + more)
                   for kind in cfg.TARGET_KINDS]
        if not multiple:
            options.append(click.option("--strict", is_flag=True,
                                        help="With a target: fail (exit 1, no file) when it is out of reach."))
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def targets_from_options(opts: dict) -> list:
    """The Target of each --target-* value given, checked against the options they exclude."""
    found = []
    for kind in cfg.TARGET_KINDS:
        value = opts.get(f"target_{kind}")
        for v in (value if isinstance(value, (tuple, list)) else [] if value is None else [value]):
            found.append(cfg.Target(kind, float(v)))
    if not found:
        if opts.get("strict"):
            raise UserError("--strict applies to a target: give --target-bpp, --target-size or --target-psnr")
        return found
    if opts.get("lmbda") not in (None, ()) or opts.get("lmbda_scales"):
        raise UserError("a target searches lambda itself: drop --lmbda (or the target)")
    if opts.get("time_budget") is not None:
        raise UserError("--time-budget does not combine with a target (the search needs its iterations)")
    return found


CONFIG_OPTIONS = {"ssl_a": "a"}  # option name -> RefineConfig field, where they differ


def config_from_options(opts: dict, **overrides):
    """The RefineConfig of parsed options (fields the options do not name keep their defaults)."""
    names = {f.name for f in fields(cfg.RefineConfig)}
    values = {CONFIG_OPTIONS.get(k, k): v for k, v in opts.items() if CONFIG_OPTIONS.get(k, k) in names}
    if values.get("iterations") is None:  # the caller decides (sgacodec.iterations_for)
        values.pop("iterations", None)
    values.update(overrides)
    try:
        return cfg.RefineConfig(**values)
    except (TypeError, ValueError) as exc:
        raise UserError(str(exc)) from None


def load_family_from_options(opts: dict, **overrides):
    """The models a target may choose from: the one pinned by --quality or --checkpoint, else every
    rate point of --model."""
    from .. import load_family

    opts = {**opts, **overrides}
    return load_family(opts["model_name"], opts["quality"], opts["metric"], opts["checkpoint"], opts["arch"])


def load_model_from_options(opts: dict, **overrides):
    """The model --model, --quality, --metric, --checkpoint and --arch name."""
    from .. import load_model

    opts = {**opts, **overrides}
    return load_model(opts["model_name"], opts["quality"], opts["metric"], opts["checkpoint"], opts["arch"])
