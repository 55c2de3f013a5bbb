"""``sgacodec decode``: sgacodec files into PNG with the model's stock CompressAI decoder."""

from __future__ import annotations

import sys

import click

from .. import config as cfg
from .console import note, progress_bar, stderr_console, task_progress
from .failures import Failures, UserError, user_errors

LONG_DECODE_MEGAPIXELS = 100  # a decode this large is announced, with a rough time
SECONDS_PER_MEGAPIXEL = 3.5  # this machine's decode, both cores (docs/performance.md, "Large photos")


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output PNG, directory (many inputs), or - for stdout. Default: beside the input, .png.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="The checkpoint the files were encoded with (needed for checkpoint-coded files).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per file on stdout.")
@click.option("--allow-download", is_flag=True,
              help="Files coded with a CompressAI zoo model: download its weights when they are not in "
                   "torch.hub's cache (by default decoding never downloads; SGACODEC_ALLOW_DOWNLOAD=1 "
                   "too).")
@click.option("--region", default=None, metavar="X,Y,W,H",
              help="Decode only this rectangle (pixels from the top left), computing only the tiles it and "
                   "its halo need: the same pixels as a full decode's (the hash, which covers the whole "
                   "image, is not checked).")
@click.option("--strict", is_flag=True,
              help="Refuse a file whose decoded pixels differ from the encoder's (another machine's "
                   "float arithmetic; by default: a warning, and the image is written).")
def decode(inputs, output, checkpoint, force, as_json, allow_download, region, strict):
    """Decode sgacodec files to PNG with the model's stock CompressAI decoder.

    INPUTS are files, folders (every sgacodec file in them, whatever its extension) or globs.

    Each image is checked against the encoder's own decode (a hash stored in the file). The
    decoder computes in float64 so that other machines give the same pixels; should one still
    differ, that gives a warning and the image is still written (--strict: an error, nothing
    written)."""
    from .. import (
        Decoder,
        check_outputs,
        container_header,
        expand_files,
        input_identities,
        json_line,
        names_collection,
        open_output,
        plan_outputs,
        read_limited,
        tiles_to_decode,
        write_decoded_png,
    )

    if output == "-" and as_json:
        raise UserError("--json and -o - both write to stdout; choose one")
    bounds = parse_region(region)
    errors = user_errors()
    try:
        paths = expand_files(inputs)
        outputs = plan_outputs(paths, output, ".png", directory=any(names_collection(a) for a in inputs))
        check_outputs(paths, outputs, force)
        protected = input_identities(paths)
    except errors as exc:
        raise UserError(str(exc)) from None
    decoder, failures = Decoder(checkpoint, allow_download, strict=strict), Failures(paths)
    console = stderr_console()
    with progress_bar(console) as progress:
        for src, dst in zip(paths, outputs):
            try:
                data = read_limited(sys.stdin.buffer if src == "-" else src, src, cfg.MAX_FILE_BYTES)
                header = container_header(data)
                megapixels = header.width * header.height / 1e6
                if megapixels >= LONG_DECODE_MEGAPIXELS and bounds is None:
                    note(f"{src}: {header.width}x{header.height} ({megapixels:.0f} MP) takes a while to decode "
                         f"(roughly {megapixels * SECONDS_PER_MEGAPIXEL / 60:.0f} min here on 2 cores); "
                         "--region X,Y,W,H decodes a part")
                with task_progress(progress)(f"decode {src}", tiles_to_decode(header, bounds)) as on_step:
                    done = [0]

                    def advance(n, on_step=on_step, done=done):
                        done[0] += n
                        if on_step is not None:
                            on_step(done[0])

                    strips = decoder.strips(data, bounds, on_progress=advance)
                    with open_output(dst, force, protected) as f:  # the PNG written as the strips come
                        write_decoded_png(strips, f)
            except errors as exc:
                failures.add(src, exc)
                continue
            if strips.warning:
                click.echo(f"sgacodec: warning: {src}: {strips.warning}; written anyway (--strict refuses)",
                           err=True)
            if as_json:
                click.echo(json_line({"input": src, "output": dst, "height": strips.height, "width": strips.width,
                                       "bytes": len(data), "exact": strips.exact}))
    failures.finish()


def parse_region(text: str | None) -> tuple[int, int, int, int] | None:
    """--region X,Y,W,H: four whole numbers, a width and height of at least one."""
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--region {text!r}: give X,Y,W,H, four whole numbers (pixels)") from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise UserError(f"--region {text!r}: X and Y at least 0, W and H at least 1")
    return x, y, w, h
