"""Reading a command's inputs (an image path or '-' for stdin), lossy conversions told on stderr;
and what travels with each picture (ICC, EXIF, XMP, alpha, grayness), put into its file."""

from __future__ import annotations

import sys

from .console import note

METADATA_CHOICES = ("all", "none", "icc", "exif", "xmp")


def read_input(path: str):
    """The RGB pixels of an input path or '-' (stdin); lossy conversions are noted on stderr."""
    from .. import read_image, read_limited

    notes: list[str] = []
    image = read_image(read_limited(sys.stdin.buffer, "stdin") if path == "-" else path, notes)
    for line in notes:
        note(line)
    return image


def parse_metadata(text: str) -> set[str]:
    """--metadata: all, none, or a comma list of icc, exif, xmp -> the set kept."""
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = names - set(METADATA_CHOICES)
    if not names or unknown or len(names) > 1 and names & {"all", "none"}:
        from .failures import UserError

        raise UserError(f"--metadata {text!r}: all, none, or a comma list of icc, exif, xmp")
    if "all" in names:
        return {"icc", "exif", "xmp"}
    return set() if "none" in names else names


class Pictures:
    """The reader ``encode`` gives the encoder: it reads each input's picture (pixels, metadata,
    alpha), hands the encoder its RGB pixels, and keeps the rest until ``finish`` puts it into
    that input's file (``keep``: the metadata kept; ``alpha``: whether alpha is)."""

    def __init__(self, keep: set[str], alpha: bool = True):
        self.keep, self.alpha, self.held = keep, alpha, {}

    def read(self, path: str):
        from .. import read_limited, read_picture

        notes: list[str] = []
        picture = read_picture(read_limited(sys.stdin.buffer, "stdin") if path == "-" else path, notes)
        for line in notes:
            note(line)
        self.held[path] = picture
        return picture.rgb

    def finish(self, path: str, data: bytes, record: dict | None = None) -> bytes:
        """``data`` (the encoder's file of ``path``) with the picture's metadata, alpha and colour;
        what was kept and dropped is said on stderr. ``record`` (the file's JSON record) gets
        ``psnr_srgb``, the PSNR as a colour-managed viewer shows it, for a picture with a profile."""
        picture = self.held.pop(path, None)
        if picture is None:
            return data
        if record is not None and picture.icc and "icc" in self.keep and "recon" in record:
            from .. import psnr_srgb

            record["psnr_srgb"] = psnr_srgb(picture.rgb, record.pop("recon"), picture.icc)
        elif record is not None:
            record.pop("recon", None)
        line = picture.kept_note(path, self.keep, self.alpha)
        if line:
            note(line)
        return picture.into_file(data, self.keep, self.alpha)

    def forget(self, path: str) -> None:
        self.held.pop(path, None)
