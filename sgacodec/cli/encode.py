"""``sgacodec encode``: images into sgacodec files (pipeline.BatchEncoder does the work)."""

from __future__ import annotations

import json

import click

from .options import (
    Failures,
    UserError,
    announce_cpu_estimate,
    config_from_options,
    load_family_from_options,
    load_model_from_options,
    model_options,
    note,
    progress_bar,
    read_input,
    refine_options,
    stderr_console,
    target_options,
    targets_from_options,
    task_progress,
    user_errors,
)


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output file, directory (many inputs), or - for stdout. Default: beside the input, .bin.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per image on stdout.")
@model_options()
@refine_options()
@target_options()
def encode(inputs, output, force, as_json, **o):
    """Encode images (PNG, JPEG, ... or - for stdin) into sgacodec files.

    \b
    sgacodec encode img.png -o img.bin --method ssl --a 2.3
    sgacodec encode photos/*.png -o coded/ --iterations 500
    sgacodec encode photos/*.png -o coded/ --target-bpp 0.3      # each file at most 0.3 bpp
    """
    from ..imageio import read_image
    from ..outputs import check_outputs, plan_outputs, write_output
    from ..pipeline import BatchEncoder

    if output == "-" and as_json:
        raise UserError("--json and -o - both write to stdout; choose one")
    errors = user_errors()
    try:
        outputs = plan_outputs(list(inputs), output, ".bin")
        check_outputs(list(inputs), outputs, force)
    except errors as exc:
        raise UserError(str(exc)) from None
    targets = targets_from_options(o)
    if len(targets) > 1:
        raise UserError("one target at a time: --target-bpp, --target-size or --target-psnr")
    config = config_from_options(o)
    console = stderr_console()
    if targets:
        return encode_to_target(list(inputs), outputs, targets[0], config, console, force, as_json, o)
    try:
        model = load_model_from_options(o)
        encoder = BatchEncoder(model, config, o["device"], o["batch_size"], on_note=note)
    except errors as exc:
        raise UserError(str(exc)) from None
    if config.refines and encoder.device.type == "cpu":
        announce_cpu_estimate(console, len(inputs), [config.iterations],
                              lambda: None if inputs[0] == "-" else encoder.estimate_seconds(
                                  read_image(inputs[0]), [config.iterations] * len(inputs)))
    failures = Failures(inputs)
    with progress_bar(console) as progress:
        for outcome in encoder.encode_sources(list(inputs), read_input, task_progress(progress), errors):
            src, dst, report = outcome.source, outputs[outcome.index], outcome.report
            if outcome.error is not None:
                failures.add(src, outcome.error)
                continue
            try:
                write_output(dst, report.data, force)
            except errors as exc:
                failures.add(src, exc)
                continue
            if as_json:
                click.echo(json.dumps({"input": src, "output": dst, **report.record()}))
            console.print(f"{src} -> {dst}: {report.bpp:.4f} bpp, {report.psnr:.2f} dB "
                          f"(base {report.base_bpp:.4f} bpp, {report.base_psnr:.2f} dB), "
                          f"{report.iterations} it, {report.seconds:.1f} s",
                          soft_wrap=True, highlight=False)
    failures.finish()


def encode_to_target(inputs, outputs, target, config, console, force, as_json, o):
    """Each input with its own search for ``target`` (sgacodec.targets does the work)."""
    from ..outputs import write_output
    from ..pipeline import encode_sources_to_target, resolve_device

    errors = user_errors()
    try:
        family = load_family_from_options(o)
        device = resolve_device(o["device"])
    except errors as exc:
        raise UserError(str(exc)) from None
    if config.refines and device.type == "cpu":
        announce_cpu_estimate(console, len(inputs), [config.iterations], lambda: None)
    failures = Failures(inputs)
    with progress_bar(console) as progress:
        for outcome in encode_sources_to_target(family, inputs, read_input, target, config, device,
                                                progress=task_progress(progress), errors=errors, on_note=note):
            src, dst, result = outcome.source, outputs[outcome.index], outcome.result
            if outcome.error is not None:
                failures.add(src, outcome.error)
                continue
            report = result.report
            if o["strict"] and not result.reached:
                failures.add(src, UserError(f"{src}: target {target.describe()}: {result.status}"))
                continue
            try:
                write_output(dst, report.data, force)
            except errors as exc:
                failures.add(src, exc)
                continue
            if as_json:
                click.echo(json.dumps({"input": src, "output": dst, **report.record(), **result.record()}))
            console.print(f"{src} -> {dst}: {report.bpp:.4f} bpp, {report.psnr:.2f} dB; target "
                          f"{target.describe()}: {result.status}; {result.model}, lambda {result.lmbda:.4g}, "
                          f"{result.refinements} refinements ({result.iterations} it), {result.seconds:.1f} s",
                          soft_wrap=True, highlight=False)
            if not result.reached:
                note(f"{src}: target {target.describe()} {result.status}")
    failures.finish()
