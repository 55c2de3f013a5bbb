"""benchmarks/tiled_refinement.py: the equal-rate gain formula and ``--resume`` (no encoding)."""

from __future__ import annotations

import json
import math

import pytest

from .support import load_script


def row(image, method, tile, bpp, psnr, **extra):
    mse = 255**2 / 10 ** (psnr / 10)
    return {"image": image, "method": method, "tile": tile, "iterations": 200 if method == "ssl" else 0,
            "bpp": bpp, "psnr": psnr, "mse": mse, "lmbda": 0.0067, "bytes": 1, "seconds": 1.0, **extra}


def test_equal_rate_gain_uses_the_losss_slope():
    bench = load_script("benchmarks/tiled_refinement.py")
    base = row("a", "none", 512, 0.5, 30.0)
    # same PSNR, fewer bits: a positive gain equal to the rate saved over the slope
    better = row("a", "ssl", 512, 0.4, 30.0)
    slope = 10 / math.log(10) / (0.0067 * 255**2 * bench.unit_mse(base))
    assert bench.equal_rate_db(better, base) == pytest.approx(slope * 0.1)
    assert bench.equal_rate_db(base, base) == 0


def test_resume_keeps_the_earlier_rows_and_runs_only_the_missing_encodes(tmp_path, monkeypatch):
    bench = load_script("benchmarks/tiled_refinement.py")
    tile = bench.TILE_SIZE
    clic = tmp_path / "clic"
    clic.mkdir()
    for name in ("a.png", "b.png"):
        (clic / name).write_bytes(b"")
    earlier_rows = [row(n, m, t, 0.5 if m == "none" else 0.45, 30.0) for n in ("a.png", "b.png")
                    for m in ("none", "ssl") for t in (tile, 0)][:-1]  # b's whole SSL missing
    earlier = {"provenance": {"command": "run 1", "date": "d1", "commit": "c" * 40, "tile_size": tile,
                              "machine": "m", "versions": {"torch": "t", "compressai": "c"}},
               "iterations": 200, "crop": 64, "rows": earlier_rows, "images_planned": ["a.png", "b.png"]}
    out = tmp_path / "r.json"
    out.write_text(json.dumps(earlier))
    ran = []

    def fake_encode(path, side, method, tile_, iterations):
        ran.append((path.rsplit("/", 1)[-1], method, tile_))
        return row(path.rsplit("/", 1)[-1], method, tile_, 0.44, 30.0, commit="d" * 40)

    class Inline:  # a pool that runs each job at once, in this process
        def __init__(self, *a, **k): pass
        def __enter__(self): return self
        def __exit__(self, *a): return False
        def submit(self, f, *a):
            from concurrent.futures import Future
            future = Future()
            future.set_result(f(*a))
            return future

    monkeypatch.setattr(bench, "encode_one", fake_encode)
    monkeypatch.setattr(bench, "ProcessPoolExecutor", Inline)
    monkeypatch.setattr(bench, "provenance", lambda argv: {"command": "run 2", "date": "d2", "commit": "d" * 40,
                                                           "tile_size": tile, "machine": "m",
                                                           "versions": {"torch": "t", "compressai": "c"}})
    args = ["--clic", str(clic), "--images", "2", "--crop", "64", "--out", str(out), "--resume"]
    assert bench.main(args) == 0
    assert ran == [("b.png", "ssl", 0)]
    results = json.loads(out.read_text())
    assert len(results["rows"]) == 8
    assert {r["commit"][0] for r in results["rows"]} == {"c", "d"}
    assert [p["command"] for p in results["earlier_runs"]] == ["run 1"]
    assert len(results["summary"]["images"]) == 2
    assert "Resumed run" in bench.page(results) and "Partial run" not in bench.page(results)

    other = dict(earlier, iterations=100)
    out.write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="--resume"):
        bench.main(args)
