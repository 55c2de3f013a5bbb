"""benchmarks/memory_estimates.py: each path's estimate is set beside its measured peak (the larger
of ru_maxrss and the tree's sampled PSS), and a path is within the issue's bound only when the
estimate is within 1.5x of it, both ways, and the command succeeded."""

from __future__ import annotations

from sgacodec.codec import memory
from sgacodec.network.grid import Grid

from .support import load_script


def measured(maxrss, pss, exit=0):
    return {"maxrss_mb": maxrss, "tree_pss_peak_mb": pss, "exit": exit, "wall_s": 1.0, "command": "c", "stderr": ""}


def test_rows_hold_the_paths_own_estimates_and_the_bound_both_ways():
    bench = load_script("benchmarks/memory_estimates.py")
    est = round(memory.estimate("decode", 128, Grid(1536, 2048, 0)) / (1 << 20))
    assert bench.estimate_mb("decode", 2048, 1536, 0) == est
    legacy = memory.PROCESS_BYTES + memory.image_bytes(128, 1536, 2048, per_pixel=memory.LEGACY_BYTES_PER_PIXEL)
    assert bench.estimate_mb("decode", 2048, 1536, None) == round(legacy / (1 << 20))
    assert bench.row("decode", 2048, 1536, 0, 3, measured(est, est))["within_bound"]
    assert bench.row("decode", 2048, 1536, 0, 3, measured(est, round(est / 1.6)))["within_bound"]  # the larger
    assert not bench.row("decode", 2048, 1536, 0, 3, measured(round(est / 1.6), round(est / 1.7)))["within_bound"]
    assert not bench.row("decode", 2048, 1536, 0, 3, measured(round(est * 1.6), est))["within_bound"]  # under
    assert bench.row("decode", 2048, 1536, 0, 3, measured(est, round(est * 1.4)))["estimate_over_peak"] < 0.72
    assert not bench.row("decode", 2048, 1536, 0, 3, measured(est, est, exit=1))["within_bound"]
    rows = [bench.row("encode", 2048, 1536, 512, 3, measured(500, 600)),
            bench.row("decode", 2048, 1536, None, 2, measured(10, 10))]
    text = bench.page({"provenance": {"command": "x", "commit": "0" * 40, "date": "d", "machine": "m",
                                      "versions": {"torch": "t", "compressai": "c"}}, "rows": rows})
    assert "| decode | 2048x1536 | - | 2 |" in text and "**no**" in text
    assert f"{sum(r['within_bound'] for r in rows)} of 2 paths" in text
