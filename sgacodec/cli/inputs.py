"""Reading a command's inputs: an image path or '-' (stdin), lossy conversions told on stderr."""

from __future__ import annotations

import sys

from .console import note


def read_input(path: str):
    """The pixels of an input path or '-' (stdin); lossy conversions are noted on stderr."""
    from .. import read_image, read_limited

    notes: list[str] = []
    image = read_image(read_limited(sys.stdin.buffer, "stdin") if path == "-" else path, notes)
    for line in notes:
        note(line)
    return image
