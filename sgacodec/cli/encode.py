"""``sgacodec encode``: images into sgacodec files (codec.batching.BatchEncoder does the work;
with --ray, cluster.encoding.RayEncoder on a Ray cluster)."""

from __future__ import annotations

import click

from .. import config as cfg
from .console import announce_cpu_estimate, note, progress_bar, records_on_stdout, stderr_console, task_progress
from .failures import Failures, UserError, user_errors
from .inputs import Pictures, parse_metadata
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


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output file, directory (many inputs, a folder or a glob), or - for stdout. Default: beside "
                   "the input, .bin.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON record per image on stdout (with --ray: as images finish, not in input order).")
@click.option("--metadata", "metadata", default="all", show_default=True, metavar="LIST",
              help="What travels into the file and back into the decoded PNG: all, none, or a comma list of "
                   "icc, exif, xmp (EXIF orientation is applied to the pixels either way, and its tag reset to 1).")
@click.option("--alpha", "alpha", type=click.Choice(["keep", "drop"]), default="keep", show_default=True,
              help="An alpha channel: kept losslessly in its own chunk (decoded to RGBA), or dropped.")
@model_options()
@refine_options()
@ray_options
@target_options()
def encode(inputs, output, force, as_json, ray_address, workers, worker_cpus, metadata, alpha, **opts):
    """Encode images (PNG, JPEG, ... or - for stdin) into sgacodec files.

    INPUTS are images, directories of images, or globs.

    \b
    sgacodec encode img.png -o img.bin --method ssl --a 2.3
    sgacodec encode photos/ -o coded/ --iterations 500
    sgacodec encode 'photos/**/*.png' -o coded/ --iterations 500 --ray      # on a Ray cluster
    sgacodec encode photos/*.png -o coded/ --target-bpp 0.3      # each file at most 0.3 bpp
    """
    from .. import (
        BatchEncoder,
        check_outputs,
        expand_inputs,
        input_identities,
        iterations_for,
        json_line,
        names_collection,
        plan_outputs,
        read_image,
        resolve_device,
        write_output,
    )

    if output == "-" and as_json:
        raise UserError("--json and -o - both write to stdout; choose one")
    pictures = Pictures(parse_metadata(metadata), alpha == "keep")
    errors = user_errors()
    on_ray = ray_requested(ray_address, workers, worker_cpus)
    try:
        paths = expand_inputs(inputs)
        outputs = plan_outputs(paths, output, ".bin", directory=any(names_collection(a) for a in inputs))
        check_outputs(paths, outputs, force or on_ray)  # --ray: existing outputs are skipped
        protected = input_identities(paths)
    except errors as exc:
        raise UserError(str(exc)) from None
    targets = targets_from_options(opts)
    if len(targets) > 1:
        raise UserError("one target at a time: --target-bpp, --target-size or --target-psnr")
    if targets and on_ray:
        raise UserError("a target (--target-*) does not run on --ray; encode without --ray")
    console = stderr_console()
    if targets:
        return encode_files_to_target(paths, outputs, protected, targets[0], console, force, as_json, opts,
                                      pictures)
    try:
        device = None if on_ray else resolve_device(opts["device"])
        iterations, time_budget = iterations_for(opts["iterations"], opts["effort"], opts["time_budget"],
                                                 device.type if device is not None else "cuda")
        config = config_from_options(opts, iterations=iterations, time_budget=time_budget)
        model = load_model_from_options(opts)
        encoder = None if on_ray else BatchEncoder(model, config, device, opts["batch_size"], on_note=note)
    except errors as exc:
        raise UserError(str(exc)) from None
    cpu_default = config.refines and time_budget is not None and opts["time_budget"] is None
    if encoder is not None:
        encoder.budget_rule = cpu_default  # large photos: refined only when the default budget affords it
    failures = Failures(paths)

    def report(src, dst, record, echo=click.echo):
        if as_json:
            echo(json_line({"input": src, "output": dst, **record}))
        console.print(f"{src} -> {dst}: {record['bpp']:.4f} bpp, {record['psnr']:.2f} dB "
                      f"(base {record['base_bpp']:.4f} bpp, {record['base_psnr']:.2f} dB), "
                      f"{record['iterations']} it, {record['seconds']:.1f} s", soft_wrap=True, highlight=False)

    if on_ray:
        encode_on_ray(ray_address, model, config, opts, workers, worker_cpus, paths, outputs, force, as_json,
                      console, failures, report, pictures)
        failures.finish()
        return
    if cpu_default:
        note(f"on a CPU, each image is refined for about {time_budget:g} s (the budget schedule anneals "
             "within the steps that affords; an image too large for that to be worth it is coded unrefined, "
             "and said); --effort 1..9, --iterations N or --time-budget SECONDS choose, a GPU (--device cuda) "
             "is far faster")
    elif config.refines and encoder.device.type == "cpu":
        announce_cpu_estimate(console, len(paths), [config.iterations],
                              lambda: None if paths[0] == "-" else encoder.estimate_seconds(
                                  read_image(paths[0]), [config.iterations] * len(paths)))
    with progress_bar(console) as progress:
        for outcome in encoder.encode_sources(paths, pictures.read, task_progress(progress), errors):
            src, dst = outcome.source, outputs[outcome.index]
            if outcome.error is not None:
                pictures.forget(src)
                failures.add(src, outcome.error)
                continue
            record = {**outcome.report.record(), "recon": outcome.report.recon}
            try:
                write_output(dst, pictures.finish(src, outcome.report.data, record), force, protected)
            except errors as exc:
                failures.add(src, exc)
                continue
            report(src, dst, record)
    failures.finish()


def encode_on_ray(address, model, config, opts, workers, worker_cpus, paths, outputs, force, as_json, console,
                  failures, report, pictures):
    """The --ray path: RayEncoder's outcomes printed as they come; skipped outputs counted."""
    from .. import RayEncoder, json_line

    errors = user_errors()
    skipped = 0
    try:
        with records_on_stdout() as echo, progress_bar(console) as progress:
            encoder = RayEncoder(model, config, opts["device"], opts["batch_size"], workers, worker_cpus,
                                 address=address, keep=pictures.keep, alpha=pictures.alpha)
            for outcome in encoder.encode_files(paths, outputs, force, task_progress(progress), note):
                if outcome.skipped:
                    skipped += 1
                    if as_json:
                        echo(json_line({"input": outcome.source, "output": outcome.output, "skipped": True}))
                elif outcome.error is not None:
                    failures.add(outcome.source, UserError(outcome.error))
                else:
                    report(outcome.source, outcome.output, outcome.record, echo)
    except errors as exc:
        raise UserError(str(exc)) from None
    if skipped:
        note(f"{skipped} of {len(paths)} output(s) exist and were skipped (resume); --force encodes them again")


def encode_files_to_target(paths, outputs, protected, target, console, force, as_json, opts, pictures):
    """Each input with its own search for ``target`` (sgacodec.targets does the work)."""
    from .. import encode_sources_to_target, iterations_for, json_line, resolve_device, write_output

    errors = user_errors()
    try:
        family = load_family_from_options(opts)
        device = resolve_device(opts["device"])
        iterations, _ = iterations_for(opts["iterations"], opts["effort"], None, "cuda")
        if opts["iterations"] is None and opts["effort"] is None and device.type == "cpu":
            iterations = cfg.CPU_TARGET_ITERATIONS
            note(f"on a CPU, a target's search refines {iterations} iterations per image "
                 "(--effort 1..9 or --iterations N choose; a GPU, --device cuda, is far faster)")
        config = config_from_options(opts, iterations=iterations)
    except errors as exc:
        raise UserError(str(exc)) from None
    if config.refines and device.type == "cpu":
        announce_cpu_estimate(console, len(paths), [config.iterations], lambda: None,
                              shorten="--effort 1..9 or --iterations N (a target's search takes no time budget)")
    failures = Failures(paths)
    with progress_bar(console) as progress:
        for outcome in encode_sources_to_target(family, paths, pictures.read, target, config, device,
                                                progress=task_progress(progress), errors=errors, on_note=note):
            src, dst, result = outcome.source, outputs[outcome.index], outcome.result
            if outcome.error is not None:
                failures.add(src, outcome.error)
                continue
            report = result.report
            if opts["strict"] and not result.reached:
                pictures.forget(src)
                failures.add(src, UserError(f"{src}: target {target.describe()}: {result.status}"))
                continue
            record = {**report.record(), "recon": report.recon}
            try:
                write_output(dst, pictures.finish(src, report.data, record), force, protected)
            except errors as exc:
                failures.add(src, exc)
                continue
            if as_json:
                click.echo(json_line({"input": src, "output": dst, **record, **result.record()}))
            console.print(f"{src} -> {dst}: {report.bpp:.4f} bpp, {report.psnr:.2f} dB; target "
                          f"{target.describe()}: {result.status}; {result.model}, lambda {result.lmbda:.4g}, "
                          f"{result.refinements} refinements ({result.iterations} it), {result.seconds:.1f} s",
                          soft_wrap=True, highlight=False)
            if not result.reached:
                note(f"{src}: target {target.describe()} {result.status}")
    failures.finish()
