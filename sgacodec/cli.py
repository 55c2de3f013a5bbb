"""The ``sgacodec`` command line: a thin layer over the library API.

Heavy imports (torch, CompressAI) happen inside the commands, so ``--help`` and usage errors
return at once. Human output and progress go to stderr; ``--json`` records go to stdout.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import click

from . import __version__

METHOD_CHOICES = ("none", "ste", "uniform", "atanh", "linear", "cosine", "ssl")
MAX_BITSTREAM_BYTES = 1 << 28  # 256 MiB: far above any file sgacodec writes
MODEL_HELP = ("'default' (the embedded model), or a CompressAI zoo name: bmshj2018-hyperprior, "
              "mbt2018-mean, mbt2018, cheng2020-anchor, cheng2020-attn")


class UserError(click.ClickException):
    """One line for the user, exit status 1."""

    def show(self, file=None):
        click.echo(f"sgacodec: error: {self.message}", err=True)


def model_options(f, multiple=False):
    # multiple (refine): repeatable --quality and --checkpoint, one R-D point per model
    more = " Repeatable: each model is one more rate point." if multiple else ""
    for option in reversed([
        click.option("--model", "model_name", default="default", show_default=True, help=MODEL_HELP),
        click.option("--quality", type=click.IntRange(1, 8), default=None, multiple=multiple,
                     help="Rate point: embedded model 1..3 (default: the manifest's), zoo 1..8 (default 3)."
                     + more),
        click.option("--metric", type=click.Choice(["mse", "ms-ssim"]), default="mse", show_default=True,
                     help="Zoo models: the metric the model was trained for."),
        click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, multiple=multiple,
                     help="Local CompressAI state dict (.pth, .pth.tar or .safetensors); never unpickles code."
                     + more),
        click.option("--arch", type=click.Choice(["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018",
                                                  "cheng2020-anchor", "cheng2020-attn"]),
                     default=None, help="Architecture of --checkpoint (default: inferred from its keys)."),
    ]):
        f = option(f)
    return f


def refine_options(f, multiple_methods=False):
    method_opt = click.option(
        "--method", "methods" if multiple_methods else "method",
        type=click.Choice(METHOD_CHOICES + (("linear3", "cosine3", "ssl3") if multiple_methods else ())),
        multiple=multiple_methods, default=("ssl",) if multiple_methods else "ssl", show_default=True,
        help="Rounding during refinement (ssl = SGA+ sigmoid scaled logit, atanh = SGA, none = no "
             "refinement)" + ("; repeat to compare methods; linear3, cosine3, ssl3 are three-class."
                              if multiple_methods else "."))
    multi = multiple_methods  # refine: repeatable --iterations, --lmbda and --tau-max (a grid)
    for option in reversed([
        method_opt,
        click.option("--iterations", type=click.IntRange(min=0), default=(2000,) if multi else 2000,
                     multiple=multi, show_default=True,
                     help="Adam steps per image." + (" Repeatable." if multi else "")),
        click.option("--a", "ssl_a", type=float, default=None,
                     help="SSL sharpness a (default 2.3; 1.4 with --three-class); a = 1 is linear."),
        click.option("--three-class", is_flag=True, help="Three-class rounding (linear, cosine, ssl)."),
        click.option("--factor", type=float, default=0.98, show_default=True, help="Three-class factor s."),
        click.option("--power", type=float, default=1.4, show_default=True, help="Three-class power n."),
        click.option("--lr", type=float, default=0.005, show_default=True, help="Adam learning rate."),
        click.option("--tau-max", type=float, default=(1.0,) if multi else 1.0, multiple=multi,
                     show_default=True, help="Temperature cap: tau(t) = min(exp(-c t), tau_max)."
                     + (" Repeatable." if multi else "")),
        click.option("--temp-rate", type=float, default=1e-3, show_default=True, help="Temperature decay c."),
        click.option("--lmbda", type=float, default=None, multiple=multi,
                     help="Inference lambda (default: the model's training lambda); moves along the R-D curve."
                     + (" Repeatable." if multi else "")),
        click.option("--seed", type=int, default=0, show_default=True, help="Random seed."),
        click.option("--time-budget", type=float, default=None, help="Stop refining a batch after SECONDS."),
        click.option("--eval-every", type=click.IntRange(min=1), default=None,
                     help="Evaluate the true (hard) loss and keep the best every k steps "
                          "[default: 10 on a GPU, 1 on a CPU]."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Same-size images refined together (on a GPU, when not given: as many "
                          "as fit in 12 megapixels, halved while the GPU runs out of memory)."),
    ]):
        f = option(f)
    return f


GPU_EVAL_EVERY = 10  # --eval-every's GPU default: same R-D, 1.37x faster on an H100 (docs/performance.md)


def _eval_every(o, device) -> int:
    """--eval-every as given, else 10 on a GPU (where the true-loss pass costs a third of the time
    and every 10 steps gave the same result) and 1 on a CPU."""
    return o["eval_every"] or (GPU_EVAL_EVERY if device.type == "cuda" else 1)


def _config(method, o):
    from .refine import RefineConfig

    try:
        return RefineConfig(method=method, iterations=o["iterations"], lr=o["lr"], a=o["ssl_a"],
                            three_class=o["three_class"], factor=o["factor"], power=o["power"],
                            tau_max=o["tau_max"], temp_rate=o["temp_rate"], lmbda=o["lmbda"],
                            seed=o["seed"], time_budget=o["time_budget"], eval_every=o["eval_every"] or 1)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _load_model(o):
    from .models import load_model

    return load_model(o["model_name"], o["quality"], o["metric"], o["checkpoint"], o["arch"])


def _stderr():
    from rich.console import Console

    return Console(stderr=True)


def _progress(console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def _read_input(path: str):
    from .imageio import read_image, read_limited

    notes = []
    image = read_image(read_limited(sys.stdin.buffer, "stdin") if path == "-" else path, notes)
    for note in notes:
        click.echo(f"sgacodec: note: {note}", err=True)
    return image


def _output_paths(inputs, output, suffix):
    """Where each input's output goes: a file, a directory, stdout ('-'), or beside the input."""
    many = len(inputs) > 1
    if output == "-":
        if many:
            raise UserError("-o - (stdout) takes a single input")
        return ["-"]
    if output is not None and (many or Path(output).is_dir()):
        out_dir = Path(output)
        out_dir.mkdir(parents=True, exist_ok=True)
        names = [("stdin" if p == "-" else Path(p).stem) + suffix for p in inputs]
        if len(set(names)) != len(names):
            raise UserError(f"two inputs would write the same file in {out_dir}; rename them")
        return [str(out_dir / n) for n in names]
    if output is not None:
        return [output]
    if "-" in inputs:
        raise UserError("reading stdin needs -o FILE or -o -")
    return [str(Path(p).with_suffix(suffix)) for p in inputs]


def _check_writable(inputs, outputs, force):
    sources = [Path(p) for p in inputs if p != "-" and Path(p).exists()]
    for dst in outputs:
        if dst == "-":
            continue
        if Path(dst).exists() and any(Path(dst).samefile(src) for src in sources):
            raise UserError(f"{dst}: refusing to overwrite an input")
        if Path(dst).is_dir():
            raise UserError(f"{dst} is a directory")
        if Path(dst).exists() and not force:
            raise UserError(f"{dst} exists; pass --force to overwrite")


def _write(dst, data: bytes, force: bool = True):
    """Stdout, or a file written atomically (never a partial file); without ``force`` an output
    that appeared since the start is not replaced."""
    from .imageio import atomic_write

    if dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            atomic_write(dst, data, overwrite=force)
        except FileExistsError:
            raise UserError(f"{dst} exists; pass --force to overwrite") from None


def _known_errors():
    from .bitstream import BitstreamError
    from .codec import DecodeError
    from .imageio import ImageError
    from .models import ModelError

    return (BitstreamError, DecodeError, ImageError, ModelError, OSError, UserError)


def _user_errors():
    """What one input may fail with while the others carry on: the known errors, and (unless
    SGACODEC_DEBUG is set) anything else, reported with its type."""
    return _known_errors() if os.environ.get("SGACODEC_DEBUG") else _known_errors() + (Exception,)


def _report_failure(failures, inputs, src, exc):
    """Note a failed input; with several inputs, say so now and carry on with the rest."""
    text = exc.message if isinstance(exc, click.ClickException) else str(exc).strip()
    text = text.splitlines()[0] if text else ""
    if not isinstance(exc, _known_errors()):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    message = text if str(src) in text else f"{src}: {text}"
    failures.append(message)
    if len(inputs) > 1:
        click.echo(f"sgacodec: error: {message}", err=True)


def _finish(failures, inputs):
    """One input: its error. Several: every failure listed again at the end, exit status 1."""
    if len(failures) == 1 and len(inputs) == 1:
        raise UserError(failures[0])
    if failures:
        click.echo(f"sgacodec: error: {len(failures)} of {len(inputs)} inputs failed:", err=True)
        for message in failures:
            click.echo(f"  {message}", err=True)
        raise click.exceptions.Exit(1)


def _announce_cpu_estimate(console, device, iterations: list[int], probe=None):
    """Before refining on a CPU: how long it will roughly take and how to shorten it.

    ``iterations``: the iteration count of each refinement to run (one per image and setting);
    ``probe()``: (seconds per iteration, seconds per refinement besides), timed on the first image
    (None or failing: no estimate).
    """
    if device.type != "cpu" or not any(iterations):
        return
    estimate = ""
    try:
        timing = probe() if probe is not None else None
    except Exception:  # noqa: BLE001 - only an estimate; the real run reports real errors
        timing = None
    if timing is not None:
        per_iteration, per_refinement = timing
        total = per_iteration * sum(iterations) + per_refinement * len(iterations)
        estimate = (f", roughly {total / 60:.0f} min in all" if total >= 90 else
                    f", roughly {total:.0f} s in all") + f" ({per_iteration:.2f} s per iteration)"
    counts = " / ".join(str(i) for i in sorted(set(iterations)))
    console.print(f"Refining on the CPU: {len(iterations)} refinement(s) of {counts} iterations{estimate}. "
                  "Shorten with --iterations N or --time-budget SECONDS; a GPU (--device cuda) is far "
                  "faster.", style="yellow", soft_wrap=True, highlight=False)


def _iteration_probe(lm, path, lmbda, config, crop=None):
    """A probe for _announce_cpu_estimate, timed on the image at ``path``."""
    def probe():
        if path == "-" or lmbda is None:  # stdin can be read only once; no lambda: refine says so
            return None
        from .codec import estimate_refine_seconds
        from .evaluate import center_crop
        from .imageio import read_image

        return estimate_refine_seconds(lm, center_crop(read_image(path), crop), config, lmbda)
    return probe


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sgacodec")
def main():
    """Learned image compression with SGA+ latent refinement at encode time.

    encode refines each image's latents and writes a bitstream that the model's stock CompressAI
    decoder reads; decode writes PNG; refine compares methods without writing files.
    """


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output file, directory (many inputs), or - for stdout. Default: beside the input, .bin.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per image on stdout.")
@model_options
@refine_options
def encode(inputs, output, force, as_json, **o):
    """Encode images (PNG, JPEG, ... or - for stdin) into sgacodec files.

    \b
    sgacodec encode img.png -o img.bin --method ssl --a 2.3
    sgacodec encode photos/*.png -o coded/ --iterations 500
    """
    from .codec import encode as encode_images, resolve_device, device_model

    if output == "-" and as_json:
        raise UserError("--json and -o - both write to stdout; choose one")
    outputs = _output_paths(inputs, output, ".bin")
    _check_writable(inputs, outputs, force)
    config = _config(o["method"], o)
    console = _stderr()
    errors = _user_errors()
    try:
        model = _load_model(o)
        device = resolve_device(o["device"])
    except errors as exc:
        raise UserError(str(exc)) from None
    config = config.with_(eval_every=_eval_every(o, device))
    lm = device_model(model, device)
    if config.method != "none":
        _announce_cpu_estimate(console, device, [config.iterations] * len(inputs), _iteration_probe(
            lm, inputs[0], config.lmbda if config.lmbda is not None else model.lmbda, config))
    failures = []
    # Same-size images are refined together, --batch-size at a time; left at its default on a GPU,
    # batches fill up to codec.AUTO_BATCH_MEGAPIXELS. Inputs are read a window at a time (bounded
    # memory) and each file is written, reported and recorded in input order.
    auto = click.get_current_context().get_parameter_source("batch_size") == \
        click.core.ParameterSource.DEFAULT and device.type == "cuda"
    window = AUTO_BATCH_WINDOW if auto else max(1, o["batch_size"]) * 4
    total = config.iterations if config.method != "none" else 1
    with _progress(console) as progress:
        for begin in range(0, len(inputs), window):
            chunk = range(begin, min(begin + window, len(inputs)))
            images, reports = {}, {}
            for i in chunk:
                try:
                    images[i] = _read_input(inputs[i])
                except errors as exc:
                    _report_failure(failures, inputs, inputs[i], exc)
            for group in _encode_batches(images, o["batch_size"], auto):
                more = f" (+{len(group) - 1} more)" if len(group) > 1 else ""
                task = progress.add_task(f"encode {inputs[group[0]]}{more}", total=total)
                try:
                    got = _encode_splitting(
                        lambda part: encode_images(model, [images[i] for i in part], config, device,
                                                   batch_size=len(part), refine_model=lm,
                                                   on_step=lambda s: progress.update(task, completed=s)),
                        group)
                except _out_of_memory_errors() as exc:  # even one image at a time: the CPU instead
                    try:
                        got = _encode_on_cpu(console, exc, f"{inputs[group[0]]}{more}", lambda: encode_images(
                            model, [images[i] for i in group], config, "cpu", batch_size=len(group),
                            on_step=lambda s: progress.update(task, completed=s)))
                    except errors as exc:
                        for i in group:
                            _report_failure(failures, inputs, inputs[i], exc)
                        continue
                except errors as exc:
                    for i in group:
                        _report_failure(failures, inputs, inputs[i], exc)
                    continue
                finally:
                    progress.remove_task(task)
                reports.update(zip(group, got))
            for i in chunk:
                if i not in reports:
                    continue
                src, dst, report = inputs[i], outputs[i], reports[i]
                try:
                    _write(dst, report.data, force)
                except errors as exc:
                    _report_failure(failures, inputs, src, exc)
                    continue
                record = {"input": src, "output": dst, **report.record()}
                if as_json:
                    click.echo(json.dumps(record))
                console.print(f"{src} -> {dst}: {report.bpp:.4f} bpp, {report.psnr:.2f} dB "
                              f"(base {report.base_bpp:.4f} bpp, {report.base_psnr:.2f} dB), "
                              f"{report.iterations} it, {report.seconds:.1f} s",
                              soft_wrap=True, highlight=False)
    _finish(failures, inputs)


def _out_of_memory_errors():
    import torch

    return (torch.cuda.OutOfMemoryError,)


def _encode_on_cpu(console, exc, what, encode_on_cpu):
    """After a GPU out-of-memory error: say so, free the GPU's cache, and refine on the CPU."""
    import torch

    first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else "no detail"
    click.echo(f"sgacodec: note: {what}: GPU out of memory ({first}); refining on the CPU instead "
               "(slower)", err=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return encode_on_cpu()


AUTO_BATCH_WINDOW = 64  # inputs read ahead to find same-size images


def _encode_splitting(encode_part, group: list[int]) -> list:
    """encode_part(group), halving the batch while the device runs out of memory."""
    from .codec import halving_on_oom

    return halving_on_oom(encode_part, group)


def _encode_batches(images: dict, batch_size: int, auto: bool) -> list[list[int]]:
    """Input indices grouped by image size in input order: batch_size per group, or (auto) as many
    as fit in codec.AUTO_BATCH_MEGAPIXELS."""
    from .codec import batches_by_size

    keys = list(images)
    groups = batches_by_size(list(images.values()), None if auto else max(1, batch_size))
    return sorted([keys[j] for j in g] for g in groups)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output PNG, directory (many inputs), or - for stdout. Default: beside the input, .png.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="The checkpoint the files were encoded with (needed for checkpoint-coded files).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per file on stdout.")
@click.option("--strict", is_flag=True,
              help="Refuse a file whose decoded pixels differ from the encoder's (another machine's "
                   "float arithmetic; by default: a warning, and the image is written).")
def decode(inputs, output, checkpoint, force, as_json, strict):
    """Decode sgacodec files to PNG with the model's stock CompressAI decoder.

    Each image is checked against the encoder's own decode (a hash stored in the file). The
    decoder computes in float64 so that other machines give the same pixels; should one still
    differ, that gives a warning and the image is still written (--strict: an error, nothing
    written)."""
    if output == "-" and as_json:
        raise UserError("--json and -o - both write to stdout; choose one")
    outputs = _output_paths(inputs, output, ".png")
    _check_writable(inputs, outputs, force)
    from .bitstream import unpack
    from .codec import ReconstructionMismatch, decode as decode_bytes
    from .imageio import encode_png, read_limited
    from .models import load_for_bitstream

    console = _stderr()
    errors = _user_errors()
    models, failures = {}, []
    for src, dst in zip(inputs, outputs):
        try:
            data = read_limited(sys.stdin.buffer if src == "-" else src, src, MAX_BITSTREAM_BYTES)
            header = unpack(data)
            if header.model not in models:
                models[header.model] = load_for_bitstream(header.model, checkpoint)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ReconstructionMismatch)
                rgb, header = decode_bytes(data, models[header.model], strict=strict)
            exact = not any(issubclass(w.category, ReconstructionMismatch) for w in caught)
            _write(dst, encode_png(rgb), force)
            if not exact:
                click.echo(f"sgacodec: warning: {src}: {caught[0].message}; written anyway "
                           "(--strict refuses)", err=True)
        except errors as exc:
            _report_failure(failures, inputs, src, exc)
            continue
        if as_json:
            click.echo(json.dumps({"input": src, "output": dst, "height": header.height,
                                   "width": header.width, "bytes": len(data), "exact": exact}))
    _finish(failures, inputs)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON record per image and setting on stdout.")
@click.option("--log", "log_file", type=click.Path(dir_okay=False), default=None,
              help="Write the per-iteration trajectory (true loss, bpp, PSNR) as .csv or .json.")
@click.option("--output-dir", type=click.Path(file_okay=False), default=None,
              help="Also write each bitstream there, as STEM.METHOD.bin (STEM.SETTING.bin for a grid).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--lmbda-scale", "lmbda_scales", type=float, multiple=True,
              help="Rate point as a multiple of the model's lambda (e.g. 0.5 1 2); repeatable, with --lmbda.")
@click.option("--records", "records_file", type=click.Path(dir_okay=False), default=None,
              help="Append one JSON line per image and setting here; settings already in it are skipped "
                   "(resume a stopped evaluation by running the same command again).")
@click.option("--classical", default=None,
              help="Also code each image with jpeg,webp,avif (Pillow; avif where available) at the bit "
                   "rates of the 'none' (or first) method.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write PNG figures there: R-D curves and true R-D loss per iteration.")
@click.option("--crop", type=click.IntRange(min=16), default=None,
              help="Center-crop every image to at most CROP x CROP (quick, reduced evaluations).")
@click.option("--bd-method", type=click.Choice(["akima", "pchip", "cubic"]), default="akima",
              show_default=True, help="Interpolation of the BD-rate / BD-PSNR computation.")
@(lambda f: model_options(f, multiple=True))
@(lambda f: refine_options(f, multiple_methods=True))
def refine(inputs, as_json, log_file, output_dir, force, lmbda_scales, records_file, classical,
           plot_dir, crop, bd_method, **o):
    """Evaluate methods and settings on images: real-byte bpp, PSNR, MS-SSIM, R-D loss, time, BD-rate.

    INPUTS are images, directories of images, or globs. Every combination of the repeatable
    --method, --iterations, --lmbda / --lmbda-scale and --tau-max is run on every image; the table
    gives per-setting means and BD-rate / BD-PSNR against 'none' and between methods (curves need
    two or more rate points: several --lmbda-scale values).

    \b
    sgacodec refine photos/*.png --method ssl --method atanh --iterations 500 --json
    sgacodec refine kodak/ --method none --method atanh --method ssl --iterations 500 \\
        --lmbda-scale 0.5 --lmbda-scale 1 --lmbda-scale 2 --classical jpeg,webp \\
        --records kodak.jsonl --plot figures/
    """
    import contextlib

    from . import evaluate as ev
    from .codec import resolve_device

    errors = _user_errors()
    try:
        paths = ev.expand_inputs(inputs)
        settings = ev.expand_grid(o["methods"], o["iterations"], o["lmbda"], lmbda_scales, o["tau_max"],
                                  o["three_class"])
        codecs = ev.parse_classical(classical)
        base = {"lr": o["lr"], "a": o["ssl_a"], "factor": o["factor"], "power": o["power"],
                "temp_rate": o["temp_rate"], "seed": o["seed"], "time_budget": o["time_budget"],
                "eval_every": o["eval_every"] or 1}
        for s in settings:
            ev.refine_config(s, base)
    except (ev.EvaluationError, ValueError) as exc:
        raise UserError(str(exc)) from None
    console = _stderr()
    choices = ([{"checkpoint": c, "quality": None} for c in o["checkpoint"]]
               or [{"checkpoint": None, "quality": q} for q in (o["quality"] or (None,))])
    try:
        models = [_load_model({**o, **c}) for c in choices]
        device = resolve_device(o["device"])
    except errors as exc:
        raise UserError(str(exc)) from None
    base["eval_every"] = _eval_every(o, device)
    if output_dir:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    refined = [s for s in settings if s.label != "none"]
    if refined and device.type == "cpu":  # every image, setting and model (records resumed count too)
        from .codec import device_model

        first, trained = refined[0], models[0].lmbda
        lmbda = first.lmbda or (trained * first.lmbda_scale if trained is not None else None)
        _announce_cpu_estimate(
            console, device, [s.iterations for s in refined] * len(paths) * len(models),
            _iteration_probe(device_model(models[0], device), paths[0], lmbda,
                             ev.refine_config(first, base), crop))
    grid = len(settings) > len({s.label for s in settings})
    auto = click.get_current_context().get_parameter_source("batch_size") == \
        click.core.ParameterSource.DEFAULT
    batch_size = None if auto else o["batch_size"]  # None: evaluate() picks (1 on a CPU)
    progress = _progress(console)

    @contextlib.contextmanager
    def on_task(description, total):
        task = progress.add_task(description, total=total)
        try:
            yield lambda s: progress.update(task, completed=s)
        finally:
            progress.remove_task(task)

    def on_record(record, report):
        if output_dir and report is not None:
            name = record["tag"] if grid else record["label"]
            if len(models) > 1:
                name = f"{record['model_sha'][:8]}.{name}"
            dst = Path(output_dir) / f"{Path(record['image']).stem}.{name}.bin"
            if dst.exists() and not force:
                raise UserError(f"{dst} exists; pass --force to overwrite")
            _write(str(dst), report.data)
            record = {**record, "output": str(dst)}
        if as_json:
            click.echo(json.dumps({"input": record["image"],
                                   **{k: v for k, v in record.items() if k not in ("key", "history")}}))

    result = ev.EvalResult()
    try:
        with progress:
            for model in models:
                part = ev.evaluate(model, paths, settings, base, device, records_file, crop, codecs,
                                   on_task=on_task, on_record=on_record, errors=errors,
                                   batch_size=batch_size)
                result.records += part.records
                result.computed += part.computed
                result.resumed += part.resumed
                result.failures += [f for f in part.failures if f not in result.failures]
    except (ev.EvaluationError, *errors) as exc:
        raise UserError(str(exc)) from None
    for message in result.failures:
        if len(paths) > 1:
            click.echo(f"sgacodec: error: {message}", err=True)
    if records_file and result.resumed:
        console.print(f"{records_file}: {result.resumed} record(s) resumed, {result.computed} computed")
    if log_file:
        _write_log(log_file, [{"input": r["image"], "method": r["tag"] if grid else r["label"],
                               **dict(zip(("step", "loss", "bpp", "psnr"), vals))}
                              for r in result.records if r.get("history")
                              for vals in zip(*(r["history"][k] for k in ("step", "loss", "bpp", "psnr")))])
    _print_table(console, result.records, bd_method)
    if plot_dir and result.records:
        for path in ev.write_plots(result.records, plot_dir):
            console.print(f"wrote {path}")
    if result.failures:
        if len(result.failures) == 1 and len(paths) == 1:
            raise UserError(result.failures[0])
        raise UserError(f"{len(result.failures)} of {len(paths)} input(s) failed (listed above)")


def _write_log(path, trajectory):
    from .imageio import atomic_write

    if path.endswith(".json"):
        atomic_write(path, json.dumps(trajectory, indent=1).encode())
        return
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["input", "method", "step", "loss", "bpp", "psnr"])
    writer.writeheader()
    writer.writerows(trajectory)
    atomic_write(path, buf.getvalue().encode())


def _print_table(console, records, bd_method="akima"):
    """Per-image rows (small runs), per-setting means, and BD-rate / BD-PSNR tables (rich)."""
    from rich.table import Table

    from . import evaluate as ev

    if not records:
        return
    if not console.is_terminal:  # logs and pipes: wide enough not to wrap the tables
        from rich.console import Console

        console = Console(stderr=True, width=max(console.width, 150))
    f = ev.fmt
    learned = [r for r in records if r["label"] not in ev.CLASSICAL_CODECS]
    if 0 < len(learned) <= 24:
        table = Table(title="sgacodec refine: base (encoder latents) vs refined, real bitstream bytes")
        for col in ("image", "setting", "bpp", "PSNR dB", "MS-SSIM", "R-D loss", "base bpp", "base PSNR",
                    "base loss", "time s"):
            table.add_column(col, justify="left" if col in ("image", "setting") else "right")
        for r in learned:
            table.add_row(Path(r["image"]).name, r["tag"], f(r["bpp"], ".4f"), f(r["psnr"], ".2f"),
                          f(r.get("ms_ssim"), ".4f"), f(r["loss"], ".4f"), f(r["base_bpp"], ".4f"),
                          f(r["base_psnr"], ".2f"), f(r["base_loss"], ".4f"), f(r["seconds"], ".1f"))
        console.print(table)
    rows = sorted(ev.aggregate(records), key=lambda r: (r["curve"], r["bpp"] or 0))
    table = Table(title="Means over images per setting (bpp from real bitstream bytes)")
    for col in ("curve", "rate point", "n", "bpp", "PSNR dB", "MS-SSIM", "R-D loss", "base loss", "time s"):
        table.add_column(col, justify="left" if col in ("curve", "rate point") else "right")
    for r in rows:
        rate = r["point"] if r["lmbda"] is None else f"{r['point']} (lambda {r['lmbda']:.4g})"
        table.add_row(r["curve"], rate, str(r["n"]), f(r["bpp"], ".4f"), f(r["psnr"], ".2f"),
                      f(r["ms_ssim"], ".4f"), f(r["loss"], ".4f"), f(r["base_loss"], ".4f"),
                      f(r["seconds"], ".1f"))
    console.print(table)
    curves = {k: v for k, v in ev.curves_from_rows(rows).items() if len(v) >= 2}
    if len(curves) < 2:
        return
    anchor = next((k for k in curves if k.split(": ")[-1] == "none"), None)
    if anchor:
        table = Table(title=f"BD-rate and BD-PSNR against {anchor} (bjontegaard, {bd_method}; "
                            "negative BD-rate = fewer bits)")
        for col in ("curve", "BD-rate %", "BD-PSNR dB", "points", "overlap"):
            table.add_column(col, justify="left" if col == "curve" else "right")
        for b in ev.bd_table(curves, anchor, method=bd_method):
            table.add_row(b["test"], f(b["bd_rate"], "+.2f"), f(b["bd_psnr"], "+.3f"),
                          f"{b['points'][0]}/{b['points'][1]}", f(b["overlap"], ".0%"))
        console.print(table)
    names = [k for k in curves if k != anchor]
    if len(names) >= 2:
        matrix = ev.bd_matrix(curves, names, method=bd_method)
        table = Table(title="Pairwise BD-rate % (row against column)")
        table.add_column("row vs column")
        for n in names:
            table.add_column(n, justify="right")
        for t in names:
            table.add_row(t, *("" if t == a else f(matrix[(t, a)], "+.2f") for a in names))
        console.print(table)


@main.command(name="train", hidden=True)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoint", "ckpt", required=True, type=click.Path(dir_okay=False),
              help="Training checkpoint: resumed when it exists, written at the end.")
@click.option("--lmbda", type=float, default=0.0067, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--crop", type=click.IntRange(min=64), default=256, show_default=True,
              help="Square crop side; a multiple of 64.")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--decay-at", type=float, default=0.85, show_default=True, help="lr / 10 after this fraction.")
@click.option("-N", "n_channels", type=int, default=128, show_default=True)
@click.option("-M", "m_channels", type=int, default=192, show_default=True)
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Held-out folder validated every --val-every steps (never the test set).")
@click.option("--val-every", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Warm start from another model's weights (ignored when resuming).")
@click.option("--time-limit", type=float, default=None, help="Stop (and checkpoint) after SECONDS.")
@click.option("--save-every", type=float, default=300.0, show_default=True,
              help="Seconds between intermediate checkpoints.")
@click.option("--amp", type=click.Choice(["off", "bf16"]), default="off", show_default=True,
              help="bf16 autocast of the transforms only; entropy models stay float32.")
@click.option("--log-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Steps between log lines when stderr is not a terminal.")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False), default=None,
              help="When training is complete, also write fp16 safetensors weights here.")
def train_cmd(data_dir, ckpt, lmbda, steps, batch_size, crop, lr, decay_at, n_channels, m_channels,
              val_dir, val_every, init_from, time_limit, save_every, amp, log_every, device, seed,
              threads, export_path):
    """Train a MeanScaleHyperprior on a folder of images (for the embedded models)."""
    import time

    import torch

    from .codec import resolve_device
    from .train import TrainConfig, export, train

    if crop % 64:
        raise click.BadParameter("must be a multiple of 64", param_hint="--crop")
    if threads:
        torch.set_num_threads(threads)
    config = TrainConfig(lmbda=lmbda, N=n_channels, M=m_channels, steps=steps, batch_size=batch_size,
                         crop=crop, lr=lr, decay_at=decay_at, seed=seed, val_every=val_every,
                         save_every=save_every, amp=amp)
    console = _stderr()
    begin = time.monotonic()
    first = []
    with _progress(console) as progress:
        task = progress.add_task("train", total=steps)

        def on_progress(step, stats):
            text = f"loss {stats['loss']:.3f} bpp {stats['bpp']:.3f} psnr {stats['psnr']:.2f} aux {stats['aux']:.1f}"
            progress.update(task, completed=step, description=f"train {text}")
            if not first:
                first.append((step, time.monotonic()))
            if not console.is_terminal and step % log_every == 0:
                s0, t0 = first[0]
                rate = (time.monotonic() - t0) / max(step - s0, 1)
                console.print(f"step {step}/{steps} {text} ({rate:.2f} s/step)", highlight=False)

        result = train(config, data_dir, ckpt, val_dir, str(resolve_device(device)), time_limit,
                       init_from, on_progress, log=console.print)
    console.print(f"stopped at step {result['step']} of {steps} after {time.monotonic() - begin:.0f} s"
                  + (" (complete)" if result["done"] else ""))
    if result["done"] and export_path:
        digest = export(ckpt, export_path)
        console.print(f"exported {export_path} (sha256 {digest})")


def train_command(args=None):
    main(args=["train", *(args or sys.argv[1:])])


def run(argv=None):
    """Console entry point: one clear line and a non-zero exit for anything unexpected; exit 130
    on Ctrl-C and 143 on SIGTERM, after the temporary output files are removed."""
    import signal

    def terminated(signum, frame):
        raise SystemExit(128 + signum)  # unwinds like an exception: atomic writes clean up

    try:
        signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread
        pass
    try:
        code = main.main(args=argv, prog_name="sgacodec", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("sgacodec: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except BrokenPipeError:  # stdout closed early (| head): nothing more to say on it
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        click.echo("sgacodec: error: output pipe closed", err=True)
        sys.exit(1)
    except ModuleNotFoundError as exc:
        if os.environ.get("SGACODEC_DEBUG"):
            raise
        click.echo(f"sgacodec: error: {exc} in this Python ({sys.executable}); run ./scripts/setup "
                   "and use .venv/bin/sgacodec, or pip install sgacodec", err=True)
        sys.exit(1)
    except Exception as exc:  # last resort: never a traceback for the user
        if os.environ.get("SGACODEC_DEBUG"):
            raise
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        click.echo(f"sgacodec: error: {type(exc).__name__}: {text} (SGACODEC_DEBUG=1 shows the "
                   "traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
