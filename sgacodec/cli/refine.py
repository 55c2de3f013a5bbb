"""``sgacodec refine``: evaluate methods and settings on images (sgacodec.evaluation does the work)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .console import announce_cpu_estimate, note, progress_bar, records_on_stdout, stderr_console, task_progress
from .failures import UserError, user_errors
from .options import (
    config_from_options,
    load_family_from_options,
    load_model_from_options,
    model_options,
    refine_options,
    target_options,
    targets_from_options,
)
from .ray_options import ray_options, ray_requested
from .tables import print_tables


@click.command()
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
@click.option("--redo-unproven", is_flag=True,
              help="With --records: compute again the records there that name no provenance (machine, "
                   "versions, commit); each new record supersedes the old one.")
@click.option("--records-from", "records_from", type=click.Path(exists=True, dir_okay=False), multiple=True,
              help="With --records: records of these files (other evaluations' records) count as done and "
                   "are copied into --records as they are, provenance included, instead of computed "
                   "again; repeatable.")
@click.option("--classical", default=None,
              help="Also code each image with jpeg,webp,avif (Pillow; avif where available) at the bit "
                   "rates of the 'none' (or first) method.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write PNG figures there: R-D curves and true R-D loss per iteration.")
@click.option("--crop", type=click.IntRange(min=16), default=None,
              help="Center-crop every image to at most CROP x CROP (quick, reduced evaluations).")
@click.option("--bd-method", type=click.Choice(["akima", "pchip", "cubic"]), default="akima",
              show_default=True, help="Interpolation of the BD-rate / BD-PSNR computation.")
@model_options(multiple=True)
@refine_options(grid=True)
@ray_options
@target_options(multiple=True)
def refine(inputs, as_json, log_file, output_dir, force, lmbda_scales, records_file, redo_unproven, records_from,
           classical, plot_dir, crop, bd_method, ray_address, workers, worker_cpus, **opts):
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
    sgacodec refine kodak/ --method none --method ssl --records kodak.jsonl --ray   # on a Ray cluster
    sgacodec refine kodak/ --iterations 200 --target-bpp 0.3 --target-bpp 0.5 --records t.jsonl

    With --target-* values, those are the rate points instead of lambdas: each image is encoded
    to each target (its model chosen among the rate points unless --quality or --checkpoint pins
    it, lambda searched), one record per image and target.
    """
    from .. import (
        center_crop,
        check_writable,
        expand_inputs,
        iterations_for,
        json_line,
        prepare_directory,
        read_image,
        write_output,
    )
    from ..evaluation import EvalResult, Evaluation, expand_grid, load_records, parse_classical

    errors = user_errors()
    on_ray = ray_requested(ray_address, workers, worker_cpus)
    targets = targets_from_options({**opts, "lmbda_scales": lmbda_scales})
    if targets and on_ray:
        raise UserError("targets (--target-*) do not run on --ray; evaluate them without --ray")
    if (records_from or redo_unproven) and not records_file or records_from and on_ray:
        raise UserError("--records-from and --redo-unproven need --records (and --records-from runs without --ray)")
    borrowed = []
    for path in records_from:
        try:
            borrowed += load_records(path)
        except errors as exc:
            raise UserError(f"--records-from {path}: {exc}") from None
    try:
        paths = expand_inputs(inputs)
        if on_ray and "-" in paths:
            raise UserError("--ray reads files, not stdin")
        iterations = opts["iterations"] or [iterations_for(None, opts["effort"])[0]]
        settings = expand_grid(opts["methods"], iterations, opts["lmbda"], lmbda_scales, opts["tau_max"],
                               opts["three_class"], opts["schedules"], targets)
        codecs = parse_classical(classical)
    except errors as exc:
        raise UserError(str(exc)) from None
    base = config_from_options(opts, method="none", iterations=0, tau_max=1.0, lmbda=None, three_class=False)
    try:  # every setting's configuration is valid before anything runs
        for s in settings:
            s.config(base)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:  # every output can be written, before any refinement
        for folder in (output_dir, plot_dir, records_file and os.path.dirname(records_file)):
            if folder:  # created, as the records writer creates its folder
                prepare_directory(folder)
        for path in (log_file, records_file):
            if path:
                check_writable(path)
    except errors as exc:
        raise UserError(str(exc)) from None
    console = stderr_console()
    choices = ([{"checkpoint": c, "quality": None} for c in opts["checkpoint"]]
               or [{"checkpoint": None, "quality": q} for q in (opts["quality"] or (None,))])
    pinned = bool(opts["checkpoint"] or opts["quality"])
    try:  # with --ray the workers choose their device; the driver's runs only describe the work
        runs = [Evaluation(load_model_from_options(opts, **c), paths, settings, base,
                           "cpu" if on_ray else opts["device"], records_file, crop, codecs,
                           batch_size=opts["batch_size"], errors=errors, on_note=note,
                           redo_unproven=redo_unproven, borrowed=borrowed,
                           family=load_family_from_options(opts, **c) if targets and not pinned else None)
                for c in choices]
    except errors as exc:
        raise UserError(str(exc)) from None
    device = runs[0].encoder.device
    try:
        pending = [] if on_ray else [(run, s, src) for run in runs for s, src in run.pending()]
    except errors as exc:
        raise UserError(str(exc)) from None
    if pending and device.type == "cpu":  # only what is not resumed from the records
        run, first, src = pending[0]
        announce_cpu_estimate(console, len(pending), [s.iterations for _, s, _ in pending],
                              lambda: None if src == "-" else run.encoder.estimate_seconds(
                                  center_crop(read_image(src), crop), [s.iterations for _, s, _ in pending],
                                  run.planned(first)[0]))
    grid = len(settings) > len({s.label for s in settings})

    def on_record(record, report, echo=click.echo):
        output = None
        if output_dir and report is not None:
            name = record.tag if grid else record.label
            if len(runs) > 1:
                name = f"{record.model_sha[:8]}.{name}"
            output = str(Path(output_dir) / f"{Path(record.image).stem}.{name}.bin")
            if Path(output).exists() and not force:
                raise UserError(f"{output} exists; pass --force to overwrite")
            write_output(output, report.data)
        if as_json:
            data = json.loads(record.to_json())
            data.pop("key", None)
            data.pop("history", None)
            echo(json_line({"input": record.image, **data, **({"output": output} if output else {})}))

    result = EvalResult()
    try:
        if on_ray:
            from .. import evaluate_on_ray

            with records_on_stdout() as echo, progress_bar(console) as progress:
                result = evaluate_on_ray(runs, opts["device"], opts["batch_size"], workers, worker_cpus,
                                         progress=task_progress(progress),
                                         on_record=lambda r, report: on_record(r, report, echo), on_note=note,
                                         address=ray_address)
        else:
            with progress_bar(console) as progress:
                for run in runs:
                    result.add(run.run(task_progress(progress), on_record))
    except errors as exc:
        raise UserError(str(exc)) from None
    for message in result.failures:
        if len(paths) > 1:
            click.echo(f"sgacodec: error: {message}", err=True)
    if records_file and result.resumed:
        copied = f" ({result.copied} copied from --records-from)" if result.copied else ""
        console.print(f"{records_file}: {result.resumed} record(s) resumed{copied}, {result.computed} computed")
    if log_file:
        write_log(log_file, [{"input": r.image, "method": r.tag if grid else r.label,
                              **dict(zip(("step", "loss", "bpp", "psnr"), values))}
                             for r in result.records if r.history
                             for values in zip(*(r.history[k] for k in ("step", "loss", "bpp", "psnr")))])
    print_tables(console, result.records, bd_method)
    if plot_dir and result.records:
        from ..evaluation import write_plots

        try:
            written = write_plots(result.records, plot_dir)
        except ImportError as exc:
            raise UserError(f"--plot needs matplotlib ({exc}): pip install 'sgacodec[eval]'") from None
        for path in written:
            console.print(f"wrote {path}")
    if result.failures:
        if len(result.failures) == 1 and len(paths) == 1:
            raise UserError(result.failures[0])
        raise UserError(f"{len(result.failures)} of {len(paths)} input(s) failed (listed above)")


def write_log(path: str, trajectory: list[dict]) -> None:
    """The per-iteration trajectory as JSON (a .json path) or CSV."""
    import csv
    import io

    from .. import atomic_write

    if path.endswith(".json"):
        atomic_write(path, json.dumps(trajectory, indent=1).encode())
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["input", "method", "step", "loss", "bpp", "psnr"])
    writer.writeheader()
    writer.writerows(trajectory)
    atomic_write(path, buf.getvalue().encode())
