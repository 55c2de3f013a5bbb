"""``sgacodec train``: train a MeanScaleHyperprior on a folder of images (the embedded models).

Under ``torchrun --nproc_per_node N -m sgacodec train ...`` each process runs this command; rank 0
alone prints, validates, saves and exports (distributed.py).
"""

from __future__ import annotations

import time

import click

from .. import config as cfg
from .console import progress_bar, stderr_console

T = cfg.TrainConfig()


@click.command(name="train", hidden=True)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoint", "ckpt", required=True, type=click.Path(dir_okay=False),
              help="Training checkpoint: resumed when it exists, written at the end.")
@click.option("--lmbda", type=float, default=T.lmbda, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=T.steps, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=T.batch_size, show_default=True)
@click.option("--crop", type=click.IntRange(min=64), default=T.crop, show_default=True,
              help="Square crop side; a multiple of 64.")
@click.option("--lr", type=float, default=T.lr, show_default=True)
@click.option("--decay-at", type=float, default=T.decay_at, show_default=True,
              help="lr / 10 after this fraction.")
@click.option("-N", "n_channels", type=int, default=T.N, show_default=True)
@click.option("-M", "m_channels", type=int, default=T.M, show_default=True)
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Held-out folder validated every --val-every steps (never the test set).")
@click.option("--val-every", type=click.IntRange(min=1), default=T.val_every, show_default=True)
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Warm start from another model's weights (ignored when resuming).")
@click.option("--time-limit", type=float, default=None, help="Stop (and checkpoint) after SECONDS.")
@click.option("--budget", type=float, default=None,
              help="A complete run of SECONDS of wall clock: lr / 10 after --decay-at of it, then the "
                   "quantile fit and --export as after the last step.")
@click.option("--save-every", type=float, default=T.save_every, show_default=True,
              help="Seconds between intermediate checkpoints.")
@click.option("--amp", type=click.Choice(["off", "bf16"]), default=T.amp, show_default=True,
              help="bf16 autocast of the transforms only; entropy models stay float32.")
@click.option("--compile", "compile_mode", type=click.Choice(cfg.TRAIN_COMPILE_MODES), default=T.compile,
              show_default=True, help="torch.compile the forward pass and the loss.")
@click.option("--channels-last/--no-channels-last", default=T.channels_last, show_default=True,
              help="The network and the crops in channels_last memory layout.")
@click.option("--pool", type=click.Choice(cfg.TRAIN_POOLS), default=T.pool, show_default=True,
              help="Keep the decoded training images on the training device (device) or the host.")
@click.option("--lr-scaling", type=click.Choice(list(cfg.LR_SCALINGS)), default=T.lr_scaling, show_default=True,
              help="Scale --lr with --batch-size / 16: none, sqrt or linear.")
@click.option("--log-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Steps between log lines when stderr is not a terminal.")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=T.seed, show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False), default=None,
              help="When training is complete, also write fp16 safetensors weights here.")
def train(data_dir, ckpt, lmbda, steps, batch_size, crop, lr, decay_at, n_channels, m_channels,
          val_dir, val_every, init_from, time_limit, budget, save_every, amp, compile_mode, channels_last,
          pool, lr_scaling, log_every, device, seed, threads, export_path):
    """Train a MeanScaleHyperprior on a folder of images (for the embedded models)."""
    import torch

    from .. import joined, resolve_device

    if crop % 64:
        raise click.BadParameter("must be a multiple of 64", param_hint="--crop")
    if threads:
        torch.set_num_threads(threads)
    config = cfg.TrainConfig(lmbda=lmbda, N=n_channels, M=m_channels, steps=steps, batch_size=batch_size,
                         crop=crop, lr=lr, decay_at=decay_at, seed=seed, val_every=val_every,
                         save_every=save_every, amp=amp, compile=compile_mode, channels_last=channels_last,
                         pool=pool, lr_scaling=lr_scaling)
    with joined(resolve_device(device)) as group:
        if batch_size % group.world:
            raise click.BadParameter(f"must be a multiple of the {group.world} processes", param_hint="--batch-size")
        run(config, data_dir, ckpt, val_dir, resolve_device(device), time_limit, budget, init_from, log_every,
            export_path, group)


def run(config, data_dir, ckpt, val_dir, device, time_limit, budget, init_from, log_every, export_path, group):
    from .. import export_weights
    from .. import train as run_training

    steps = config.steps
    console = stderr_console()
    console.soft_wrap = True  # log lines whole, whatever the width (logs of GPU runs are read later)
    if not group.is_main:  # rank 0 speaks for all processes
        console.quiet = True
    begin = time.monotonic()
    first = []
    with progress_bar(console) as progress:
        task = progress.add_task("train", total=steps)

        def on_progress(step, stats):
            text = (f"loss {stats['loss']:.3f} bpp {stats['bpp']:.3f} psnr {stats['psnr']:.2f} "
                    f"aux {stats['aux']:.1f}")
            progress.update(task, completed=step, description=f"train {text}")
            if not first:
                first.append((step, time.monotonic()))
            if not console.is_terminal and step % log_every == 0:
                s0, t0 = first[0]
                rate = (step - s0) / max(time.monotonic() - t0, 1e-9)
                speed = f" ({rate:.2f} steps/s, {rate * config.batch_size:.0f} images/s)" if step > s0 else ""
                console.print(f"step {step}/{steps} {text}{speed}", highlight=False)

        result = run_training(config, data_dir, ckpt, val_dir, device, time_limit, init_from, on_progress,
                              log=console.print, budget=budget, group=group)
    console.print(f"stopped at step {result['step']} of {steps} after {time.monotonic() - begin:.0f} s"
                  + (f" on {group.world} processes" if group.distributed else "")
                  + (" (complete)" if result["done"] else ""))
    if result["done"] and export_path and group.is_main:
        digest = export_weights(ckpt, export_path)
        console.print(f"exported {export_path} (sha256 {digest})")
