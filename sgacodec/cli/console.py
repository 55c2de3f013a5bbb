"""What the commands print on stderr: the console, progress bars with an ETA, notes, the CPU time
estimate; and stdout kept for --json records."""

from __future__ import annotations

import contextlib
import sys

import click


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def progress_bar(console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def task_progress(progress):
    """A pipeline Progress callback over a rich Progress: one task per batch."""
    @contextlib.contextmanager
    def on_task(description: str, total: int):
        task = progress.add_task(description, total=total)
        try:
            yield lambda step: progress.update(task, completed=step)
        finally:
            progress.remove_task(task)

    return on_task


@contextlib.contextmanager
def records_on_stdout():
    """For the block, ``sys.stdout`` is stderr (what libraries print there goes to stderr: Ray's
    messages about its workers, among them), and the function yielded writes a line on the real
    stdout: --json records stay alone on it."""
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield lambda line: click.echo(line, file=out)


def note(text: str) -> None:
    click.echo(f"sgacodec: note: {text}", err=True)


def announce_cpu_estimate(console, refinements: int, counts, estimate,
                          shorten: str = "--iterations N or --time-budget SECONDS") -> None:
    """Before refining on a CPU: how long it will roughly take and how to shorten it (``shorten``).

    ``counts``: the iteration counts run; ``estimate()``: (total seconds, seconds per iteration),
    or None when no estimate can be made (a failing estimate is no estimate).
    """
    text = ""
    try:
        timing = estimate()
    except Exception:  # only an estimate; the real run reports real errors
        timing = None
    if timing is not None:
        total, per_iteration = timing
        text = (f", roughly {total / 60:.0f} min in all" if total >= 90 else
                f", roughly {total:.0f} s in all") + f" ({per_iteration:.2f} s per iteration)"
    counts = " / ".join(str(i) for i in sorted(set(counts)))
    console.print(f"Refining on the CPU: {refinements} refinement(s) of {counts} iterations{text}. "
                  f"Shorten with {shorten}; a GPU (--device cuda) is far faster.", style="yellow",
                  soft_wrap=True, highlight=False)
