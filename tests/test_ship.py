"""scripts/ship.py: a slice's weights replace the shipped ones only when better against the
published curve (rate at equal PSNR); every applied slice is recorded and docs/models.md's table
is generated from the records; a dry run writes nothing."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from .support import ROOT, load_script


@pytest.fixture
def ship_module():
    return load_script("scripts/ship.py", "ship_script")


@pytest.fixture
def root(tmp_path):
    """A checkout's manifest, docs/models.md and a stand-in for the shipped msh-q2 file."""
    root = tmp_path / "repo"
    (root / "sgacodec" / "models" / "weights").mkdir(parents=True)
    (root / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "models.md", root / "docs")
    shipped = b"shipped weights"
    (root / "sgacodec" / "models" / "weights" / "msh-q2.safetensors").write_bytes(shipped)
    manifest = json.loads((ROOT / "sgacodec" / "models" / "weights" / "manifest.json").read_text())
    for m in manifest["models"]:
        if m["quality"] == 2:
            m["sha256"] = hashlib.sha256(shipped).hexdigest()
            m["kodak"].update(bpp=0.4188, psnr=29.24, images=24)
    (root / "sgacodec" / "models" / "weights" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return root


def make_slice(folder, root, bpp, psnr, images=24, weights=b"candidate", steps=5000):
    """A device run's files: slice.json, the weights it names, train.log."""
    from sgacodec.evaluation.published import rate_vs_published

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "msh-q2.safetensors").write_bytes(weights)
    (folder / "train.log").write_text("step 5000: val bpp 0.3 psnr 30.0 loss 0.7\n")
    shipped = (root / "sgacodec" / "models" / "weights" / "msh-q2.safetensors").read_bytes()
    report = {
        "provenance": {"device": "CPU x (16 cores)", "torch": "2.11.0", "compressai": "1.2.8", "commit": None},
        "models": [{"file": "/root/out/msh-q2.safetensors", "sha256": hashlib.sha256(weights).hexdigest(),
                    "bpp": bpp, "psnr": psnr, "images": images, "decoded": images, "lmbda": 0.0067,
                    "rate_vs_published_percent": rate_vs_published(bpp, psnr), "rows": [{"image": "a"}]}],
        "training": {"quality": 2, "steps": steps, "cumulative_steps": 7047 + steps, "base_steps": 7047,
                     "init_sha256": hashlib.sha256(shipped).hexdigest(), "date": "2026-12-01T10:00:00Z",
                     "device": "NVIDIA H200", "torch": "2.11.0+cu130", "compressai": "1.2.8", "seconds": 430,
                     "command": "python3 -m sgacodec train .slice/train --budget 420", "steps_per_s": 12.5,
                     "commit": "abc", "data": {"index": 0, "train_images": 310, "pool_images": 683}},
    }
    (folder / "slice.json").write_text(json.dumps(report))
    return folder / "slice.json"


def state(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_dry_run_writes_nothing(ship_module, root, tmp_path):
    before = state(root)
    verdict = ship_module.ship(make_slice(tmp_path / "s1", root, 0.30, 29.5), root, log=lambda s: None)
    assert verdict["better"] and state(root) == before


def test_worse_is_recorded_but_not_shipped_and_better_is_shipped(ship_module, root, tmp_path):
    weights = root / "sgacodec" / "models" / "weights" / "msh-q2.safetensors"
    lines = []
    worse = ship_module.ship(make_slice(tmp_path / "s1", root, 0.45, 29.24), root, apply=True, log=lines.append)
    assert not worse["better"] and "not better" in worse["reasons"][0]
    assert weights.read_bytes() == b"shipped weights"
    assert (root / "docs" / "training" / "slice-001.log").is_file()
    better = ship_module.ship(make_slice(tmp_path / "s2", root, 0.25, 29.6), root, apply=True, log=lines.append)
    assert better["better"] and better["candidate_rate"] < better["shipped_rate"]
    assert weights.read_bytes() == b"candidate"
    manifest = json.loads((root / "sgacodec" / "models" / "weights" / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["quality"] == 2)
    assert entry["sha256"] == hashlib.sha256(b"candidate").hexdigest() and entry["steps"] == 12047
    assert entry["kodak"]["bpp"] == 0.25 and entry["kodak"]["images"] == 24
    assert entry["slices"][-1]["slice"] == 2 and "slice 2" in entry["command"] and "310 of 683" in entry["data"]
    records = [json.loads(line) for line in (root / "docs" / "training" / "slices.jsonl").read_text().splitlines()]
    assert [r["shipped"] for r in records] == [False, True] and "rows" not in records[0]["evaluation"]
    table = (root / "docs" / "models.md").read_text().split(ship_module.BEGIN)[1].split(ship_module.END)[0]
    rows = [line for line in table.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert rows[0].endswith("| no |") and rows[1].endswith("| yes |") and "5,000 / 12,047" in rows[1]
    assert "Shipped now: msh-q2, 12,047 steps, Kodak 0.2500 bpp" in table


def test_only_a_full_evaluation_with_its_own_weights_ships(ship_module, root, tmp_path):
    partial = ship_module.ship(make_slice(tmp_path / "s1", root, 0.2, 29.6, images=4), root, log=lambda s: None)
    assert not partial["better"] and "4 images" in partial["reasons"][0]
    path = make_slice(tmp_path / "s2", root, 0.2, 29.6)
    (tmp_path / "s2" / "msh-q2.safetensors").write_bytes(b"other bytes")
    with pytest.raises(SystemExit, match="sha256"):
        ship_module.ship(path, root, log=lambda s: None)


def test_the_slices_table_in_the_docs_is_the_generated_one(ship_module):
    manifest = json.loads((ROOT / "sgacodec" / "models" / "weights" / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["quality"] == manifest["default_quality"])
    assert ship_module.regenerate_docs(ROOT, entry) == (ROOT / "docs" / "models.md").read_text()
