"""What the commands share: options derived from the library's config, console output, failures.

Nothing here imports torch or CompressAI at import time, so ``--help`` and usage errors return at
once; the library is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import fields

import click

from .. import config as cfg

MAX_BITSTREAM_BYTES = 1 << 28  # 256 MiB: far above any file sgacodec writes
MODEL_HELP = (f"'{cfg.DEFAULT_MODEL}' (the embedded model), or a CompressAI zoo name: "
              + ", ".join(cfg.ZOO_NAMES))
METHOD_HELP = ("Rounding during refinement (ssl = SGA+ sigmoid scaled logit, atanh = SGA, none = no "
               "refinement)")
D = cfg.DEFAULTS


class UserError(click.ClickException):
    """One line for the user, exit status 1."""

    def show(self, file=None):
        click.echo(f"sgacodec: error: {self.message}", err=True)


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
                     default=(D.method,) if grid else D.method, show_default=True,
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
        click.option("--factor", type=float, default=D.factor, show_default=True, help="Three-class factor s."),
        click.option("--power", type=float, default=D.power, show_default=True, help="Three-class power n."),
        click.option("--lr", type=float, default=D.lr, show_default=True, help="Adam learning rate."),
        click.option("--tau-max", type=float, default=(D.tau_max,) if grid else D.tau_max, multiple=grid,
                     show_default=True, help="Temperature cap: tau(t) = min(exp(-c t), tau_max)." + rep),
        click.option("--temp-rate", type=float, default=D.temp_rate, show_default=True,
                     help="Temperature decay c."),
        click.option("--lmbda", type=float, default=None, multiple=grid,
                     help="Inference lambda (default: the model's training lambda); moves along the R-D "
                          "curve." + rep),
        click.option("--seed", type=int, default=D.seed, show_default=True, help="Random seed."),
        click.option("--time-budget", type=float, default=None, help="Stop refining a batch after SECONDS."),
        click.option("--eval-every", type=click.IntRange(min=1), default=None,
                     help="Evaluate the true (hard) loss and keep the best every k steps "
                          f"[default: {cfg.GPU_EVAL_EVERY} on a GPU, {cfg.CPU_EVAL_EVERY} on a CPU]."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Same-size images refined together [default: 1 on a CPU; on a GPU as many as "
                          f"fit in {cfg.AUTO_BATCH_MEGAPIXELS:g} megapixels, halved while it runs out of "
                          "memory]."),
    ]):
        f = option(f)
    return f


def check_ray_address(ctx, param, value):
    """--ray's value: '' (no address) or an address; a path taken for one is a usage error."""
    if value:
        from ..cluster.workers import check_address  # no torch, no Ray
        from ..errors import SgacodecError

        try:
            check_address(value)
        except SgacodecError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def ray_options(f):
    """Decorator: --ray [ADDRESS], --workers, --worker-cpus (sgacodec.ray_pipeline)."""
    for option in reversed([
        click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
                     callback=check_ray_address,
                     help="Run on a Ray cluster: ADDRESS (HOST:PORT, ray://HOST:PORT, auto), else $RAY_ADDRESS, "
                          "else a local Ray for this run; one worker per GPU (CPU workers without GPUs). "
                          "Existing outputs are skipped (resume). Put it after the inputs, or write "
                          "--ray=ADDRESS. Needs pip install 'sgacodec[ray]'."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="With --ray: how many workers [default: one per GPU of the cluster; without GPUs, "
                          f"one per {cfg.RAY_CPU_WORKER_CPUS} CPU(s)]."),
        click.option("--worker-cpus", type=click.IntRange(min=1), default=None,
                     help="With --ray: CPUs (torch threads) each worker reserves [default: "
                          f"{cfg.RAY_CPU_WORKER_CPUS} without GPUs; the CPUs shared evenly among GPU workers]."),
    ]):
        f = option(f)
    return f


def ray_requested(address, workers, worker_cpus) -> bool:
    """Whether --ray was given (its address is checked as it is parsed); --workers or --worker-cpus
    without it, and --ray where Ray is not installed, are errors."""
    if address is None:
        if workers or worker_cpus:
            raise UserError("--workers and --worker-cpus go with --ray")
        return False
    from ..cluster.workers import require_ray
    from ..errors import SgacodecError

    try:
        require_ray()
    except SgacodecError as exc:
        raise UserError(str(exc)) from None
    return True


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


def targets_from_options(o: dict) -> list:
    """The Target of each --target-* value given, checked against the options they exclude."""
    found = []
    for kind in cfg.TARGET_KINDS:
        value = o.get(f"target_{kind}")
        for v in (value if isinstance(value, (tuple, list)) else [] if value is None else [value]):
            found.append(cfg.Target(kind, float(v)))
    if not found:
        if o.get("strict"):
            raise UserError("--strict applies to a target: give --target-bpp, --target-size or --target-psnr")
        return found
    if o.get("lmbda") not in (None, ()) or o.get("lmbda_scales"):
        raise UserError("a target searches lambda itself: drop --lmbda (or the target)")
    if o.get("time_budget") is not None:
        raise UserError("--time-budget does not combine with a target (the search needs its iterations)")
    return found


CONFIG_OPTIONS = {"ssl_a": "a"}  # option name -> RefineConfig field, where they differ


def config_from_options(o: dict, **overrides):
    """The RefineConfig of parsed options (fields the options do not name keep their defaults)."""
    names = {f.name for f in fields(cfg.RefineConfig)}
    values = {CONFIG_OPTIONS.get(k, k): v for k, v in o.items() if CONFIG_OPTIONS.get(k, k) in names}
    if values.get("iterations") is None:  # the caller decides (config.iterations_for)
        values.pop("iterations", None)
    values.update(overrides)
    try:
        return cfg.RefineConfig(**values)
    except (TypeError, ValueError) as exc:
        raise UserError(str(exc)) from None


def load_family_from_options(o: dict, **overrides):
    """The models a target may choose from: the one pinned by --quality or --checkpoint, else every
    rate point of --model."""
    from ..models.loading import load_family

    o = {**o, **overrides}
    return load_family(o["model_name"], o["quality"], o["metric"], o["checkpoint"], o["arch"])


def load_model_from_options(o: dict, **overrides):
    from ..models.loading import load_model

    o = {**o, **overrides}
    return load_model(o["model_name"], o["quality"], o["metric"], o["checkpoint"], o["arch"])


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def progress_bar(console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def task_progress(progress):
    """A pipeline Progress callback over a rich Progress: one task per batch."""
    import contextlib

    @contextlib.contextmanager
    def on_task(description: str, total: int):
        task = progress.add_task(description, total=total)
        try:
            yield lambda step: progress.update(task, completed=step)
        finally:
            progress.remove_task(task)

    return on_task


@contextlib.contextmanager
def records_on_stdout():
    """For the block, ``sys.stdout`` is stderr (what libraries print there goes to stderr: Ray's
    messages about its workers, among them), and the function yielded writes a line on the real
    stdout: --json records stay alone on it."""
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield lambda line: click.echo(line, file=out)


def note(text: str) -> None:
    click.echo(f"sgacodec: note: {text}", err=True)


def read_input(path: str):
    """The pixels of an input path or '-' (stdin); lossy conversions are noted on stderr."""
    from ..files.images import read_image, read_limited

    notes: list[str] = []
    image = read_image(read_limited(sys.stdin.buffer, "stdin") if path == "-" else path, notes)
    for line in notes:
        note(line)
    return image


def known_errors() -> tuple:
    from ..errors import SgacodecError

    return (SgacodecError, OSError, UserError)


def user_errors() -> tuple:
    """What one input may fail with while the others carry on: the known errors, and (unless
    SGACODEC_DEBUG is set) anything else, reported with its type."""
    return known_errors() if os.environ.get("SGACODEC_DEBUG") else known_errors() + (Exception,)


def first_line(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, click.ClickException) else str(exc).strip()
    text = text.splitlines()[0] if text else ""
    if not isinstance(exc, known_errors()):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text


class Failures:
    """The inputs that failed: with several inputs, each is said at once and all again at the end."""

    def __init__(self, inputs):
        self.inputs, self.messages = list(inputs), []

    def add(self, src, exc: BaseException) -> None:
        text = first_line(exc)
        message = text if str(src) in text else f"{src}: {text}"
        self.messages.append(message)
        if len(self.inputs) > 1:
            click.echo(f"sgacodec: error: {message}", err=True)

    def finish(self) -> None:
        """One input: its error. Several: every failure listed again, exit status 1."""
        if len(self.messages) == 1 and len(self.inputs) == 1:
            raise UserError(self.messages[0])
        if self.messages:
            click.echo(f"sgacodec: error: {len(self.messages)} of {len(self.inputs)} inputs failed:", err=True)
            for message in self.messages:
                click.echo(f"  {message}", err=True)
            raise click.exceptions.Exit(1)


def announce_cpu_estimate(console, refinements: int, counts, estimate,
                          shorten: str = "--iterations N or --time-budget SECONDS") -> None:
    """Before refining on a CPU: how long it will roughly take and how to shorten it (``shorten``).

    ``counts``: the iteration counts run; ``estimate()``: (total seconds, seconds per iteration),
    or None when no estimate can be made (a failing estimate is no estimate).
    """
    text = ""
    try:
        timing = estimate()
    except Exception:  # noqa: BLE001 - only an estimate; the real run reports real errors
        timing = None
    if timing is not None:
        total, per_iteration = timing
        text = (f", roughly {total / 60:.0f} min in all" if total >= 90 else
                f", roughly {total:.0f} s in all") + f" ({per_iteration:.2f} s per iteration)"
    counts = " / ".join(str(i) for i in sorted(set(counts)))
    console.print(f"Refining on the CPU: {refinements} refinement(s) of {counts} iterations{text}. "
                  f"Shorten with {shorten}; a GPU (--device cuda) is far faster.", style="yellow",
                  soft_wrap=True, highlight=False)
