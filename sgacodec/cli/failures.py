"""Failures as the commands report them: one line each, a non-zero exit, the other inputs carried on."""

from __future__ import annotations

import click

from .. import config as cfg


class UserError(click.ClickException):
    """One line for the user, exit status 1."""

    def show(self, file=None):
        click.echo(f"sgacodec: error: {self.message}", err=True)


def known_errors() -> tuple:
    """The errors written for people: sgacodec's own, the operating system's, usage errors."""
    from .. import SgacodecError

    return (SgacodecError, OSError, UserError)


def user_errors() -> tuple:
    """What one input may fail with while the others carry on: the known errors, and (unless
    SGACODEC_DEBUG is set) anything else, reported with its type."""
    return known_errors() if cfg.environ("SGACODEC_DEBUG") else known_errors() + (Exception,)


def first_line(exc: BaseException) -> str:
    """One line for an input's failure: the message of an expected error, else its type too."""
    from .. import one_line

    return one_line(exc, limit=None, typed=not isinstance(exc, known_errors()))


class Failures:
    """The inputs that failed: with several inputs, each is said at once and all again at the end."""

    def __init__(self, inputs):
        self.inputs, self.messages = list(inputs), []

    def add(self, src, exc: BaseException) -> None:
        text = first_line(exc)
        message = text if str(src) in text else f"{src}: {text}"
        self.messages.append(message)
        if len(self.inputs) > 1:
            click.echo(f"sgacodec: error: {message}", err=True)

    def finish(self) -> None:
        """One input: its error. Several: every failure listed again, exit status 1."""
        if len(self.messages) == 1 and len(self.inputs) == 1:
            raise UserError(self.messages[0])
        if self.messages:
            click.echo(f"sgacodec: error: {len(self.messages)} of {len(self.inputs)} inputs failed:", err=True)
            for message in self.messages:
                click.echo(f"  {message}", err=True)
            raise click.exceptions.Exit(1)
