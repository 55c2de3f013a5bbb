"""R-D evaluation: inputs, grids, resumable records, classical codecs, BD-rate, figures, the CLI."""

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sgacodec import evaluate as ev
from sgacodec.cli import main

from .conftest import make_image


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        Image.fromarray(make_image(64, 80, seed=i)).save(d / f"im{i}.png")
    (d / "notes.txt").write_text("not an image")
    return d


def test_expand_inputs_directories_globs_and_files(image_dir):
    files = [str(image_dir / "im0.png"), str(image_dir / "im1.png")]
    assert ev.expand_inputs([str(image_dir)]) == files
    assert ev.expand_inputs([str(image_dir / "im*.png"), files[0]]) == files  # no repeats
    assert ev.expand_inputs(["missing.png"]) == ["missing.png"]  # reading it reports the error
    with pytest.raises(ev.EvaluationError):
        ev.expand_inputs([str(image_dir / "*.jpg")])


def test_grid_expansion_collapses_meaningless_repeats():
    grid = ev.expand_grid(["none", "ste", "ssl", "ssl3"], [10, 20], lmbda_scales=[0.5, 1],
                          tau_maxes=[0.5, 1.0])
    count = lambda label: sum(s.label == label for s in grid)
    assert count("none") == 2  # no iterations, no temperature: one per rate point
    assert count("ste") == 2 * 2  # iterations x rate points
    assert count("ssl") == count("ssl3") == 2 * 2 * 2
    s3 = next(s for s in grid if s.label == "ssl3")
    assert s3.method == "ssl" and s3.three_class
    assert ev.refine_config(s3, {"lr": 0.01}).three_class
    assert ev.parse_label("linear", three_class_flag=True) == "linear3"
    assert ev.parse_label("atanh", three_class_flag=True) == "atanh"
    assert len({s.tag() for s in grid}) == len(grid)
    with pytest.raises(ev.EvaluationError):
        ev.expand_grid(["bogus"])


def test_record_keys_identify_settings():
    s = ev.Setting("ssl", 100, None, 1.0, 1.0)
    cfg = ev.refine_config(s, {})
    k = ev.record_key("a/b.png", 256, "ab", s, 0.01, cfg)
    assert k == ev.record_key("a/./b.png", 256, "ab", s, 0.01, cfg)
    assert k != ev.record_key("a/b.png", 256, "ab", s, 0.02, cfg)
    assert k != ev.record_key("a/b.png", None, "ab", s, 0.01, cfg)
    assert k != ev.record_key("a/b.png", 256, "ab", s, 0.01, ev.refine_config(s, {"seed": 1}))
    assert k != ev.record_key("a/b.png", 256, "ab", ev.Setting("ssl", 100, None, 1.0, 0.5), 0.01, cfg)


def test_bd_rate_sanity():
    anchor = [(0.2, 28.0), (0.4, 31.0), (0.7, 33.5), (1.1, 35.5)]
    rate, psnr = ev.bd(anchor, anchor)
    assert rate == pytest.approx(0.0, abs=1e-9) and psnr == pytest.approx(0.0, abs=1e-9)
    cheaper = [(b * 0.9, d) for b, d in anchor]
    assert ev.bd(anchor, cheaper)[0] == pytest.approx(-10.0, abs=1e-6)
    better = [(b, d + 0.5) for b, d in anchor]
    assert ev.bd(anchor, better)[1] == pytest.approx(0.5, abs=1e-6)
    assert ev.bd(anchor, better)[0] < 0
    assert math.isnan(ev.bd(anchor[:1], anchor)[0])  # one point is no curve
    assert math.isnan(ev.bd(anchor, [(5.0, 40.0), (6.0, 41.0)])[0])  # no overlap
    # unsorted input and duplicate rate points are fine
    assert ev.bd(anchor[::-1] + [anchor[0]], anchor)[0] == pytest.approx(0.0, abs=1e-9)
    rows = ev.bd_table({"none": anchor, "x": cheaper}, "none")
    assert rows[0]["test"] == "x" and rows[0]["bd_rate"] == pytest.approx(-10.0, abs=1e-6)
    m = ev.bd_matrix({"a": anchor, "b": cheaper})
    assert m[("b", "a")] == pytest.approx(-10.0, abs=1e-6) and m[("a", "b")] > 0


def test_classical_codecs_hit_target_rates():
    rgb = make_image(96, 128, seed=3)
    codecs = ev.parse_classical("jpeg,webp,avif")
    assert codecs[:2] == ["jpeg", "webp"]
    with pytest.raises(ev.EvaluationError):
        ev.parse_classical("jpeg,bogus")
    for codec in codecs:
        lo, hi = (ev.classical_at_rate(rgb, codec, t) for t in (0.5, 2.0))
        assert lo["bpp"] < hi["bpp"] and lo["psnr"] < hi["psnr"]
        assert hi["bpp"] == pytest.approx(2.0, rel=0.35), (codec, hi)


def small_settings():
    return ev.expand_grid(["none", "ssl"], [3], lmbda_scales=[0.5, 2.0])


def test_evaluate_records_and_resume_after_interruption(tmp_path, image_dir, tiny_model):
    inputs = ev.expand_inputs([str(image_dir)])
    records = tmp_path / "r.jsonl"
    settings = small_settings()
    total = len(inputs) * len(settings)

    seen = []

    def stop_after_three(record, report):
        seen.append(record)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(tiny_model, inputs, settings, records_path=records, on_record=stop_after_three)
    assert len(ev.load_records(records)) == 3  # flushed one by one
    with open(records, "a") as f:  # a torn line, as if killed mid-write
        f.write('{"key": "unfinished')

    result = ev.evaluate(tiny_model, inputs, settings, records_path=records, classical=["jpeg"])
    assert result.resumed == 3 and result.computed == total - 3 + len(inputs)  # 'none': 1 rate
    learned = [r for r in result.records if r["label"] != "jpeg"]
    assert len(learned) == total
    again = ev.evaluate(tiny_model, inputs, settings, records_path=records, classical=["jpeg"])
    assert again.computed == 0 and again.resumed == len(result.records)
    stored = ev.load_records(records)
    assert len(stored) == len(result.records) and len({r["key"] for r in stored}) == len(stored)
    ssl = next(r for r in stored if r["label"] == "ssl")
    assert ssl["history"]["step"] == [0, 1, 2, 3] and len(ssl["history"]["loss"]) == 4
    assert ssl["bpp"] == pytest.approx(8 * ssl["bytes"] / (64 * 80))
    assert ssl["loss"] <= ssl["base_loss"] + 1e-9

    rows = ev.aggregate(stored)
    none = [r for r in rows if r["label"] == "none"]
    assert {r["n"] for r in rows} == {2}
    mean_bpp = np.mean([r["bpp"] for r in stored if r["label"] == "none" and r["lmbda_scale"] == 2.0])
    assert next(r for r in none if r["rate"] == "x2")["bpp"] == pytest.approx(mean_bpp)
    assert set(ev.curves_from_rows(rows)) == {"none", "ssl 3it", "JPEG"}
    figures = ev.write_plots(stored, tmp_path / "fig")
    assert [p.rsplit("/", 1)[-1] for p in figures] == ["rd.png", "loss_per_iteration.png"]
    for p in figures:
        assert Image.open(p).size[0] > 100


def test_evaluate_center_crop_and_bad_images(tmp_path, image_dir, tiny_model):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    result = ev.evaluate(tiny_model, [str(bad), str(image_dir / "im0.png")],
                         ev.expand_grid(["none"]), crop=32)
    assert len(result.failures) == 1 and "bad.png" in result.failures[0]
    [rec] = result.records
    assert (rec["height"], rec["width"]) == (32, 32)
    assert ev.center_crop(np.zeros((10, 40, 3), np.uint8), 16).shape == (10, 16, 3)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_refine_cli_dataset_grid_resume_and_plots(tmp_path, image_dir, tiny_checkpoint):
    # a second "model": the same weights declared at another lambda (another file, another sha)
    state = torch.load(tiny_checkpoint, weights_only=True)
    other = tmp_path / "other.pth.tar"
    torch.save({**state, "lmbda": 0.02}, other)
    records, plots = tmp_path / "r.jsonl", tmp_path / "plots"
    args = ["refine", image_dir, "--checkpoint", tiny_checkpoint, "--checkpoint", other,
            "--method", "none", "--method", "atanh", "--method", "ssl3", "--iterations", 2,
            "--iterations", 3, "--lmbda-scale", 1, "--lmbda-scale", 2, "--classical", "jpeg",
            "--records", records, "--plot", plots, "--json"]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    out = [json.loads(line) for line in res.stdout.splitlines()]
    learned = [r for r in out if r["label"] != "jpeg"]
    assert len(learned) == 2 * 2 * (1 + 2 + 2) * 2  # models x images x (none, atanh x2, ssl3 x2) x rates
    assert {r["label"] for r in learned} == {"none", "atanh", "ssl3"}
    assert all("history" not in r and "key" not in r for r in out)
    assert "Means over images" in res.stderr and "BD-rate" in res.stderr
    assert sorted(p.name for p in plots.iterdir()) == ["loss_per_iteration.png", "rd.png"]
    lines = records.read_text().splitlines()
    assert len(lines) == len(out)

    res = cli(*args[:-1])  # the same evaluation again: everything is resumed
    assert res.exit_code == 0, res.output
    assert "resumed" in res.stderr
    assert len(records.read_text().splitlines()) == len(lines)


def test_refine_cli_errors(tmp_path, image_dir, tiny_checkpoint):
    res = CliRunner().invoke(main, ["refine", str(image_dir / "*.jpg"), "--checkpoint", str(tiny_checkpoint)])
    assert res.exit_code == 1 and "matches no file" in res.output
    res = CliRunner().invoke(main, ["refine", str(image_dir), "--checkpoint", str(tiny_checkpoint),
                                    "--classical", "gif"])
    assert res.exit_code == 1 and "classical" in res.output


def test_rd_plot_shades_longer_runs_of_a_method_darker():
    shades = ev._iteration_shades(["none", "ssl 100it", "ssl 2000it", "ssl 500it", "atanh 500it",
                                   "ssl 500it tau0.5"])
    assert shades["ssl 100it"] < shades["ssl 500it"] < shades["ssl 2000it"] == 1.0
    assert shades["none"] == shades["atanh 500it"] == shades["ssl 500it tau0.5"] == 1.0
