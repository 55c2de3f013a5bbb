"""The command line: the issue's acceptance run, pipelines, and clear errors on bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sgacodec import metrics
from sgacodec.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


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


def test_outputs_get_ordinary_file_permissions(tmp_path, png_333x217, tiny_checkpoint):
    import stat

    out = tmp_path / "perm.bin"
    old = os.umask(0o022)
    try:
        assert cli("encode", png_333x217, "-o", out, "--checkpoint", tiny_checkpoint,
                   "--method", "none").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_cpu_refinement_says_roughly_how_long_it_will_take(tmp_path, png_333x217, tiny_checkpoint):
    import re

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


def test_refine_without_a_known_lambda_says_so(tmp_path, png_333x217, tiny_checkpoint):
    import torch

    bare = tmp_path / "bare.pth"  # a state dict alone: the training lambda is unknown
    torch.save(torch.load(tiny_checkpoint, weights_only=True)["state_dict"], bare)
    res = CliRunner().invoke(main, ["refine", str(png_333x217), "--checkpoint", str(bare), "--method",
                                    "ssl", "--iterations", "2", "--device", "cpu"])
    assert res.exit_code != 0
    assert isinstance(res.exception, SystemExit), repr(res.exception)  # a clean exit, no crash
    assert "lambda" in res.output, res.output


def test_refine_compares_methods_and_logs(tmp_path, png_333x217, tiny_checkpoint):
    log = tmp_path / "trajectory.csv"
    res = cli("refine", png_333x217, "--checkpoint", tiny_checkpoint, "--method", "ssl",
              "--method", "atanh", "--iterations", 5, "--json", "--log", log)
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["method"] for r in records] == ["ssl", "atanh"]
    rows = log.read_text().splitlines()
    assert rows[0] == "input,method,step,loss,bpp,psnr" and len(rows) == 1 + 2 * 6
    assert not list(tmp_path.glob("*.bin"))  # refine writes no bitstream unless asked


def test_many_inputs_into_a_directory_and_back(tmp_path, tiny_checkpoint):
    from .conftest import make_image

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


def run_process(*args, stdin=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / "bin" / "sgacodec"), *map(str, args)],
                          capture_output=True, input=stdin, env=env, timeout=300)


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


def test_bad_bitstreams_in_a_real_process(tmp_path, png_333x217, tiny_checkpoint):
    good = tmp_path / "good.bin"
    assert cli("encode", png_333x217, "-o", good, "--checkpoint", tiny_checkpoint,
               "--method", "none").exit_code == 0
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(png_333x217.read_bytes())
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good.read_bytes()[:-10])
    for bad in (foreign, truncated, tmp_path / "missing.bin"):
        res = run_process("decode", bad, "-o", tmp_path / "x.png", "--checkpoint", tiny_checkpoint)
        err = res.stderr.decode()
        assert res.returncode == 1, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x.png").exists()


def test_help_and_usage_errors():
    res = run_process("--help")
    assert res.returncode == 0 and b"encode" in res.stdout
    res = run_process("encode", "x.png", "--method", "bogus")
    assert res.returncode == 2 and b"Traceback" not in res.stderr
    res = run_process("encode", "x.png", "--method", "atanh", "--three-class", "--model", "x")
    assert res.returncode == 1 and b"three-class" in res.stderr
