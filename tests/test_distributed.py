"""Training under torchrun (sgacodec/distributed.py): two gloo processes on the CPU give the same
weights as one process with the same global batch, and ``torchrun -m sgacodec train`` trains,
exports on rank 0 and resumes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from .support import ROOT, make_image

TINY = dict(N=8, M=12, crop=64, lr=1e-3, lmbda=0.01, quantile_steps=200, report_every=1)


def hashed_noise(self, inputs, mode, means=None):
    """EntropyModel.quantize with the training noise a smooth fixed function of each value instead
    of a random draw: each image then gets the same noise whichever process holds it, so one
    process and two can be compared value for value (the real noise is random per process).
    Smooth, so that float rounding differences between batch sizes stay rounding differences."""
    if mode != "noise":
        return REAL_QUANTIZE(self, inputs, mode, means)
    with torch.no_grad():
        noise = 0.4 * torch.sin(7.0 * inputs)
    return inputs + noise


def patch_noise():
    from compressai.entropy_models import EntropyModel

    EntropyModel.quantize = hashed_noise


def _real_quantize():
    from compressai.entropy_models import EntropyModel

    return EntropyModel.quantize


REAL_QUANTIZE = _real_quantize()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("ddp")
    for s in range(4):
        Image.fromarray(make_image(80, 96, seed=s)).save(root / f"{s}.png")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, world, port, config, data, checkpoint):
    """One torchrun-like process: its environment, the patched noise, then train()."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    patch_noise()
    from sgacodec.training.distributed import joined
    from sgacodec.training.trainer import train

    with joined("cpu") as group:
        assert group.world == world and group.rank == rank
        train(config, data, checkpoint, device="cpu", group=group, log=lambda s: None)


def weights(path) -> dict:
    state = torch.load(path, weights_only=True)
    return {k: v for k, v in state["state_dict"].items() if v.is_floating_point() and v.numel()}


@pytest.mark.slow
def test_two_gloo_ranks_train_as_one_process_with_the_same_global_batch(data, tmp_path, monkeypatch):
    import torch.multiprocessing as mp

    from sgacodec.config import TrainConfig
    from sgacodec.training.trainer import train

    config = TrainConfig(steps=3, batch_size=4, **TINY)
    mp.spawn(rank_main, args=(2, free_port(), config, data, tmp_path / "ddp.pt"), nprocs=2)

    monkeypatch.setattr("compressai.entropy_models.EntropyModel.quantize", hashed_noise)
    train(config, data, tmp_path / "one.pt", log=lambda s: None)
    half = TrainConfig(steps=3, batch_size=2, **TINY)  # what one rank alone would have trained on
    train(half, data, tmp_path / "half.pt", log=lambda s: None)

    ddp, one, alone = weights(tmp_path / "ddp.pt"), weights(tmp_path / "one.pt"), weights(tmp_path / "half.pt")
    assert ddp.keys() == one.keys()
    for key in one:
        assert torch.allclose(ddp[key], one[key], rtol=1e-4, atol=1e-5), key
    assert torch.load(tmp_path / "ddp.pt", weights_only=True)["step"] == 3
    moved = max(float((one[k] - alone[k]).abs().max()) for k in one if not k.endswith("quantiles"))
    assert moved > 1e-4  # the comparison can tell batches apart: half the batch trains otherwise


@pytest.mark.slow
def test_torchrun_trains_exports_on_rank_zero_and_resumes(data, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    ckpt, out = tmp_path / "run.pt", tmp_path / "w.safetensors"

    def torchrun(steps):
        args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "sgacodec", "train", str(data), "--checkpoint", str(ckpt), "--steps", str(steps),
                "-N", "8", "-M", "12", "--batch-size", "4", "--crop", "64", "--device", "cpu",
                "--val", str(data), "--val-every", "2", "--log-every", "1", "--export", str(out)]
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)

    first = torchrun(2)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stderr.count("stopped at step 2 of 2") == 1  # rank 0 alone speaks
    assert "on 2 processes (complete)" in first.stderr and "val bpp" in first.stderr and out.is_file()
    second = torchrun(4)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed {ckpt} at step 2" in second.stderr
    assert torch.load(ckpt, weights_only=True)["step"] == 4

    from sgacodec.models.checkpoints import load_checkpoint

    assert np.isfinite(load_checkpoint(out).lmbda)
