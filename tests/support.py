"""Helpers shared by the tests (the fixtures are in conftest.py): synthetic images, a tiny model
trained in seconds, the command line in and out of process, forged bitstreams. Not for scripts."""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY_LMBDA = 0.01


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB test image with a few edges: natural-image-like enough for a tiny codec."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 24), max(2, width // 24), generator=gen)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    edges = ((xx + 2 * yy) % 53 < 20).float() * 0.25
    img = (smooth + edges).clamp(0, 1)[0].permute(1, 2, 0)
    return (img * 255).round().to(torch.uint8).numpy()


def save_png(path, height: int, width: int, seed: int = 0) -> Path:
    from PIL import Image

    Image.fromarray(make_image(height, width, seed)).save(path)
    return Path(path)


def train_tiny(steps: int = 250, seed: int = 0):
    """A MeanScaleHyperprior(16, 24) trained briefly on synthetic 64x64 crops (a few seconds)."""
    from compressai.losses import RateDistortionLoss
    from compressai.models import MeanScaleHyperprior

    from sgacodec.config import TrainConfig
    from sgacodec.training.trainer import optimisers

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
            t, left = rng.integers(0, 33, size=2)
            batch.append(im[:, t : t + 64, left : left + 64])
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


def invoke(*args, input=None, catch_exceptions=True):
    """The command line in this process (click's runner): exit_code, output, stdout, stderr."""
    from click.testing import CliRunner

    from sgacodec.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=catch_exceptions)


def cli(*args, input=None):
    """``invoke`` that lets unexpected exceptions through (a test failure shows the traceback)."""
    return invoke(*args, input=input, catch_exceptions=False)


def run_entry_point(*args) -> int:
    """The console entry point in this process: the exit status a shell would see."""
    from sgacodec.cli import run

    with pytest.raises(SystemExit) as exit_info:
        run([str(a) for a in args])
    return exit_info.value.code


def run_process(*args, stdin=None, timeout=300) -> subprocess.CompletedProcess:
    """bin/sgacodec in a real process (one torch thread)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / "bin" / "sgacodec"), *map(str, args)],
                          capture_output=True, input=stdin, env=env, timeout=timeout)


def python(code: str, timeout=120) -> subprocess.CompletedProcess:
    """``python -c code`` with this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=timeout)


def leftovers(folder) -> list[str]:
    """Temporary files an atomic write left behind."""
    return sorted(p.name for p in Path(folder).rglob("*.part"))


def forged(data: bytes, **fields) -> bytes:
    """``data`` with header fields replaced and the CRC recomputed (so it passes the checksum),
    whether or not the new fields are in range (then packed without the writer's checks)."""
    from sgacodec.codec import container as B

    bs = dataclasses.replace(B.unpack(data), **fields)
    try:
        return B.pack(bs)
    except (B.BitstreamError, ValueError):
        return _pack_unchecked(bs)


def _pack_unchecked(bs) -> bytes:
    """A version 3 file of ``bs`` with any declared size (forged headers, decompression bombs)."""
    from sgacodec.codec import container as B

    name = bs.model.name.encode()
    head = (struct.pack(">BB", B.MODEL_KINDS.index(bs.model.kind), len(name)) + name
            + struct.pack(">BB", B.METRICS.index(bs.model.metric), bs.model.quality) + bs.model.weights_sha
            + struct.pack(">IIHB", bs.height, bs.width, bs.tile, int(bs.grayscale)) + bs.recon_hash)
    ystr = B.varint(len(bs.y_strings)) + b"".join(B.varint(len(s)) for s in bs.y_strings)
    body = b"".join((B.MAGIC, bytes([3]), B.chunk(b"HEAD", head), B.chunk(b"ZSTR", bs.z_string),
                     B.chunk(b"YSTR", ystr + b"".join(bs.y_strings))))
    return body + struct.pack(">I", zlib.crc32(body))


def saved(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand: any declared size (bombs) and 16-bit RGB, which Pillow cannot write."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def perturbed(model, where):
    """A copy of the model whose decoder side computes slightly differently."""
    import copy

    other = copy.copy(model)
    other.net = copy.deepcopy(model.net)
    with torch.no_grad():
        if where == "g_s":
            other.net.g_s[-1].bias += 0.02  # pixels move by about 5 levels
        else:  # the hyperprior's scales: other CDF indexes
            other.net.h_s[-1].bias.mul_(1.05).add_(0.05)
    return other


def load_script(relative: str, name: str | None = None):
    """A script or benchmark of the repository (e.g. 'scripts/ship.py') imported as a module, for
    tests of its functions; scripts never import the tests."""
    import importlib.util

    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
