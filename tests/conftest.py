"""Shared fixtures: synthetic images and a tiny MeanScaleHyperprior trained in seconds."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

TINY_LMBDA = 0.01

# One thread: the models are tiny, and on a shared 2-core machine OpenMP's spinning threads
# oversubscribe the cores (measured: 170 s instead of 20 s for tests/test_codec.py).
torch.set_num_threads(int(os.environ.get("SGACODEC_TEST_THREADS", "1")))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # for the CLI subprocesses


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB test image with a few edges: natural-image-like enough for a tiny codec."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 24), max(2, width // 24), generator=gen)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    edges = ((xx + 2 * yy) % 53 < 20).float() * 0.25
    img = (smooth + edges).clamp(0, 1)[0].permute(1, 2, 0)
    return (img * 255).round().to(torch.uint8).numpy()


def train_tiny(steps: int = 250, seed: int = 0):
    """A MeanScaleHyperprior(16, 24) trained briefly on synthetic 64x64 crops (a few seconds)."""
    from compressai.losses import RateDistortionLoss
    from compressai.models import MeanScaleHyperprior

    from sgacodec.train import TrainConfig, optimisers

    torch.manual_seed(seed)
    net = MeanScaleHyperprior(16, 24)
    opt, aux_opt = optimisers(net, TrainConfig(lr=2e-3, aux_lr=1e-2))
    criterion = RateDistortionLoss(lmbda=TINY_LMBDA)
    pool = [torch.from_numpy(make_image(96, 96, s)).permute(2, 0, 1).float() / 255 for s in range(16)]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = []
        for _ in range(8):
            im = pool[rng.integers(len(pool))]
            t, l = rng.integers(0, 33, size=2)
            batch.append(im[:, t : t + 64, l : l + 64])
        x = torch.stack(batch)
        opt.zero_grad()
        aux_opt.zero_grad()
        loss = criterion(net(x), x)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        net.aux_loss().backward()
        aux_opt.step()
    net.update(force=True)
    return net.eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of a torch checkpoint {"state_dict", "lmbda"} of the tiny trained model."""
    path = tmp_path_factory.mktemp("models") / "tiny.pth.tar"
    torch.save({"state_dict": train_tiny().state_dict(), "lmbda": TINY_LMBDA}, path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from sgacodec.models import load_checkpoint

    return load_checkpoint(tiny_checkpoint)


@pytest.fixture
def png_333x217(tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray(make_image(217, 333, seed=7)).save(path)
    return path


@pytest.fixture(autouse=True)
def every_encode_round_trips(monkeypatch, request):
    """Every file any test encodes is decoded (stock decoder, hash check) and compared with the
    pixels the encoder reported: the suite-wide form of 'every file sgacodec writes decodes'."""
    if "no_round_trip_check" in request.keywords:
        yield
        return
    from sgacodec import codec

    real = codec.code_latents
    checked = []

    def checking(model, y, z, size, **kwargs):
        coded = real(model, y, z, size, **kwargs)
        for data, rgb in coded:
            decoded, _ = codec.decode(data, model, strict=True)
            assert np.array_equal(decoded, rgb), "an encoded file does not decode to the reported pixels"
            checked.append(len(data))
        return coded

    monkeypatch.setattr(codec, "code_latents", checking)
    yield checked
