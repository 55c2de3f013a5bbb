"""The trainer: resume, validation, update() before the final save, and export to safetensors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image with stripes (self-contained: no shared fixtures needed)."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 24), max(2, width // 24), generator=gen)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    img = (smooth + ((xx + 2 * yy) % 53 < 20).float() * 0.25).clamp(0, 1)[0].permute(1, 2, 0)
    return (img * 255).round().to(torch.uint8).numpy()


TINY = dict(N=8, M=12, batch_size=2, crop=64, lr=1e-3, val_every=2, lmbda=0.01, quantile_steps=300)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("data")
    (root / "train" / "sub").mkdir(parents=True)
    (root / "val").mkdir()
    for s in range(4):  # nested folders are searched too
        Image.fromarray(make_image(80, 96, seed=s)).save(root / "train" / ("sub" if s % 2 else "") / f"{s}.png")
    Image.fromarray(make_image(70, 90, seed=9)).save(root / "val" / "v.png")
    Image.fromarray(make_image(40, 40, seed=10)).save(root / "train" / "too_small.png")
    return root / "train", root / "val"


def test_learning_rate_decays_late():
    from sgacodec.config import TrainConfig
    from sgacodec.training.trainer import learning_rate

    config = TrainConfig(lr=1e-3, steps=100, decay_at=0.8)
    assert learning_rate(79, config) == 1e-3
    assert learning_rate(80, config) == pytest.approx(1e-4)
    assert learning_rate(0, config, decayed=True) == pytest.approx(1e-4)  # a budget's decay point passed


def test_learning_rate_scales_with_the_batch():
    from sgacodec.config import TrainConfig
    from sgacodec.training.trainer import learning_rate

    assert learning_rate(0, TrainConfig(lr=1e-4, batch_size=64)) == 1e-4  # lr_scaling none: as given
    assert learning_rate(0, TrainConfig(lr=1e-4, batch_size=64, lr_scaling="sqrt")) == pytest.approx(2e-4)
    assert learning_rate(0, TrainConfig(lr=1e-4, batch_size=64, lr_scaling="linear")) == pytest.approx(4e-4)


def test_train_resume_validate_update_export(folders, tmp_path):
    from sgacodec.codec.batching import encode
    from sgacodec.codec.decoder import decode
    from sgacodec.config import RefineConfig, TrainConfig
    from sgacodec.models.checkpoints import load_checkpoint
    from sgacodec.training.trainer import export_weights, train

    data, val = folders
    ckpt = tmp_path / "run.pt"
    logs = []
    progress = []
    # a first chunk that stops at its time limit (0 s: exactly one step is never guaranteed, so
    # run a short config to completion on one call and a longer one resumed on a second)
    first = train(TrainConfig(steps=3, report_every=1, **TINY), data, ckpt, val, time_limit=None,
                  on_progress=lambda s, st: progress.append((s, st)), log=logs.append)
    assert first["step"] == 3 and first["done"]
    assert first["val"] is not None and np.isfinite(first["val"]["psnr"]) and first["val"]["bpp"] > 0
    assert any("val bpp" in line for line in logs)
    assert [s for s, _ in progress] == [1, 2, 3]
    assert {"loss", "bpp", "psnr", "aux"} <= set(progress[0][1])
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 3 and state["done"]
    assert state["aux_loss"] < 300  # quantiles fitted before update() (a fresh model: ~329)
    assert state["state_dict"]["gaussian_conditional._quantized_cdf"].numel() > 0  # update()d

    # resume with more steps: continues from the saved step, not from zero
    progress.clear()
    second = train(TrainConfig(steps=5, report_every=1, **TINY), data, ckpt, val, log=logs.append,
                   on_progress=lambda s, st: progress.append((s, st)))
    assert [s for s, _ in progress] == [4, 5]
    assert any("resumed" in line and "step 3" in line for line in logs)
    assert second["step"] == 5 and second["done"]

    # a time limit stops early and leaves a resumable, not-done checkpoint
    third = train(TrainConfig(steps=1000, **TINY), data, ckpt, None, time_limit=0.0, log=logs.append)
    assert not third["done"] and third["step"] == 5
    assert torch.load(ckpt, weights_only=True)["done"] is False

    # export: fp16 transforms, float32 entropy models, loadable and coding an image
    out = tmp_path / "tiny.safetensors"
    digest = export_weights(ckpt, out, metadata={"note": "test"})
    import hashlib

    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()
    from safetensors.torch import load_file, safe_open

    tensors = load_file(str(out))
    assert tensors["g_a.0.weight"].dtype == torch.float16
    assert tensors["gaussian_conditional.scale_table"].dtype == torch.float32
    assert tensors["entropy_bottleneck.quantiles"].dtype == torch.float32
    assert tensors["gaussian_conditional._quantized_cdf"].numel() == 0  # rebuilt at load
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["lmbda"] == "0.01" and meta["step"] == "5" and meta["note"] == "test"

    model = load_checkpoint(out)
    assert model.lmbda == pytest.approx(0.01) and model.identity.name == "mbt2018-mean"
    image = make_image(48, 72, seed=5)
    report = encode(model, [image], RefineConfig(method="none"))[0]
    rgb, _, _ = decode(report.data, model)
    assert np.array_equal(rgb, report.recon)
    assert report.bpp == pytest.approx(len(report.data) * 8 / (48 * 72))


def test_init_from_warm_starts_a_new_run(folders, tmp_path):
    from sgacodec.config import TrainConfig
    from sgacodec.training.trainer import export_weights, train

    data, _ = folders
    base = tmp_path / "base.pt"
    train(TrainConfig(steps=2, **TINY), data, base, log=lambda s: None)
    weights = tmp_path / "base.safetensors"
    export_weights(base, weights, fp16=False)
    logs = []
    result = train(TrainConfig(steps=1, **{**TINY, "lr": 1e-12}), data, tmp_path / "warm.pt",
                   init_from=weights, log=logs.append)
    assert result["done"] and any("initialised from" in line for line in logs)
    a = torch.load(base, weights_only=True)["state_dict"]["g_s.0.weight"]
    b = torch.load(tmp_path / "warm.pt", weights_only=True)["state_dict"]["g_s.0.weight"]
    assert torch.allclose(a, b, atol=1e-6)


def test_fit_quantiles_converges_without_data():
    from compressai.models import MeanScaleHyperprior

    from sgacodec.training.trainer import fit_quantiles

    torch.manual_seed(0)
    net = MeanScaleHyperprior(8, 12)
    before = float(net.aux_loss())
    after = fit_quantiles(net, 3000)
    assert before > 100 and after < 0.05 * before


def test_bf16_forward_keeps_entropy_models_in_float32():
    from compressai.models import MeanScaleHyperprior

    from sgacodec.training.trainer import forward

    torch.manual_seed(0)
    net = MeanScaleHyperprior(8, 12).train()
    x = torch.rand(2, 3, 64, 64)
    out = forward(net, x, "bf16")
    assert out["x_hat"].dtype == torch.float32
    assert all(likelihood.dtype == torch.float32 for likelihood in out["likelihoods"].values())
    with torch.no_grad():
        net.eval()
        ref, amp = net(x), forward(net, x, "bf16")
    assert torch.allclose(ref["x_hat"], amp["x_hat"], atol=0.05)
    with pytest.raises(ValueError):
        forward(net, x, "fp8")


def test_training_forward_draws_what_compressai_draws():
    """The EntropyBottleneck without device synchronisations: CompressAI's values, same seed."""
    from compressai.models import MeanScaleHyperprior

    from sgacodec.training.trainer import forward

    torch.manual_seed(0)
    net = MeanScaleHyperprior(8, 12).train()
    x = torch.rand(2, 3, 64, 128)
    torch.manual_seed(1)
    ref = net(x)
    torch.manual_seed(1)
    out = forward(net, x)
    assert torch.equal(ref["x_hat"], out["x_hat"])
    for key in ("y", "z"):
        assert torch.equal(ref["likelihoods"][key], out["likelihoods"][key])


SPEED_OPTIONS = {"channels_last": {"channels_last": True}, "pool on the device": {"pool": "device"},
                 "bf16": {"amp": "bf16"}, "batch 4, lr scaled": {"batch_size": 4, "lr_scaling": "sqrt"},
                 "all at once": {"channels_last": True, "pool": "device", "amp": "bf16"}}


@pytest.mark.parametrize("options", SPEED_OPTIONS.values(), ids=SPEED_OPTIONS.keys())
def test_speed_options_train_with_finite_losses(options, folders, tmp_path):
    from sgacodec.config import TrainConfig
    from sgacodec.models.checkpoints import load_checkpoint
    from sgacodec.training.trainer import export_weights, train

    data, _ = folders
    seen = []
    config = TrainConfig(steps=3, report_every=1, **{**TINY, **options})
    result = train(config, data, tmp_path / "run.pt", log=lambda s: None, on_progress=lambda s, st: seen.append(st))
    assert result["done"] and len(seen) == 3
    assert all(np.isfinite(v) for st in seen for v in st.values())
    export_weights(tmp_path / "run.pt", tmp_path / "w.safetensors")  # channels_last weights export as usual
    assert load_checkpoint(tmp_path / "w.safetensors").lmbda == pytest.approx(TINY["lmbda"])


@pytest.mark.slow
def test_compiled_training_step_runs_with_finite_losses(folders, tmp_path, monkeypatch):
    """--compile: the training step through torch.compile (graph capture and AOT autograd; the
    aot_eager backend keeps this a CPU test of seconds, where Inductor's C++ build takes minutes)."""
    import functools

    from sgacodec.config import TrainConfig
    from sgacodec.training.trainer import train

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    data, _ = folders
    seen = []
    config = TrainConfig(steps=2, report_every=1, compile="default", **TINY)
    result = train(config, data, tmp_path / "run.pt", log=lambda s: None, on_progress=lambda s, st: seen.append(st))
    assert result["done"] and len(seen) == 2 and all(np.isfinite(v) for st in seen for v in st.values())


def test_unknown_speed_option_is_refused(folders, tmp_path):
    from sgacodec.config import TrainConfig
    from sgacodec.training.trainer import train

    with pytest.raises(ValueError, match="pool"):
        train(TrainConfig(steps=1, **{**TINY, "pool": "gpu"}), folders[0], tmp_path / "r.pt", log=lambda s: None)


def test_a_budget_is_a_complete_run(folders, tmp_path):
    """--budget: train for so many seconds, then finish as after the last step (quantile fit,
    update(), a done checkpoint), with the lr decayed late in the budget."""
    from sgacodec.config import TrainConfig
    from sgacodec.training.trainer import train

    data, val = folders
    logs = []
    result = train(TrainConfig(steps=10**6, report_every=1, **TINY), data, tmp_path / "b.pt", val,
                   budget=0.0, log=logs.append)
    assert result["done"] and result["step"] == 0 and result["val"] is not None
    state = torch.load(tmp_path / "b.pt", weights_only=True)
    assert state["done"] and state["state_dict"]["gaussian_conditional._quantized_cdf"].numel() > 0
    assert any("quantiles fitted" in line for line in logs)


def test_a_budget_decays_the_lr_late_in_it(folders, tmp_path, monkeypatch):
    """With a clock that advances one second per reading, a 12-second budget trains some steps at
    the full lr, then at lr / 10 after decay_at of it, and ends complete."""
    import itertools
    from types import SimpleNamespace

    import sgacodec.training.trainer as train_module
    from sgacodec.config import TrainConfig
    from sgacodec.training.trainer import train

    clock = itertools.count()
    monkeypatch.setattr(train_module, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    lrs = []
    real_step = train_module.TrainStep.__call__

    def recording(self, x, lr):
        lrs.append(lr)
        return real_step(self, x, lr)

    monkeypatch.setattr(train_module.TrainStep, "__call__", recording)
    config = TrainConfig(steps=10**6, report_every=1, decay_at=0.5, **TINY)
    result = train(config, folders[0], tmp_path / "b.pt", budget=12.0, log=lambda s: None)
    assert result["done"] and result["step"] == len(lrs) >= 3
    assert lrs[0] == TINY["lr"] and lrs[-1] == pytest.approx(TINY["lr"] / 10)
    assert sorted(lrs, reverse=True) == lrs  # once decayed, it stays so


def test_cli_train_command_runs_and_exports(folders, tmp_path):
    from click.testing import CliRunner

    from sgacodec.cli import main

    data, val = folders
    out = tmp_path / "cli.safetensors"
    args = ["train", str(data), "--checkpoint", str(tmp_path / "c.pt"), "--steps", "2", "-N", "8",
            "-M", "12", "--batch-size", "2", "--crop", "64", "--val", str(val), "--val-every", "1",
            "--device", "cpu", "--log-every", "1", "--export", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "(complete)" in result.output and "exported" in result.output and out.is_file()
    bad = CliRunner().invoke(main, [*args[:4], "--crop", "100"])
    assert bad.exit_code != 0


def test_embedded_manifest_matches_the_shipped_files():
    from sgacodec.models.checkpoints import sha256_file
    from sgacodec.models.embedded import MANIFEST, WEIGHTS_DIR

    if not MANIFEST.is_file():
        pytest.skip("no embedded models in this build")
    manifest = json.loads(MANIFEST.read_text())
    models = manifest["models"]
    assert manifest["default_quality"] in {m["quality"] for m in models}
    total = 0
    for m in models:
        path = WEIGHTS_DIR / m["file"]
        assert sha256_file(path).hex() == m["sha256"]
        total += path.stat().st_size
        assert m["architecture"] == "mbt2018-mean" and (m["N"], m["M"]) == (128, 192)
        assert {"lmbda", "steps", "data", "command", "kodak"} <= set(m)
    assert total <= 45 * 2**20
