"""The errors sgacodec reports to its users: each message is one line meant for a person.

Every class derives from ``SgacodecError``, so a caller (the command line among them) can tell an
expected failure (bad input, missing model, unwritable output) from a bug.
"""

from __future__ import annotations


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
