"""scripts/make_results.py's page: the full-size (partial) and reduced sections, from small records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = [{"option": ["--quality", str(q)], "lmbda": lam, "default": q == 2, "quality": q,
           "name": f"m{q}", "sha": f"{q}" * 16} for q, lam in ((1, 0.0018), (2, 0.0067), (3, 0.025))]


@pytest.fixture
def mr(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_results", ROOT / "scripts" / "make_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "DATA", tmp_path / "results")
    monkeypatch.setattr(mod, "FIG", tmp_path / "figures")
    monkeypatch.setattr(mod, "DOC", tmp_path / "results.md")
    monkeypatch.setattr(mod, "model_table", lambda: [dict(m) for m in MODELS])
    monkeypatch.delenv("CHECKPOINTS", raising=False)
    (tmp_path / "results").mkdir()
    return mod


def record(image, q, label, it, crop=0, gain=0.0):
    """A learned record of model q (1..3) with made-up, plausible figures; gain improves on 'none'."""
    m = MODELS[q - 1]
    bpp, psnr = (0.15, 0.4, 0.85)[q - 1] * (1 - gain / 10), (26.0, 29.0, 31.0)[q - 1] + gain / 2
    loss = (0.46, 1.0, 2.2)[q - 1] * (1 - gain / 10)
    key = {"image": image, "crop": crop, "model": m["sha"], "label": label, "it": it, "eval_every": 10}
    steps = list(range(0, it + 1, 100)) if it else []
    return {"key": json.dumps(key), "image": image, "crop": crop, "model": f"embedded m{q} q{q}",
            "model_sha": m["sha"], "label": label, "method": label, "iterations": it,
            "tau_max": None if label == "none" else 1.0, "lmbda_scale": 1.0, "lmbda": m["lmbda"],
            "height": 512, "width": 768, "bpp": bpp, "psnr": psnr, "ms_ssim": 0.9, "loss": loss,
            "seconds": 0.1 + it / 1000,
            "history": {"step": steps, "loss": [loss * (1 + 0.1 * (1 - s / it)) for s in steps],
                        "bpp": [bpp] * len(steps), "psnr": [psnr] * len(steps)} if it else None}


def classical(image, q, codec, crop=0):
    m = MODELS[q - 1]
    return {"key": json.dumps({"image": image, "crop": crop, "codec": codec, "anchor_model": m["sha"]}),
            "image": image, "crop": crop, "model": codec, "model_sha": "", "label": codec, "method": codec,
            "point": 0, "anchor_model": m["sha"], "iterations": 0, "tau_max": None, "lmbda_scale": None,
            "lmbda": None, "height": 512, "width": 768, "bpp": (0.15, 0.4, 0.85)[q - 1],
            "psnr": (27.0, 30.0, 33.0)[q - 1], "ms_ssim": 0.92, "seconds": 1.0, "history": None}


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_page_shows_partial_full_section_then_reduced(mr):
    images = ["k/a.png", "k/b.png"]
    full = [record(i, q, "none", 0) for q in (1, 2, 3) for i in images]
    full += [record(i, q, label, it, gain=g) for q in (1, 2) for i in images
             for label, it, g in (("ssl", 500, 0.5), ("ssl", 2000, 1.0), ("atanh", 2000, 0.8))]
    full += [record("k/a.png", 3, "ssl", 500)]  # an interrupted setting: listed, not averaged
    full += [classical(i, q, "jpeg") for q in (1, 2, 3) for i in images]
    write(mr.DATA / "full.jsonl", full)
    (mr.DATA / "full.stageA.cmd").write_text("sgacodec refine k --records full.jsonl\n# stopped\n")

    text = mr.page("reduced")
    assert text == mr.page("full")  # one page, whichever profile the shell script names
    assert "## Full-size Kodak on an H100 (partial)" in text
    assert "- embedded m1 q1: no atanh 500" in text
    assert "- embedded m3 q3: no ssl 500 (1 of 2 images), ssl 2000, atanh 500, atanh 2000" in text
    assert "the tau_max study: not run" in text
    assert "sgacodec refine k --records full.jsonl\n# stopped" in text
    assert "| ssl 2000it | none | 2 / 2 |" in text and "| ssl 2000it | atanh 2000it | 2 / 2 |" in text
    assert "| JPEG | none | 2 / 2 |" in text
    assert "weak evidence" in text and "500 iterations: cannot be shown" in text
    assert "(lower on 2 of 2 images)" in text
    for name in ("full_rd.png", "full_loss_embedded_m1_q1.png", "full_loss_embedded_m2_q2.png"):
        assert (mr.FIG / name).exists() and f"figures/{name}" in text
    assert "## Reduced CPU profile\n\n_No records of the shipped models yet_" in text

    reduced = [record(i, q, label, it, crop=64, gain=g) for q in (1, 2, 3) for i in images
               for label, it, g in (("none", 0, 0), ("ssl", 100, 1.0), ("atanh", 100, 0.3))]
    write(mr.DATA / "reduced.jsonl", reduced)
    text = mr.page("reduced")
    assert text.index("## Full-size Kodak") < text.index("## Reduced CPU profile") < text.index(
        "### 1. Refinement against the base model")
    assert "| ssl 100it | atanh 100it |" in text


def test_reduced_page_gives_bd_rates_of_methods_run_on_every_model(mr):
    images = ["k/a.png", "k/b.png"]
    reduced = [record(i, q, label, it, crop=64, gain=g) for q in (1, 2, 3) for i in images
               for label, it, g in (("none", 0, 0), ("ssl", 500, 1.0), ("atanh", 500, 0.3),
                                    ("ssl", 2000, 1.2), ("atanh", 2000, 1.1), ("cosine", 500, 0.9))]
    reduced += [record(i, 2, "ste", 500, crop=64, gain=0.1) for i in images]  # the default model only
    write(mr.DATA / "reduced.jsonl", reduced)
    text = mr.page("reduced")
    section2 = text[text.index("### 2. All rounding methods"):text.index("### 3. Sensitivity")]
    bd = section2[section2.index("BD-rate and BD-PSNR against none over the 3 models"):]
    assert "| cosine 500it |" in bd and "| ssl 2000it |" in bd
    assert "| ste 500it |" not in bd  # one model: no curve to integrate
    assert "| ste 500it |" in section2  # but its loss at the default model is listed
    assert bd.index("| ssl 500it |") < bd.index("| ssl 2000it |")  # numeric order of iterations
    assert ("Iterations per study: the main comparison (none, atanh, SSL) 500 / 2000; the other "
            "rounding methods 500; tau_max not run; semi-multi-rate not run.") in text
