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
