"""``sgacodec encode``: images into sgacodec files (pipeline.BatchEncoder does the work)."""

from __future__ import annotations

import click

from .options import (
    Failures,
    UserError,
    announce_cpu_estimate,
    config_from_options,
    load_model_from_options,
    model_options,
    note,
    progress_bar,
    read_input,
    refine_options,
    stderr_console,
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
def encode(inputs, output, force, as_json, **o):
    """Encode images (PNG, JPEG, ... or - for stdin) into sgacodec files.

    \b
    sgacodec encode img.png -o img.bin --method ssl --a 2.3
    sgacodec encode photos/*.png -o coded/ --iterations 500
    """
    from ..imageio import read_image
    from ..outputs import check_outputs, input_identities, json_line, plan_outputs, write_output
    from ..pipeline import BatchEncoder

    if output == "-" and as_json:
        raise UserError("--json and -o - both write to stdout; choose one")
    errors = user_errors()
    try:
        outputs = plan_outputs(list(inputs), output, ".bin")
        check_outputs(list(inputs), outputs, force)
        protected = input_identities(list(inputs))
    except errors as exc:
        raise UserError(str(exc)) from None
    config = config_from_options(o)
    console = stderr_console()
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
                write_output(dst, report.data, force, protected)
            except errors as exc:
                failures.add(src, exc)
                continue
            if as_json:
                click.echo(json_line({"input": src, "output": dst, **report.record()}))
            console.print(f"{src} -> {dst}: {report.bpp:.4f} bpp, {report.psnr:.2f} dB "
                          f"(base {report.base_bpp:.4f} bpp, {report.base_psnr:.2f} dB), "
                          f"{report.iterations} it, {report.seconds:.1f} s",
                          soft_wrap=True, highlight=False)
    failures.finish()
