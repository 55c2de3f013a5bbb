"""The ``sgacodec`` command line: one module per command over the library API.

Commands parse options, call the library and print; heavy imports (torch, CompressAI) happen
inside the commands, so ``--help`` and usage errors return at once. Human output and progress go
to stderr; ``--json`` records go to stdout.
"""

from __future__ import annotations

import os
import sys

import click

from .. import __version__
from .. import config as cfg
from .decode import decode
from .encode import encode
from .info import info
from .models import models
from .refine import refine
from .train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sgacodec")
def main():
    """Learned image compression with SGA+ latent refinement at encode time.

    encode refines each image's latents and writes a bitstream that the model's stock CompressAI
    decoder reads; decode writes PNG; refine compares methods without writing files; info
    describes files without decoding them; models lists the models and what each gives.
    """


for command in (encode, decode, refine, info, models, train):
    main.add_command(command)

def run(argv=None):
    """Console entry point: one clear line and a non-zero exit for anything unexpected; exit 130
    on Ctrl-C and 143 on SIGTERM, after the temporary output files are removed.

    On the way out every object still alive is frozen (``gc.freeze``): the interpreter's last
    garbage collection would otherwise traverse all that torch and CompressAI created, about
    0.5 s of CPU per process here (docs/performance.md), to free memory the process is about to
    return anyway. Finalization is otherwise as usual: atexit handlers, files flushed and closed."""
    try:
        _run(argv)
    finally:
        import gc

        gc.freeze()


def _run(argv):
    import signal


    def terminated(signum, frame):
        raise SystemExit(128 + signum)  # unwinds like an exception: atomic writes clean up

    try:
        signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread
        pass
    try:
        code = main.main(args=argv, prog_name="sgacodec", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("sgacodec: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except BrokenPipeError:  # stdout closed early (| head): nothing more to say on it
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        click.echo("sgacodec: error: output pipe closed", err=True)
        sys.exit(1)
    except ModuleNotFoundError as exc:
        if cfg.environ("SGACODEC_DEBUG"):
            raise
        click.echo(f"sgacodec: error: {exc} in this Python ({sys.executable}); run ./scripts/setup "
                   "and use .venv/bin/sgacodec, or pip install sgacodec", err=True)
        sys.exit(1)
    except Exception as exc:  # last resort: never a traceback for the user
        if cfg.environ("SGACODEC_DEBUG"):
            raise
        from .. import one_line

        click.echo(f"sgacodec: error: {one_line(exc, limit=None, typed=True)} (SGACODEC_DEBUG=1 shows the "
                   "traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
