"""Training slices (scripts/slice.py, scripts/train_slice.sh): packing what travels within the
limit, a different training subset per slice, the stash and its restore, and the CPU rehearsal of
the whole GPU command (tiny model, 30-second budget, a few images), so that GPU minutes are never
spent on setup bugs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from .support import ROOT, load_script, make_image, save_png

REHEARSAL_BUDGET = 30  # seconds of training, as on the GPU (420) but for a tiny model


@pytest.fixture(scope="module")
def slice_module():
    return load_script("scripts/slice.py", "slice_script")


def git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small repository laid out like this one (manifest, three weight files, R-D records), a
    training pool of four sources (one validation image in sun80), Kodak-like PNGs and wheels."""
    from PIL import Image

    base = tmp_path_factory.mktemp("slice")
    repo = base / "repo"
    (repo / "sgacodec" / "models" / "weights").mkdir(parents=True)
    (repo / "docs" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "sgacodec" / "models" / "weights" / "manifest.json", repo / "sgacodec" / "models" / "weights")
    rng = np.random.default_rng(0)
    for q in (1, 2, 3):
        (repo / "sgacodec" / "models" / "weights" / f"msh-q{q}.safetensors").write_bytes(rng.bytes(30_000))
    (repo / "docs" / "results" / "full.jsonl").write_bytes(rng.bytes(10_000))
    (repo / ".gitignore").write_text("/.slice/\n/runs/\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "fake")
    pool = base / "pool"
    for k, source in enumerate(("bsds500", "urban100", "sun80", "cid22")):
        (pool / source).mkdir(parents=True)
        for i in range(4):
            name = "beach_sun_bgtlposotyokcsdg" if source == "sun80" and i == 0 else f"{source}{i}"
            Image.fromarray(make_image(96, 128, seed=10 * k + i)).save(pool / source / f"{name}.jpg", quality=90)
    kodak = base / "kodak"
    kodak.mkdir()
    for i in range(2):
        save_png(kodak / f"kodim0{i + 1}.png", 64, 96, seed=30 + i)
    wheels = base / "wheels"
    wheels.mkdir()
    (wheels / "compressai-0-py3-none-any.whl").write_bytes(b"not a real wheel")
    return {"repo": repo, "pool": pool, "kodak": kodak, "wheels": wheels}


def pack(slice_module, world, index, limit, margin=0):
    return slice_module.pack(world["repo"], index, 2, world["pool"], world["kodak"], world["wheels"],
                             limit=limit, margin=margin)


def test_pack_fits_the_limit_stashes_and_restores(slice_module, world):
    repo = world["repo"]
    weights = repo / "sgacodec" / "models" / "weights"
    before = {p.name: p.read_bytes() for p in weights.glob("*.safetensors")}
    everything = pack(slice_module, world, 0, limit=10**9)
    assert everything["train_images"] == everything["pool_images"] == 15  # the validation image is not among them
    limit = everything["total"] - everything["train_bytes"] // 2
    subsets = []
    for index in (0, 1):
        sizes = pack(slice_module, world, index, limit)
        assert sizes["total"] <= limit
        assert sizes["total"] == sizes["tree"] + slice_module.folder_size(repo / ".slice")
        assert sizes["stashed"] == ["sgacodec/models/weights/msh-q1.safetensors",
                                    "sgacodec/models/weights/msh-q3.safetensors", "docs/results/full.jsonl"]
        assert sorted(p.name for p in weights.glob("*.safetensors")) == ["msh-q2.safetensors"]
        packed = repo / ".slice"
        train = sorted(p.name for p in (packed / "train").iterdir())
        assert 0 < len(train) < 15 and not any("beach_sun" in name for name in train)
        assert [p.name for p in (packed / "val").iterdir()] == ["sun80_beach_sun_bgtlposotyokcsdg.jpg"]
        assert len(list((packed / "kodak").glob("*.png"))) == 2 and len(list((packed / "whl").iterdir())) == 1
        meta = json.loads((packed / "meta.json").read_text())
        assert meta["index"] == index and meta["train_images"] == len(train) and meta["commit"]
        assert not meta["commit"].endswith("+dirty")  # taken before the stash
        subsets.append(set(train))
    assert subsets[0] != subsets[1]  # the next slice sees other images
    assert slice_module.restore(repo) == sizes["stashed"]
    assert {p.name: p.read_bytes() for p in weights.glob("*.safetensors")} == before
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == ""
    assert slice_module.restore(repo) == []  # nothing stashed: nothing to do
    with pytest.raises(SystemExit, match="never train on Kodak"):
        slice_module.pack(repo, 0, 2, world["kodak"], world["kodak"], world["wheels"])


@pytest.mark.slow
def test_rehearsal_of_the_gpu_slice_on_the_cpu(slice_module, world, tmp_path):
    """scripts/train_slice.sh as on the GPU machine, pointed at the CPU and a tiny model: it trains
    for its budget from the given weights, fits the quantiles, exports, and evaluates with real
    bytes (every image encoded and decoded) in two processes; the output folder holds weights that
    sgacodec loads, the log, and the evaluation with its provenance and the training's steps."""
    from safetensors import safe_open

    from sgacodec.models.checkpoints import load_checkpoint

    pack(slice_module, world, 0, limit=10**9)
    slice_module.restore(world["repo"])
    out = tmp_path / "out"
    env = {**os.environ, "SLICE": str(world["repo"] / ".slice"), "OUTDIR": str(out),
           "BUDGET": str(REHEARSAL_BUDGET), "DEVICE": "cpu", "N": "16", "M": "24",
           "INIT": str(ROOT / "tests" / "golden" / "tiny.safetensors"), "LMBDA": "0.01", "BATCH": "2",
           "CROP": "64", "AMP": "off", "POOL": "device", "WORKERS": "2", "VAL_EVERY": "100", "LOG_EVERY": "50",
           "CKPT": str(tmp_path / "run.pt"), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "train_slice.sh"), "2"], env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["msh-q2.safetensors", "slice.json", "train.log",
                                                     "training.json"]
    log = (out / "train.log").read_text()
    assert "(complete)" in log and "quantiles fitted" in log and "val bpp" in log and "steps/s" in log

    model = load_checkpoint(out / "msh-q2.safetensors")
    assert model.lmbda == pytest.approx(0.01) and model.net.g_a[0].weight.shape[0] == 16
    with safe_open(str(out / "msh-q2.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["done"] == "True" and int(meta["step"]) > 0

    report = json.loads((out / "slice.json").read_text())
    [evaluation] = report["models"]
    assert evaluation["images"] == evaluation["decoded"] == 2 and evaluation["workers"] == 2
    for row in evaluation["rows"]:  # real bytes: bpp is the file's
        assert row["decoded"] and row["bpp"] == pytest.approx(8 * row["bytes"] / (64 * 96))
    assert evaluation["bpp"] == pytest.approx(np.mean([r["bpp"] for r in evaluation["rows"]]))
    assert np.isfinite(evaluation["psnr"]) and np.isfinite(evaluation["rate_vs_published_percent"])
    assert {"device", "torch", "compressai", "commit", "date"} <= set(report["provenance"])
    training = report["training"]
    assert training["steps"] == int(meta["step"]) and training["sha256"] == evaluation["sha256"]
    assert training["budget_s"] == REHEARSAL_BUDGET and training["done"]
    assert training["val"]["step"] == training["steps"]  # validated at the end of the budget
    assert training["data"]["index"] == 0 and training["data"]["train_images"] == 15
    assert "--budget" in training["command"] and training["device"].startswith("CPU")
    assert training["base_steps"] is None  # not the shipped weights: no cumulative count
