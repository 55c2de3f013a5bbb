"""``sgacodec info``: what sgacodec files hold, from their containers alone (no torch)."""

from __future__ import annotations

import sys

import click

from .. import config as cfg
from .failures import Failures, user_errors


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON record per file on stdout.")
def info(inputs, as_json):
    """Describe sgacodec files without decoding them: the format version, the model, the size,
    the tile grid, the latent shapes, the bytes of each stream and the bpp, the metadata (ICC,
    EXIF, XMP) and alpha with their sizes, and the integrity check. INPUTS are files, folders or
    globs (- for stdin). A damaged file gives one line and a non-zero exit."""
    from .. import describe_file, expand_files, json_line, read_limited, summary_lines

    errors = user_errors()
    try:
        paths = expand_files(inputs)
    except errors as exc:
        failures = Failures(inputs)
        failures.add(inputs[0], exc)
        failures.finish()
        return
    failures = Failures(paths)
    for src in paths:
        try:
            data = read_limited(sys.stdin.buffer if src == "-" else src, src, cfg.MAX_FILE_BYTES)
            described = describe_file(data)
        except errors as exc:
            failures.add(src, exc)
            continue
        if as_json:
            click.echo(json_line({"input": src, **described}))
        else:
            click.echo("\n".join(summary_lines(src, described)))
    failures.finish()
