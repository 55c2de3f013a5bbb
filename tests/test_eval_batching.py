"""Batched evaluation and parallel entropy coding: faster, with the results of one image at a time."""

import contextlib
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from sgacodec import codec
from sgacodec import evaluate as ev
from sgacodec.hyperprior import LatentModel

from .conftest import make_image

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
    return {(r["image"], r["tag"]): r for r in records}


def assert_same_results(records, reference):
    got, want = by_setting(records), by_setting(reference)
    assert got.keys() == want.keys()
    for k, rec in got.items():
        assert set(rec) == set(want[k]) and rec["key"] == want[k]["key"]
        assert {f: rec.get(f) for f in MEASURED} == {f: want[k].get(f) for f in MEASURED}, k
        if rec["history"]:  # the device's float trajectory: a batch convolves in another order
            assert rec["history"]["step"] == want[k]["history"]["step"]
            for f in ("loss", "bpp", "psnr"):
                assert rec["history"][f] == pytest.approx(want[k]["history"][f], rel=1e-4)
        else:
            assert want[k]["history"] is None


def test_evaluate_in_batches_gives_the_records_of_one_image_at_a_time(inputs, tiny_model):
    tasks = []

    def on_task(description, total):
        tasks.append(description)
        return contextlib.nullcontext(None)

    alone = ev.evaluate(tiny_model, inputs, settings(), batch_size=1)
    batched = ev.evaluate(tiny_model, inputs, settings(), batch_size=2, on_task=on_task)
    assert len(alone.records) == len(batched.records) == 4 * 2
    assert batched.failures == alone.failures and len(batched.failures) == 1  # reported once
    # per setting: the three 48x64 images in a batch of two and one of one; the 64x48 image alone
    assert len(tasks) == 2 * 3 and sum(d.endswith("(+1 more)") for d in tasks) == 2
    assert_same_results(batched.records, alone.records)
    assert all(r["seconds"] > 0 for r in batched.records)


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


def test_parallel_coding_gives_the_bytes_of_coding_each_image_alone(tiny_model, monkeypatch):
    images = [make_image(48, 64, seed=s) for s in (50, 51, 52)]
    lm = codec.device_model(tiny_model, torch.device("cpu"))
    with torch.no_grad():
        y, z = lm.analysis(torch.cat([codec.pad(codec.to_tensor(im)) for im in images]))
    alone = [codec.code_latents(tiny_model, y[i : i + 1], z[i : i + 1], (48, 64))[0] for i in range(3)]

    seen = []
    real = LatentModel.compress_latents

    def spy(self, y, z):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return real(self, y, z)

    monkeypatch.setattr(LatentModel, "compress_latents", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        together = codec.code_latents(tiny_model, y, z, (48, 64))
        assert torch.get_num_threads() == 2  # restored after the pool
    finally:
        torch.set_num_threads(before)
    for (data, rgb), (data_alone, rgb_alone) in zip(together, alone):
        assert data == data_alone and np.array_equal(rgb, rgb_alone)
    assert [n for _, n in seen] == [1, 1, 1]  # every worker codes on one torch thread
    if codec.CODING_THREADS > 1:
        assert all(name.startswith("sgacodec-coding") for name, _ in seen)


def test_automatic_batches_fill_the_megapixel_budget():
    images = [np.zeros((512, 768, 3), np.uint8)] * 40 + [np.zeros((768, 512, 3), np.uint8)] * 2
    batches = codec.batches_by_size(images, None)
    assert [len(b) for b in batches] == [30, 10, 2]  # 12 MP / (768 x 512) = 30
    assert [len(b) for b in codec.batches_by_size(images, 16)] == [16, 16, 8, 2]


def test_refine_cli_passes_the_batch_size(tmp_path, inputs, tiny_checkpoint, monkeypatch):
    from click.testing import CliRunner

    from sgacodec.cli import main

    seen = []
    real = ev.evaluate

    def spy(*args, batch_size=None, **kwargs):
        seen.append(batch_size)
        return real(*args, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(ev, "evaluate", spy)
    for extra in ([], ["--batch-size", "3"]):
        res = CliRunner().invoke(main, ["refine", *inputs[:2], "--checkpoint", str(tiny_checkpoint),
                                        "--method", "none", "--device", "cpu", *extra])
        assert res.exit_code == 0, res.output
    assert seen == [None, 3]  # None: evaluate() picks (one image at a time on a CPU)
