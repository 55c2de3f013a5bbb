"""benchmarks/large_photos.py --rd-from: the R-D part of an earlier file keeps the provenance of
the run that measured it, even when that file had carried it from a run before (no measuring)."""

from __future__ import annotations

import json

from .support import load_script


def test_rd_from_keeps_the_provenance_of_the_run_that_measured_it(tmp_path, monkeypatch):
    bench = load_script("benchmarks/large_photos.py")
    monkeypatch.setattr(bench, "page", lambda results: "")  # the page is not what is tested
    measured = {"command": "the run that measured", "commit": "a" * 40}
    carried = {"command": "a run that carried it", "commit": "b" * 40}
    rd = {"rows": [], "summary": {}}
    first, second, out = tmp_path / "first.json", tmp_path / "second.json", tmp_path / "out.json"
    first.write_text(json.dumps({"provenance": measured, "rate_distortion": rd}))
    second.write_text(json.dumps({"provenance": carried, "rate_distortion": {**rd, "provenance": measured}}))
    for earlier in (first, second):
        bench.main(["--skip", "large", "--rd-from", str(earlier), "--out", str(out)])
        assert json.loads(out.read_text())["rate_distortion"]["provenance"] == measured


def test_the_host_speed_is_recorded_at_the_start_and_the_end(tmp_path, monkeypatch):
    bench = load_script("benchmarks/large_photos.py")
    speeds = iter([31.5, 24.25])
    monkeypatch.setattr(bench, "host_speed", lambda: next(speeds))
    out = tmp_path / "out.json"
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"provenance": {"command": "c", "commit": "a" * 40},
                                   "rate_distortion": {"rows": [], "summary": {}}}))
    monkeypatch.setattr(bench, "page", lambda results: "")
    bench.main(["--skip", "large", "--rd-from", str(earlier), "--out", str(out)])
    assert json.loads(out.read_text())["provenance"]["host_gflops"] == {"start": 31.5, "end": 24.25}
    assert 0 < load_script("benchmarks/large_photos.py").host_speed() < 10_000


def test_a_repeated_command_reports_its_median_run_and_its_largest_peak():
    bench = load_script("benchmarks/large_photos.py")

    def ran(wall, rss, pss, exit=0):
        return {"wall_s": wall, "cpu_s": wall * 2, "maxrss_mb": rss, "tree_pss_peak_mb": pss, "exit": exit}

    runs = [ran(40.0, 700, 650), ran(30.0, 720, 640), ran(35.0, 690, 660)]
    median = bench.median_run(runs)
    assert (median["wall_s"], median["cpu_s"]) == (35.0, 70.0)
    assert median["runs_wall_s"] == [40.0, 30.0, 35.0]
    assert (median["maxrss_mb"], median["tree_pss_peak_mb"], median["exit"]) == (720, 660, 0)
    assert bench.median_run([ran(1.0, 1, 1), ran(2.0, 1, 1, exit=-9), ran(3.0, 1, 1)])["exit"] == -9
    entry = {"photo": "4000x3000", "tile": 512, "estimate_mb": {"encode": 1, "decode": 1},
             "encode": median, "decode": ran(20.0, 1, 1)}
    page = bench.page({"provenance": {"command": "c", "date": "d", "commit": "a" * 40, "machine": "m",
                                      "versions": {"torch": "t", "compressai": "c"}}, "large": [entry]})
    assert "| 4000x3000 | 512 | encode | 35.0 (median of 40.0, 30.0, 35.0) | 70.0 | 720 | 660 | 1 |" in page
    assert "| 4000x3000 | 512 | decode | 20.0 | 40.0 | 1 | 1 | 1 |" in page
