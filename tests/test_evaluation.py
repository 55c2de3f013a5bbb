"""R-D evaluation: grids, typed records and their keys, resume, classical codecs, batches, BD-rate, figures."""

import contextlib
import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from sgacodec import evaluation as ev
from sgacodec.config import RefineConfig
from sgacodec.errors import EvaluationError
from sgacodec.files.images import center_crop, expand_inputs

from .support import make_image


def test_grid_expansion_collapses_meaningless_repeats():
    grid = ev.expand_grid(["none", "ste", "ssl", "ssl3"], [10, 20], lmbda_scales=[0.5, 1],
                          tau_maxes=[0.5, 1.0])
    count = lambda label: sum(s.label == label for s in grid)
    assert count("none") == 2  # no iterations, no temperature: one per rate point
    assert count("ste") == 2 * 2  # iterations x rate points
    assert count("ssl") == count("ssl3") == 2 * 2 * 2
    s3 = next(s for s in grid if s.label == "ssl3")
    assert s3.method == "ssl" and s3.three_class
    assert s3.config(RefineConfig(lr=0.01)).three_class and s3.config(RefineConfig(lr=0.01)).lr == 0.01
    assert ev.parse_label("linear", three_class_flag=True) == "linear3"
    assert ev.parse_label("atanh", three_class_flag=True) == "atanh"
    assert len({s.tag() for s in grid}) == len(grid)
    with pytest.raises(EvaluationError):
        ev.expand_grid(["bogus"])



def test_record_keys_identify_settings():
    s = ev.Setting("ssl", 100, None, 1.0, 1.0)
    cfg = s.config(RefineConfig())
    k = ev.record_key("a/b.png", 256, "ab", s, 0.01, cfg)
    assert k == ev.record_key("a/./b.png", 256, "ab", s, 0.01, cfg)
    assert k != ev.record_key("a/b.png", 256, "ab", s, 0.02, cfg)
    assert k != ev.record_key("a/b.png", None, "ab", s, 0.01, cfg)
    assert k != ev.record_key("a/b.png", 256, "ab", s, 0.01, s.config(RefineConfig(seed=1)))
    assert k != ev.record_key("a/b.png", 256, "ab", ev.Setting("ssl", 100, None, 1.0, 0.5), 0.01, cfg)


def test_cpu_description_names_family_and_model_of_the_first_processor():
    from sgacodec.evaluation.records import describe_cpu

    two = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
           "model name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 25\nmodel\t\t: 1\n"
           "model name\t: Other\n")
    assert describe_cpu(two) == "AMD EPYC (family 26, model 2)"
    assert describe_cpu("processor\t: 0\nmodel name\t: Some ARM core\n") == "Some ARM core"
    assert describe_cpu("processor\t: 0\nBogoMIPS\t: 50.00\n") is None


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
    assert rows[0].test == "x" and rows[0].bd_rate == pytest.approx(-10.0, abs=1e-6)
    m = ev.bd_matrix({"a": anchor, "b": cheaper})
    assert m[("b", "a")] == pytest.approx(-10.0, abs=1e-6) and m[("a", "b")] > 0



def test_classical_codecs_hit_target_rates():
    rgb = make_image(96, 128, seed=3)
    codecs = ev.parse_classical("jpeg,webp,avif")
    assert codecs[:2] == ["jpeg", "webp"]
    with pytest.raises(EvaluationError):
        ev.parse_classical("jpeg,bogus")
    for codec in codecs:
        lo, hi = (ev.classical_at_rate(rgb, codec, t) for t in (0.5, 2.0))
        assert lo["bpp"] < hi["bpp"] and lo["psnr"] < hi["psnr"]
        assert hi["bpp"] == pytest.approx(2.0, rel=0.35), (codec, hi)



def small_settings():
    return ev.expand_grid(["none", "ssl"], [3], lmbda_scales=[0.5, 2.0])



def test_evaluate_records_and_resume_after_interruption(tmp_path, image_dir, tiny_model):
    inputs = expand_inputs([str(image_dir)])
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
    learned = [r for r in result.records if r.label != "jpeg"]
    assert len(learned) == total
    again = ev.evaluate(tiny_model, inputs, settings, records_path=records, classical=["jpeg"])
    assert again.computed == 0 and again.resumed == len(result.records)
    stored = ev.load_records(records)
    assert len(stored) == len(result.records) and len({r.key for r in stored}) == len(stored)
    ssl = next(r for r in stored if r.label == "ssl")
    assert ssl.history["step"] == [0, 1, 2, 3] and len(ssl.history["loss"]) == 4
    assert ssl.bpp == pytest.approx(8 * ssl.bytes / (64 * 80))
    assert ssl.loss <= ssl.base_loss + 1e-9

    rows = ev.aggregate(stored)
    none = [r for r in rows if r.label == "none"]
    assert {r.n for r in rows} == {2}
    mean_bpp = np.mean([r.bpp for r in stored if r.label == "none" and r.lmbda_scale == 2.0])
    assert next(r for r in none if r.rate == "x2").bpp == pytest.approx(mean_bpp)
    assert set(ev.curves_from_rows(rows)) == {"none", "ssl 3it budget", "JPEG"}
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
    assert (rec.height, rec.width) == (32, 32)
    assert center_crop(np.zeros((10, 40, 3), np.uint8), 16).shape == (10, 16, 3)



def test_rd_plot_shades_longer_runs_of_a_method_darker():
    from sgacodec.evaluation.plots import _iteration_shades

    shades = _iteration_shades(["none", "ssl 100it", "ssl 2000it", "ssl 500it", "atanh 500it",
                                   "ssl 500it tau0.5"])
    assert shades["ssl 100it"] < shades["ssl 500it"] < shades["ssl 2000it"] == 1.0
    assert shades["none"] == shades["atanh 500it"] == shades["ssl 500it tau0.5"] == 1.0



MEASURED = ("bytes", "bpp", "psnr", "ms_ssim", "loss", "base_bpp", "base_psnr", "steps_run", "target_bpp")



@pytest.fixture
def inputs(tmp_path):
    """Three 48x64 images, one 64x48, and a file that is no image."""
    paths = []
    for i, size in enumerate([(48, 64), (64, 48), (48, 64), (48, 64)]):
        paths.append(str(tmp_path / f"im{i}.png"))
        Image.fromarray(make_image(*size, seed=40 + i)).save(paths[-1])
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    return paths[:2] + [str(bad)] + paths[2:]



def settings():
    return ev.expand_grid(["none", "ste"], [4])



def by_setting(records):
    return {(r.image, r.tag): r for r in records}



def assert_same_results(records, reference):
    got, want = by_setting(records), by_setting(reference)
    assert got.keys() == want.keys()
    for k, rec in got.items():
        assert rec.key == want[k].key
        assert {f: getattr(rec, f) for f in MEASURED} == {f: getattr(want[k], f) for f in MEASURED}, k
        if rec.history:  # the device's float trajectory: a batch convolves in another order
            assert rec.history["step"] == want[k].history["step"]
            for f in ("loss", "bpp", "psnr"):
                assert rec.history[f] == pytest.approx(want[k].history[f], rel=1e-4)
        else:
            assert want[k].history is None



@pytest.mark.slow
def test_evaluate_in_batches_gives_the_records_of_one_image_at_a_time(inputs, tiny_model):
    tasks = []

    def on_task(description, total):
        tasks.append(description)
        return contextlib.nullcontext(None)

    alone = ev.evaluate(tiny_model, inputs, settings(), batch_size=1)
    batched = ev.evaluate(tiny_model, inputs, settings(), batch_size=2, progress=on_task)
    assert len(alone.records) == len(batched.records) == 4 * 2
    assert batched.failures == alone.failures and len(batched.failures) == 1  # reported once
    # per setting: the three 48x64 images in a batch of two and one of one; the 64x48 image alone
    assert len(tasks) == 2 * 3 and sum(d.endswith("(+1 more)") for d in tasks) == 2
    assert_same_results(batched.records, alone.records)
    assert all(r.seconds > 0 for r in batched.records)



def test_batched_evaluation_resumes_with_classical_codecs(tmp_path, inputs, tiny_model):
    records = tmp_path / "r.jsonl"

    def interrupt(record, report):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(tiny_model, inputs, settings(), records_path=records, batch_size=2, on_record=interrupt)
    assert len(ev.load_records(records)) == 2  # the first batch, written as soon as it finished

    result = ev.evaluate(tiny_model, inputs, settings(), records_path=records, batch_size=2,
                         classical=["jpeg"])
    assert result.resumed == 2 and result.computed == 4 * 2 - 2 + 4  # + one JPEG per image
    reference = ev.evaluate(tiny_model, inputs, settings(), batch_size=1, classical=["jpeg"])
    assert_same_results(result.records, reference.records)
    again = ev.evaluate(tiny_model, inputs, settings(), records_path=records, batch_size=2,
                        classical=["jpeg"])
    assert again.computed == 0 and again.resumed == len(result.records) == len(ev.load_records(records))


def test_records_are_typed_and_name_who_measured_them(tmp_path, image_dir, tiny_model):
    records = tmp_path / "r.jsonl"
    ev.evaluate(tiny_model, expand_inputs([str(image_dir)])[:1], ev.expand_grid(["ste"], [2]),
                records_path=records)
    [rec] = ev.load_records(records)
    assert isinstance(rec, ev.Record) and rec.label == "ste" and rec.steps_run == 2
    prov = rec.provenance
    import compressai

    assert prov.torch == torch.__version__ and prov.compressai == compressai.__version__
    assert prov.device.startswith("CPU") and prov.sgacodec and re.match(r"\d{4}-\d\d-\d\dT", prov.date)
    assert prov.commit is None or re.match(r"[0-9a-f]{40}(\+dirty)?$", prov.commit)
    again = ev.Record.from_dict(json.loads(records.read_text()))
    assert again == rec  # what is written is what is read
    old = json.loads(records.read_text())
    old.pop("provenance")
    old["unknown_field"] = 1  # older and newer records load too
    assert ev.Record.from_dict(old).provenance is None


def test_pending_counts_only_what_the_records_file_lacks(tmp_path, image_dir, tiny_model):
    inputs = expand_inputs([str(image_dir)])
    records = tmp_path / "r.jsonl"
    settings = ev.expand_grid(["none", "ste"], [2, 3])
    run = ev.Evaluation(tiny_model, inputs, settings, records_path=records)
    assert len(run.pending()) == len(inputs) * 2  # 'none' is no refinement
    ev.evaluate(tiny_model, inputs[:1], ev.expand_grid(["ste"], [2]), records_path=records)
    assert len(ev.Evaluation(tiny_model, inputs, settings, records_path=records).pending()) == len(inputs) * 2 - 1


def test_the_loss_figure_averages_every_model_at_its_own_lambda():
    def rec(model, image, loss):
        return ev.Record(key=f"{model}{image}", image=image, crop=0, model=model, model_sha=model, label="ssl",
                         tag="ssl", height=8, width=8, bytes=1, bpp=0.1, psnr=30.0, lmbda_scale=1.0,
                         iterations=2, history={"step": [0, 1, 2], "loss": [loss, loss - 1, loss - 2],
                                                "bpp": [0, 0, 0], "psnr": [0, 0, 0]})

    hist = ev.mean_histories([rec("a", "1", 10.0), rec("a", "2", 20.0), rec("b", "1", 30.0)])
    assert hist["ssl 2it"] == ([0, 1, 2], [20.0, 19.0, 18.0])


def test_rate_against_the_published_mbt2018_mean_curve():
    """One model's rate at equal PSNR against CompressAI's published curve (log-rate interpolation):
    zero on the curve's own points, and msh-q2's manifest figures give the +118.8% of issue 13."""
    from sgacodec.evaluation.published import inside_published_range, rate_vs_published
    from sgacodec.models.zoo_table import ZOO

    published = ZOO["mbt2018-mean"].published
    for bpp, psnr in published.values():
        assert rate_vs_published(bpp, psnr) == pytest.approx(0.0, abs=1e-9)
    assert rate_vs_published(0.4188, 29.24) == pytest.approx(118.8, abs=0.05)
    halfway = (published[2][0] * published[3][0]) ** 0.5, (published[2][1] + published[3][1]) / 2
    assert rate_vs_published(*halfway) == pytest.approx(0.0, abs=1e-9)  # geometric mean of the rates
    assert rate_vs_published(0.2, 31.0) < 0 < rate_vs_published(0.4, 31.0)
    assert inside_published_range(29.24) and not inside_published_range(26.43)


def test_schedules_in_a_grid_keep_the_paper_records_keys(tiny_model):
    grid = ev.expand_grid(["none", "ssl"], [50, 3000], schedules=["paper", "budget", "auto"])
    labels = [(s.label, s.iterations, s.effective_schedule) for s in grid]
    assert len(labels) == len(set(labels))  # auto is budget at 50 and paper at 3000: no repeats
    assert ("ssl", 50, "budget") in labels and ("ssl", 3000, "paper") in labels
    assert len({s.tag() for s in grid}) == len(grid)
    paper, budget = (ev.Setting("ssl", 50, schedule=k) for k in ("paper", "budget"))
    key = ev.record_key("a.png", 0, "ab", paper, 0.01, paper.config(RefineConfig()))
    assert "schedule" not in json.loads(key)  # records made before schedules existed still resume
    assert json.loads(ev.record_key("a.png", 0, "ab", budget, 0.01, budget.config(RefineConfig())))["schedule"] == \
        "budget"
    assert ev.curve_name("ssl", 50, None, "budget") == "ssl 50it budget" != ev.curve_name("ssl", 50)


def test_write_section_replaces_between_its_markers_or_appends(tmp_path):
    from sgacodec.evaluation.records import write_section

    page = tmp_path / "page.md"
    page.write_text("# Title\n\n<!-- b -->\nold\n<!-- e -->\n\nafter\n")
    write_section(page, "<!-- b -->\nnew\n<!-- e -->", "<!-- b -->", "<!-- e -->")
    assert page.read_text() == "# Title\n\n<!-- b -->\nnew\n<!-- e -->\n\nafter\n"
    write_section(page, "<!-- x -->\nmore\n<!-- y -->", "<!-- x -->", "<!-- y -->")
    assert page.read_text().endswith("after\n\n<!-- x -->\nmore\n<!-- y -->\n")
