"""Fixtures: a tiny trained model and its checkpoint, test images, and the suite-wide check that
every file any test encodes decodes to the pixels its encoder reported. Helpers: support.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from .support import TINY_LMBDA, save_png, train_tiny

# One thread: the models are tiny, and on a shared 2-core machine OpenMP's spinning threads
# oversubscribe the cores (measured: 170 s instead of 20 s for tests/test_codec.py).
torch.set_num_threads(int(os.environ.get("SGACODEC_TEST_THREADS", "1")))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # for the CLI subprocesses


@pytest.fixture(scope="session", autouse=True)
def own_cache_folder(tmp_path_factory):
    """The suite's cache folder (coder tables, cache.py): a temporary one, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of a torch checkpoint {"state_dict", "lmbda"} of the tiny trained model."""
    path = tmp_path_factory.mktemp("models") / "tiny.pth.tar"
    torch.save({"state_dict": train_tiny().state_dict(), "lmbda": TINY_LMBDA}, path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from sgacodec.models.checkpoints import load_checkpoint

    return load_checkpoint(tiny_checkpoint)


@pytest.fixture
def png_333x217(tmp_path):
    return save_png(tmp_path / "img.png", 217, 333, seed=7)


@pytest.fixture
def image_dir(tmp_path):
    """A folder of two 64x80 images and a text file."""
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        save_png(d / f"im{i}.png", 64, 80, seed=i)
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture
def png(tmp_path):
    return save_png(tmp_path / "small.png", 40, 56, seed=2)


@pytest.fixture(autouse=True)
def every_encode_round_trips(monkeypatch, request):
    """Every file any test encodes is decoded (stock decoder, hash check) and compared with the
    pixels the encoder reported: the suite-wide form of 'every file sgacodec writes decodes'."""
    if "no_round_trip_check" in request.keywords:
        yield
        return
    from sgacodec.codec import decoder
    from sgacodec.codec import encoder as codec

    real = codec.code_latents
    checked = []

    def checking(model, y, z, size, **kwargs):
        coded = real(model, y, z, size, **kwargs)
        for data, rgb in coded:
            decoded = decoder.decode(data, model, strict=True)
            assert np.array_equal(decoded.rgb, rgb), "an encoded file does not decode to the reported pixels"
            checked.append(len(data))
        return coded

    monkeypatch.setattr(codec, "code_latents", checking)
    yield checked


@pytest.fixture(scope="session")
def coded(tiny_model):
    """A small file of the tiny model (70x100, STE, 3 iterations) and its report."""
    from sgacodec.codec.batching import encode
    from sgacodec.config import RefineConfig

    from .support import make_image

    [report] = encode(tiny_model, [make_image(70, 100, seed=3)], RefineConfig(method="ste", iterations=3))
    return report
