"""sgacodec encode: the acceptance run, many inputs, pipelines, batches, outputs never lost or overwritten."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sgacodec import metrics
from sgacodec.cli import main
from sgacodec.codec.decoder import decode
from sgacodec.models.checkpoints import load_checkpoint
from sgacodec.network.latent_model import LatentModel

from .support import cli, invoke, leftovers, make_image, raw_png, saved

RGB = make_image(24, 32, seed=5)

def test_encode_333x217_then_decode_matches_the_report(tmp_path, png_333x217, tiny_checkpoint):
    out = tmp_path / "img.bin"
    res = cli("encode", png_333x217, "-o", out, "--checkpoint", tiny_checkpoint, "--iterations", 50,
              "--json")
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("bpp", "psnr", "base_bpp", "base_psnr", "loss", "base_loss"):
        assert isinstance(record[key], float)
    png = tmp_path / "decoded.png"
    res = cli("decode", out, "-o", png, "--checkpoint", tiny_checkpoint)
    assert res.exit_code == 0, res.output
    decoded = np.asarray(Image.open(png))
    original = np.asarray(Image.open(png_333x217))
    assert decoded.shape == (217, 333, 3)
    assert abs(metrics.psnr(original, decoded) - record["psnr"]) < 0.01
    assert record["bpp"] == pytest.approx(8 * out.stat().st_size / (333 * 217))



def test_many_inputs_into_a_directory_and_back(tmp_path, tiny_checkpoint):
    from .support import make_image

    for i in range(2):
        Image.fromarray(make_image(40 + i, 50, seed=i)).save(tmp_path / f"in{i}.png")
    res = cli("encode", tmp_path / "in0.png", tmp_path / "in1.png", "-o", tmp_path / "coded",
              "--checkpoint", tiny_checkpoint, "--method", "none")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "coded").iterdir()) == ["in0.bin", "in1.bin"]
    res = cli("decode", *sorted((tmp_path / "coded").iterdir()), "-o", tmp_path / "out",
              "--checkpoint", tiny_checkpoint)
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "out" / "in1.png").size == (50, 41)



def test_stdin_to_stdout(png_333x217, tiny_checkpoint):
    res = CliRunner().invoke(main, ["encode", "-", "-o", "-", "--checkpoint", str(tiny_checkpoint),
                                    "--method", "none"], input=png_333x217.read_bytes())
    assert res.exit_code == 0
    assert res.stdout_bytes.startswith(b"SGAC")



def test_inputs_and_existing_outputs_are_never_overwritten(tmp_path, png_333x217, tiny_checkpoint):
    before = png_333x217.read_bytes()
    res = CliRunner().invoke(main, ["encode", str(png_333x217), "-o", str(png_333x217),
                                    "--checkpoint", str(tiny_checkpoint)])
    assert res.exit_code != 0 and "input" in res.output
    assert png_333x217.read_bytes() == before
    existing = tmp_path / "exists.bin"
    existing.write_bytes(b"keep me")
    res = CliRunner().invoke(main, ["encode", str(png_333x217), "-o", str(existing),
                                    "--checkpoint", str(tiny_checkpoint), "--method", "none"])
    assert res.exit_code != 0 and "--force" in res.output
    assert existing.read_bytes() == b"keep me"



def bad_inputs(tmp_path, png):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(png.read_bytes()[:200])
    return [tmp_path / "missing.png", text, truncated]



def test_bad_images_give_one_line_and_nonzero_exit(tmp_path, png_333x217, tiny_checkpoint):
    for bad in bad_inputs(tmp_path, png_333x217):
        res = CliRunner().invoke(main, ["encode", str(bad), "-o", str(tmp_path / "o.bin"),
                                        "--checkpoint", str(tiny_checkpoint), "--method", "none"])
        assert res.exit_code == 1, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit)
        assert "error" in res.output and "Traceback" not in res.output
        assert not (tmp_path / "o.bin").exists()



def test_cli_encode_batches_same_size_images_and_keeps_per_file_results(tmp_path, tiny_checkpoint):
    from sgacodec.cli import main

    sizes = [(48, 64), (64, 48), (48, 64), (48, 64)]
    paths = []
    for i, size in enumerate(sizes):
        paths.append(tmp_path / f"in{i}.png")
        Image.fromarray(make_image(*size, seed=20 + i)).save(paths[-1])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    inputs = [paths[0], paths[1], bad, paths[2], paths[3]]
    calls = []
    import sgacodec.codec.batching as pipeline

    original = pipeline.encode_batch

    def spy(model, images, *args, **kwargs):
        calls.append([im.shape[:2] for im in images])
        return original(model, images, *args, **kwargs)

    pipeline.encode_batch = spy
    try:
        res = CliRunner().invoke(main, ["encode", *map(str, inputs), "-o", str(tmp_path / "coded"),
                                        "--checkpoint", str(tiny_checkpoint), "--iterations", "5",
                                        "--batch-size", "2", "--json"], catch_exceptions=False)
    finally:
        pipeline.encode_batch = original
    assert res.exit_code == 1 and "bad.png" in res.stderr
    # three 48x64 images: one batch of two, one of one; the 64x48 one alone
    assert sorted(map(len, calls)) == [1, 1, 2]
    assert all(len(set(c)) == 1 for c in calls)
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [Path(r["input"]).name for r in records] == ["in0.png", "in1.png", "in2.png", "in3.png"]
    assert sorted(p.name for p in (tmp_path / "coded").iterdir()) == [f"in{i}.bin" for i in range(4)]
    from sgacodec.models.checkpoints import load_checkpoint

    model = load_checkpoint(tiny_checkpoint)
    for r in records:
        rgb, _, _ = decode(Path(r["output"]).read_bytes(), model)
        assert rgb.shape[:2] == (r["height"], r["width"])



def test_existing_outputs_need_force_even_when_they_appear_during_the_encode(tmp_path, png, tiny_checkpoint,
                                                                            monkeypatch):
    import sgacodec.codec.batching

    out = tmp_path / "out.bin"
    real = sgacodec.codec.batching.encode_batch

    def encode_while_someone_writes(*args, **kwargs):
        out.write_bytes(b"written meanwhile")
        return real(*args, **kwargs)

    monkeypatch.setattr(sgacodec.codec.batching, "encode_batch", encode_while_someone_writes)
    res = invoke("encode", png, "-o", out, "--checkpoint", tiny_checkpoint, "--method", "none")
    assert res.exit_code == 1 and "--force" in res.output
    assert out.read_bytes() == b"written meanwhile" and not leftovers(tmp_path)
    monkeypatch.setattr(sgacodec.codec.batching, "encode_batch", real)
    res = invoke("encode", png, "-o", out, "--checkpoint", tiny_checkpoint, "--method", "none", "--force")
    assert res.exit_code == 0 and out.read_bytes().startswith(b"SGAC")



def test_an_input_is_never_an_output(tmp_path, png, tiny_checkpoint):
    res = invoke("encode", png, "-o", tmp_path / "a.bin", "--checkpoint", tiny_checkpoint, "--method", "none")
    assert res.exit_code == 0
    data = (tmp_path / "a.bin").read_bytes()
    for args in (("decode", tmp_path / "a.bin", "-o", tmp_path / "a.bin", "--force"),
                 ("encode", png, "-o", png, "--force", "--checkpoint", tiny_checkpoint)):
        res = invoke(*args)
        assert res.exit_code == 1 and "input" in res.output
    link = tmp_path / "link.png"
    link.symlink_to(png)
    res = invoke("encode", png, "-o", link, "--force", "--checkpoint", tiny_checkpoint)
    assert res.exit_code == 1 and "input" in res.output
    assert (tmp_path / "a.bin").read_bytes() == data and png.read_bytes()[:4] == b"\x89PNG"



def test_a_folder_encode_continues_past_bad_files_and_lists_them_at_the_end(tmp_path, tiny_checkpoint):
    inputs = []
    for i, kind in enumerate(["good", "text", "good", "empty", "good"]):
        path = tmp_path / f"{i}-{kind}.png"
        if kind == "good":
            Image.fromarray(make_image(30 + i, 40, seed=i)).save(path)
        else:
            path.write_bytes(b"" if kind == "empty" else b"not an image")
        inputs.append(path)
    res = invoke("encode", *inputs, tmp_path / "missing.png", "-o", tmp_path / "coded",
                 "--checkpoint", tiny_checkpoint, "--method", "none")
    assert res.exit_code == 1
    tail = res.output.strip().splitlines()[-4:]
    assert tail[0] == "sgacodec: error: 3 of 6 inputs failed:"
    assert [line.split(":")[0].strip() for line in tail[1:]] == \
        [str(tmp_path / n) for n in ("1-text.png", "3-empty.png", "missing.png")]
    assert sorted(p.name for p in (tmp_path / "coded").iterdir()) == ["0-good.bin", "2-good.bin", "4-good.bin"]
    # and the decode of a folder with a damaged file among good ones
    damaged = tmp_path / "coded" / "2-good.bin"
    damaged.write_bytes(damaged.read_bytes()[:-3])
    res = invoke("decode", *sorted((tmp_path / "coded").iterdir()), "-o", tmp_path / "decoded",
                 "--checkpoint", tiny_checkpoint)
    assert res.exit_code == 1 and res.output.strip().splitlines()[-2:] == [
        "sgacodec: error: 1 of 3 inputs failed:",
        f"  {damaged}: corrupted file: checksum mismatch (truncated or altered)"]
    assert sorted(p.name for p in (tmp_path / "decoded").iterdir()) == ["0-good.png", "4-good.png"]



def test_gpu_out_of_memory_falls_back_to_the_cpu(tmp_path, png, tiny_checkpoint, monkeypatch):
    """No GPU here: a fake CUDA device whose refinement always runs out of memory."""
    import sgacodec.codec.batching
    import sgacodec.codec.devices

    real = sgacodec.codec.batching.encode_batch
    devices = []

    def encode_on(model, images, config, device="cpu", *args, **kwargs):
        devices.append(torch.device(device).type)
        if torch.device(device).type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, images, config, device, *args, **kwargs)

    for module in (sgacodec.codec.devices, sgacodec.codec.batching):  # the CLI's and the encoder's
        monkeypatch.setattr(module, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(sgacodec.codec.devices, "device_model", lambda model, device, *a: LatentModel(model.net))
    monkeypatch.setattr(sgacodec.codec.batching, "encode_batch", encode_on)
    out = tmp_path / "out.bin"
    res = invoke("encode", png, "-o", out, "--checkpoint", tiny_checkpoint, "--iterations", 3, "--json")
    assert res.exit_code == 0, res.output
    assert "GPU out of memory" in res.output and "on the CPU" in res.output
    assert devices[0] == "cuda" and devices[-1] == "cpu"
    rgb, _, _ = decode(out.read_bytes(), load_checkpoint(tiny_checkpoint))
    assert rgb.shape == (40, 56, 3)



def test_unexpected_errors_are_one_line_and_the_batch_goes_on(tmp_path, tiny_checkpoint, monkeypatch):
    import sgacodec.codec.batching

    real = sgacodec.codec.batching.encode_batch
    calls = []

    def flaky(model, images, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("a bug\nwith a second line")
        return real(model, images, *args, **kwargs)

    monkeypatch.setattr(sgacodec.codec.batching, "encode_batch", flaky)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"i{i}.png")
        Image.fromarray(make_image(20 + i, 20, seed=i)).save(paths[-1])
    res = invoke("encode", *paths, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint, "--method", "none")
    assert res.exit_code == 1
    assert f"  {paths[0]}: TypeError: a bug" in res.output.splitlines()
    assert (tmp_path / "out" / "i1.bin").exists() and not (tmp_path / "out" / "i0.bin").exists()



def test_bad_images_through_the_cli(tmp_path, tiny_checkpoint):
    cases = {"empty.png": b"", "notes.txt": b"plain text", "cut.jpg": saved(Image.fromarray(RGB), "JPEG")[:300],
             "bomb.png": raw_png(100_000, 100_000, 8, 2)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        res = CliRunner().invoke(main, ["encode", str(tmp_path / name), "-o", str(tmp_path / "o.bin"),
                                        "--checkpoint", str(tiny_checkpoint), "--method", "none"])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("sgacodec: error: "), res.output
        assert name in lines[0] and not (tmp_path / "o.bin").exists()



def test_an_rgba_png_through_the_cli_round_trips_with_a_note(tmp_path, tiny_checkpoint):
    """Alpha is kept losslessly by default (decoded to RGBA) and said; --alpha drop drops it."""
    import json

    from sgacodec import metrics

    alpha = (np.arange(RGB.shape[0] * RGB.shape[1]) % 251).astype(np.uint8).reshape(RGB.shape[:2])
    Image.fromarray(np.dstack([RGB, alpha]), "RGBA").save(tmp_path / "a.png")
    for flag, kept in (("keep", True), ("drop", False)):
        res = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.bin"), "--force",
                                        "--checkpoint", str(tiny_checkpoint), "--iterations", "2", "--json",
                                        "--alpha", flag])
        assert res.exit_code == 0 and ("kept alpha" if kept else "dropped alpha") in res.output, res.output
        record = json.loads([line for line in res.output.splitlines() if line.startswith("{")][-1])
        res = CliRunner().invoke(main, ["decode", str(tmp_path / "a.bin"), "-o", str(tmp_path / "b.png"),
                                        "--checkpoint", str(tiny_checkpoint), "--force"])
        assert res.exit_code == 0
        decoded = np.asarray(Image.open(tmp_path / "b.png"))
        assert decoded.shape == RGB.shape[:2] + ((4,) if kept else (3,))
        assert metrics.psnr(RGB, np.ascontiguousarray(decoded[..., :3])) == pytest.approx(record["psnr"], abs=1e-6)
        if kept:
            assert np.array_equal(decoded[..., 3], alpha)



def test_cpu_refinement_says_roughly_how_long_it_will_take(tmp_path, png_333x217, tiny_checkpoint):

    res = cli("encode", png_333x217, "-o", tmp_path / "a.bin", "--checkpoint", tiny_checkpoint,
              "--iterations", 3, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert re.search(r"Refining on the CPU: 1 refinement\(s\) of 3 iterations, roughly \d+ s in all "
                     r"\([\d.]+ s per iteration\)\. Shorten with --iterations", res.stderr), res.stderr
    # refine: every image, setting and model counts; the probe runs on the cropped first image
    res = cli("refine", png_333x217, "--checkpoint", tiny_checkpoint, "--method", "none", "--method",
              "ssl", "--method", "atanh", "--iterations", 2, "--iterations", 4, "--crop", 64,
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert re.search(r"Refining on the CPU: 4 refinement\(s\) of 2 / 4 iterations, roughly \d+ s in all",
                     res.stderr), res.stderr
    res = cli("encode", png_333x217, "-o", tmp_path / "b.bin", "--checkpoint", tiny_checkpoint,
              "--method", "none", "--device", "cpu")
    assert res.exit_code == 0 and "Refining on the CPU" not in res.stderr


@pytest.mark.parametrize("option", [("--lmbda", "nan"), ("--lmbda", "inf"), ("--lmbda", "-1"), ("--lmbda", "0"),
                                    ("--lr", "nan"), ("--tau-max", "inf"), ("--time-budget", "-5"),
                                    ("--a", "nan")])
def test_non_finite_or_negative_settings_are_refused_before_any_work(tmp_path, png, tiny_checkpoint,
                                                                    monkeypatch, option):
    import sgacodec.codec.batching
    from sgacodec.config import RefineConfig

    monkeypatch.setattr(sgacodec.codec.batching, "encode_batch", lambda *a, **k: pytest.fail("encoded"))
    res = invoke("encode", png, "-o", tmp_path / "a.bin", "--checkpoint", tiny_checkpoint, *option)
    assert res.exit_code == 1 and option[0][2:] in res.output and "Traceback" not in res.output, res.output
    name = option[0][2:].replace("-", "_")
    with pytest.raises(ValueError, match=option[0][2:]):  # the library refuses too
        RefineConfig(**{name: float(option[1])})


def test_effort_presets_and_explicit_iterations(tmp_path, png, tiny_checkpoint):
    import sgacodec.config as cfg

    res = cli("encode", png, "-o", tmp_path / "a.bin", "--checkpoint", tiny_checkpoint, "--effort", 1, "--json",
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["iterations"] == cfg.EFFORT_ITERATIONS[1]
    res = cli("encode", png, "-o", tmp_path / "b.bin", "--checkpoint", tiny_checkpoint, "--effort", 9,
              "--iterations", 3, "--json", "--device", "cpu")
    assert res.exit_code == 0 and json.loads(res.stdout)["iterations"] == 3  # --iterations wins
    res = invoke("encode", png, "-o", tmp_path / "c.bin", "--checkpoint", tiny_checkpoint, "--effort", 10)
    assert res.exit_code == 2


def test_on_a_cpu_the_default_is_a_time_budget_and_says_so(tmp_path, png, tiny_checkpoint, monkeypatch):
    import sgacodec.config as cfg
    from sgacodec.refinement import schedules

    monkeypatch.setattr(schedules, "CPU_TIME_BUDGET", 1.0)  # a minute by default; a second here
    res = cli("encode", png, "-o", tmp_path / "a.bin", "--checkpoint", tiny_checkpoint, "--json", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "each image is refined for about 1 s" in res.stderr
    record = json.loads(res.stdout)
    assert 0 < record["iterations"] < cfg.PAPER_ITERATIONS
    res = cli("encode", png, "-o", tmp_path / "b.bin", "--checkpoint", tiny_checkpoint, "--iterations", 2,
              "--device", "cpu")
    assert res.exit_code == 0 and "refined for about" not in res.stderr
def test_encode_to_a_target_bpp_reports_the_search(tmp_path, tiny_checkpoint):
    Image.fromarray(make_image(64, 96, seed=3)).save(tmp_path / "in.png")
    out = tmp_path / "in.bin"
    res = cli("encode", tmp_path / "in.png", "-o", out, "--checkpoint", tiny_checkpoint, "--iterations", 10,
              "--target-bpp", 0.45, "--json")
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)
    assert record["target"] == {"kind": "bpp", "value": 0.45}
    for key in ("achieved", "model", "lmbda", "refinements", "search_iterations", "status", "met"):
        assert key in record
    assert record["met"] and record["achieved"] == record["bpp"] <= 0.45
    assert 8 * out.stat().st_size / (64 * 96) == pytest.approx(record["bpp"]) and "target 0.45 bpp" in res.stderr
    assert "Shorten with --effort" in res.stderr and "--time-budget" not in res.stderr  # a search takes none


def test_encode_target_out_of_reach_exits_non_zero_only_with_strict(tmp_path, tiny_checkpoint):
    Image.fromarray(make_image(64, 96, seed=3)).save(tmp_path / "in.png")
    args = ["encode", tmp_path / "in.png", "--checkpoint", tiny_checkpoint, "--iterations", 4, "--target-bpp", 0.01]
    res = cli(*args, "-o", tmp_path / "a.bin")
    assert res.exit_code == 0, res.output
    assert "out of reach" in res.stderr and "below the lowest rate" in res.stderr
    assert (tmp_path / "a.bin").exists()
    res = invoke(*args, "-o", tmp_path / "b.bin", "--strict")
    assert res.exit_code == 1 and "out of reach" in res.stderr
    assert not (tmp_path / "b.bin").exists()


@pytest.mark.parametrize("extra, message", [
    (["--target-bpp", 0.3, "--target-psnr", 30], "one target at a time"),
    (["--target-size", 900, "--lmbda", 0.01], "drop --lmbda"),
    (["--target-psnr", 30, "--time-budget", 5], "--time-budget"),
    (["--strict"], "--strict applies to a target"),
    (["--target-bpp", 0], "--target-bpp"),
    (["--target-size", 12.5], "--target-size"),
])
def test_encode_target_option_errors(tmp_path, png, tiny_checkpoint, extra, message):
    res = invoke("encode", png, "-o", tmp_path / "x.bin", "--checkpoint", tiny_checkpoint, *extra)
    assert res.exit_code != 0 and message in res.output, res.output
    assert not (tmp_path / "x.bin").exists()
