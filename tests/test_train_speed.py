"""benchmarks/train_speed.py rehearsed on the CPU: tiny variants, a few steps, a table of finite
figures (speed is measured on the GPU, docs/models.md)."""

from __future__ import annotations

import math

import pytest

from .support import load_script, save_png


@pytest.mark.slow
def test_train_speed_benchmark_runs_every_kind_of_variant(tmp_path, capsys):
    bench = load_script("benchmarks/train_speed.py")
    for i in range(3):
        save_png(tmp_path / f"{i}.png", 80, 96, seed=i)
    variants = "fp32,bf16+pool+cl+compile,bf16+pool+b32+sqrt-lr"
    rows = bench.main([str(tmp_path), "--val", str(tmp_path), "--variants", variants, "--warmup", "1",
                       "--steps", "2", "--batch-size", "2", "--crop", "64", "-N", "8", "-M", "12",
                       "--device", "cpu", "--compile-backend", "aot_eager"])
    assert [r["variant"] for r in rows] == variants.split(",")
    for r in rows:
        assert "error" not in r, r
        assert r["steps"] == 2 and r["steps_per_s"] > 0 and math.isfinite(r["loss"]) and math.isfinite(r["val_loss"])
    assert rows[2]["batch"] == 32 and rows[2]["images_per_s"] == pytest.approx(32 * rows[2]["steps_per_s"])
    table = capsys.readouterr().out
    assert "| variant | batch | steps/s | images/s |" in table and table.count("\n| ") >= 4
