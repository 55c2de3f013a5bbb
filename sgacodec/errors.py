"""The errors sgacodec reports to its users: each message is one line meant for a person.

Every class derives from ``SgacodecError``, so a caller (the command line among them) can tell an
expected failure (bad input, missing model, unwritable output) from a bug.
"""

from __future__ import annotations

import re


class SgacodecError(Exception):
    """Base class: an expected failure with a one-line message."""


class BitstreamError(SgacodecError, ValueError):
    """The bytes are not a valid sgacodec file (truncated, corrupted or foreign)."""


class DecodeError(SgacodecError, RuntimeError):
    """A file that parses but does not decode to what its encoder computed."""


class ModelError(SgacodecError, RuntimeError):
    """A model cannot be loaded or used as asked."""


class ImageError(SgacodecError, ValueError):
    """An input that is not a usable image."""


class OutputError(SgacodecError, ValueError):
    """An output that cannot or must not be written."""


class EncodeError(SgacodecError, RuntimeError):
    """Latents that cannot be entropy-coded (non-finite or out of range), or a coding step that
    failed or ran past its time limit."""


class ResourceError(SgacodecError, RuntimeError):
    """Work that needs more memory than this machine (or SGACODEC_MEMORY_LIMIT) allows."""


class EvaluationError(SgacodecError, ValueError):
    """A bad evaluation request (no inputs, unknown codec, ...)."""


class DeviceError(SgacodecError, ValueError):
    """A device that does not exist or is not available (--device)."""


def one_line(exc: BaseException, limit: int | None = 300, typed: bool = True) -> str:
    """An exception as one line for a person: its message's first line, cut at ``limit``
    characters (None: whole); prefixed with its type when ``typed`` and it is not an
    SgacodecError (whose messages are written for people), or when the message is empty."""
    text = str(exc).strip()
    text = text.splitlines()[0][:limit] if text else ""
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if typed and not isinstance(exc, SgacodecError) else text


def first_sentence(text, limit: int = 200) -> str:
    """The first sentence of an error message, on one line, never cut inside a word."""
    text = " ".join(str(text).split())
    match = re.match(r"(.+?[.:;])(\s|$)", text)
    sentence = match.group(1).rstrip(".:;") if match else text
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0] + " ..."
    return sentence
