"""The speed paths: batched CLI encodes, the compile fallback, precision options, lean start-up."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sgacodec import refine as refine_module
from sgacodec.codec import decode, to_tensor
from sgacodec.hyperprior import LatentModel
from sgacodec.refine import RefineConfig, refine, true_rd

from .conftest import TINY_LMBDA, make_image

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=120)


def test_cli_import_and_help_load_neither_torch_nor_compressai():
    res = _python("import sgacodec, sgacodec.cli, sys; "
                  "bad = [m for m in ('torch', 'compressai', 'numpy') if m in sys.modules]; "
                  "assert not bad, bad")
    assert res.returncode == 0, res.stderr.decode()
    for args in (["--help"], ["encode", "--help"], ["decode", "--help"], ["encode"],
                 ["encode", "x.png", "--method", "bogus"]):
        res = _python("import sys; from sgacodec.cli import main\n"
                      f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
                      "assert 'torch' not in sys.modules and 'compressai' not in sys.modules")
        assert res.returncode == 0, (args, res.stderr.decode())


def test_cli_encode_batches_same_size_images_and_keeps_per_file_results(tmp_path, tiny_checkpoint):
    from sgacodec.cli import main

    sizes = [(48, 64), (64, 48), (48, 64), (48, 64)]
    paths = []
    for i, size in enumerate(sizes):
        paths.append(tmp_path / f"in{i}.png")
        Image.fromarray(make_image(*size, seed=20 + i)).save(paths[-1])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    inputs = [paths[0], paths[1], bad, paths[2], paths[3]]
    calls = []
    import sgacodec.codec as codec

    original = codec.encode

    def spy(model, images, *args, **kwargs):
        calls.append([im.shape[:2] for im in images])
        return original(model, images, *args, **kwargs)

    codec.encode = spy
    try:
        res = CliRunner().invoke(main, ["encode", *map(str, inputs), "-o", str(tmp_path / "coded"),
                                        "--checkpoint", str(tiny_checkpoint), "--iterations", "5",
                                        "--batch-size", "2", "--json"], catch_exceptions=False)
    finally:
        codec.encode = original
    assert res.exit_code == 1 and "bad.png" in res.stderr
    # three 48x64 images: one batch of two, one of one; the 64x48 one alone
    assert sorted(map(len, calls)) == [1, 1, 2]
    assert all(len(set(c)) == 1 for c in calls)
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [Path(r["input"]).name for r in records] == ["in0.png", "in1.png", "in2.png", "in3.png"]
    assert sorted(p.name for p in (tmp_path / "coded").iterdir()) == [f"in{i}.bin" for i in range(4)]
    from sgacodec.models import load_checkpoint

    model = load_checkpoint(tiny_checkpoint)
    for r in records:
        rgb, _ = decode(Path(r["output"]).read_bytes(), model)
        assert rgb.shape[:2] == (r["height"], r["width"])


def test_compile_failure_falls_back_to_eager_with_the_same_result(tiny_model, monkeypatch):
    """A torch.compile that breaks (no compiler, unsupported op) never breaks refinement."""

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no backend")
        return call

    image = to_tensor(make_image(64, 64, seed=30))
    lm = LatentModel(tiny_model.net)
    config = RefineConfig(method="ste", iterations=15)
    eager = refine(lm, image, (64, 64), TINY_LMBDA, config)
    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(refine_module, "_compile_failed", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = refine(lm, image, (64, 64), TINY_LMBDA, config.with_(compile="default"))
    assert any("torch.compile failed" in str(w.message) for w in caught)
    assert torch.equal(fallback.best.loss, eager.best.loss)
    assert torch.equal(fallback.y, eager.y)
    monkeypatch.setattr(refine_module, "_compile_failed", False)


def test_cpu_defaults_are_eager_and_unchanged(tiny_model):
    assert refine_module.compile_mode(RefineConfig(), torch.device("cpu")) is None
    assert refine_module.compile_mode(RefineConfig(), torch.device("cuda")) in ("default", None)
    with pytest.raises(ValueError):
        RefineConfig(compile="fastest")
    with pytest.raises(ValueError):
        RefineConfig(precision="fp8")


def test_bf16_relaxed_pass_and_sparse_evaluation_stay_never_worse(tiny_model):
    image = to_tensor(make_image(64, 64, seed=31))
    lm = LatentModel(tiny_model.net)
    for config in (RefineConfig(iterations=40, precision="bf16"), RefineConfig(iterations=40, eval_every=7)):
        result = refine(lm, image, (64, 64), TINY_LMBDA, config)
        assert result.best.loss.item() <= result.base.loss.item()
        again = true_rd(lm, image, (64, 64), result.y, result.z, TINY_LMBDA)
        assert again.loss.item() == pytest.approx(result.best.loss.item(), rel=1e-5)
        assert all(p.dtype == torch.float32 for p in tiny_model.net.parameters())


def test_a_batch_that_runs_out_of_device_memory_is_split():
    from sgacodec.cli import _encode_splitting

    seen = []

    def encode_part(part):
        seen.append(list(part))
        if len(part) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return [f"report {i}" for i in part]

    assert _encode_splitting(encode_part, [0, 1, 2, 3, 4]) == [f"report {i}" for i in range(5)]
    assert seen[0] == [0, 1, 2, 3, 4] and max(map(len, seen[1:])) <= 3


def test_sgacodec_compile_environment_override(monkeypatch):
    monkeypatch.setenv("SGACODEC_COMPILE", "off")
    assert refine_module.compile_mode(RefineConfig(), torch.device("cuda")) is None
    monkeypatch.setenv("SGACODEC_COMPILE", "bogus")
    with pytest.raises(ValueError):
        refine_module.compile_mode(RefineConfig(), torch.device("cpu"))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("compile_mode,precision", [("off", "fp32"), ("default", "tf32"), ("off", "bf16")])
def test_cuda_fast_paths_match_the_cpu_and_decode_exactly(tiny_model, compile_mode, precision):
    """channels_last, fused Adam, TF32 / bf16 and torch.compile on the GPU: same R-D as the CPU
    (to the float noise that flips a few rounding decisions), files that decode to the reported pixels."""
    import numpy as np

    from sgacodec.codec import encode

    images = [make_image(64, 96, seed=s) for s in (32, 33)]
    config = RefineConfig(method="ste", iterations=40, compile=compile_mode, precision=precision)
    cpu = encode(tiny_model, images, config, batch_size=2)
    gpu = encode(tiny_model, images, config, device="cuda", batch_size=2)
    for c, g in zip(cpu, gpu):
        assert g.loss == pytest.approx(c.loss, rel=0.03)
        assert g.loss <= g.base_loss * 1.02  # real bytes; "never worse" holds for the true loss
        rgb, _ = decode(g.data, tiny_model)
        assert np.array_equal(rgb, g.recon)
    assert all(p.device.type == "cpu" and p.is_contiguous() for p in tiny_model.net.parameters())


def test_eval_every_defaults_to_10_on_a_gpu_and_1_on_a_cpu():
    from sgacodec.cli import _eval_every

    assert _eval_every({"eval_every": None}, torch.device("cuda")) == 10
    assert _eval_every({"eval_every": None}, torch.device("cpu")) == 1
    assert _eval_every({"eval_every": 3}, torch.device("cuda")) == 3
