"""--ray, --workers and --worker-cpus: encoding or evaluating on a Ray cluster (docs/scaling.md)."""

from __future__ import annotations

import click

from .. import config as cfg
from .failures import UserError


def check_address(ctx, param, value):
    """--ray's value: '' (no address) or an address; a path taken for one is a usage error."""
    if value:
        from .. import SgacodecError  # no torch, no Ray
        from .. import check_ray_address as check

        try:
            check(value)
        except SgacodecError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def ray_options(f):
    """Decorator: --ray [ADDRESS], --workers, --worker-cpus (sgacodec.cluster)."""
    for option in reversed([
        click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
                     callback=check_address,
                     help="Run on a Ray cluster: ADDRESS (HOST:PORT, ray://HOST:PORT, auto), else $RAY_ADDRESS, "
                          "else a local Ray for this run; one worker per GPU (CPU workers without GPUs). "
                          "Existing outputs are skipped (resume). Put it after the inputs, or write "
                          "--ray=ADDRESS. Needs pip install 'sgacodec[ray]'."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="With --ray: how many workers [default: one per GPU of the cluster; without GPUs, "
                          f"one per {cfg.RAY_CPU_WORKER_CPUS} CPU(s)]."),
        click.option("--worker-cpus", type=click.IntRange(min=1), default=None,
                     help="With --ray: CPUs (torch threads) each worker reserves [default: "
                          f"{cfg.RAY_CPU_WORKER_CPUS} without GPUs; the CPUs shared evenly among GPU workers]."),
    ]):
        f = option(f)
    return f


def ray_requested(address, workers, worker_cpus) -> bool:
    """Whether --ray was given (its address is checked as it is parsed); --workers or --worker-cpus
    without it, and --ray where Ray is not installed, are errors."""
    if address is None:
        if workers or worker_cpus:
            raise UserError("--workers and --worker-cpus go with --ray")
        return False
    from .. import SgacodecError, require_ray

    try:
        require_ray()
    except SgacodecError as exc:
        raise UserError(str(exc)) from None
    return True
