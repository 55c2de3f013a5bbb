"""sgacodec on a Ray cluster (ray_pipeline): the same bytes and records as a local run, a killed
worker losing nothing, resume; folders and globs as encode's inputs. The Ray tests run on a local
Ray of 2 CPUs (skipped, with the reason, where Ray is not installed; CI installs the extra)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from sgacodec.files.outputs import atomic_write, remove_leftovers

from .support import cli, invoke, leftovers, save_png

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install 'sgacodec[ray]'; CI installs it)")
TIMING = ("seconds",)  # the only record fields that differ between runs


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 2 CPUs for the module: sgacodec uses the Ray this process is connected to."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def six_images(tmp_path):
    """6 small images in a folder, in two sizes (same-size batching has something to do)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        save_png(folder / f"im{i}.png", 40 + 8 * (i % 2), 56, seed=i)
    return folder


def records(stdout: str) -> dict[str, dict]:
    """--json lines by input, without the timing fields."""
    out = {}
    for line in stdout.strip().splitlines():
        record = json.loads(line)
        out[record["input"]] = {k: v for k, v in record.items() if k not in TIMING and k != "output"}
    return out


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_without_ray_installed_ray_says_how_to_install_it(png, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # import ray raises ImportError
    res = invoke("encode", png, "-o", png.with_suffix(".bin"), "--ray")
    assert res.exit_code == 1
    assert res.output.strip() == "sgacodec: error: --ray needs Ray, an optional dependency: pip install 'sgacodec[ray]'"


def test_leftovers_of_writes_cut_short_are_removed(tmp_path):
    atomic_write(tmp_path / "a.bin", b"done")
    for name in (".a.bin.k3j_x9q2.part", ".b.bin.0000abcd.part", ".other.bin.zzzzzzzz.part"):
        (tmp_path / name).write_bytes(b"half")
    assert remove_leftovers([str(tmp_path / "a.bin"), str(tmp_path / "b.bin")]) == 2
    assert leftovers(tmp_path) == [".other.bin.zzzzzzzz.part"]  # not one of ours: kept
    assert (tmp_path / "a.bin").read_bytes() == b"done"


def test_a_folder_or_glob_input_encodes_into_a_directory(tmp_path, tiny_checkpoint):
    (tmp_path / "one").mkdir()
    save_png(tmp_path / "one" / "only.png", 24, 32)
    res = cli("encode", tmp_path / "one", "-o", tmp_path / "coded", "--checkpoint", tiny_checkpoint,
              "--method", "none")
    assert res.exit_code == 0, res.output
    assert files(tmp_path / "coded").keys() == {"only.bin"}  # a directory even for one image
    res = cli("encode", str(tmp_path / "one" / "*.png"), "-o", tmp_path / "globbed/", "--checkpoint",
              tiny_checkpoint, "--method", "none")
    assert res.exit_code == 0, res.output
    assert files(tmp_path / "globbed") == files(tmp_path / "coded")


@needs_ray
@pytest.mark.slow
@pytest.mark.parametrize("method", [["--method", "none"], ["--method", "ssl", "--iterations", "3", "--seed", "7"]],
                         ids=["none", "ssl-seed7"])
def test_a_two_worker_ray_run_gives_the_local_bytes_and_records(tmp_path, six_images, tiny_checkpoint, ray_cluster,
                                                                method):
    common = ["--checkpoint", tiny_checkpoint, *method, "--json"]
    local = cli("encode", six_images, "-o", tmp_path / "local", *common)
    assert local.exit_code == 0, local.output
    on_ray = cli("encode", six_images, "-o", tmp_path / "ray", *common, "--ray", "--workers", 2)
    assert on_ray.exit_code == 0, on_ray.output
    assert len(files(tmp_path / "ray")) == 6
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    assert records(on_ray.stdout) == records(local.stdout)
    assert len(on_ray.stdout.strip().splitlines()) == 6  # only the records on stdout


@needs_ray
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_killed_mid_run_loses_nothing(tmp_path, six_images, tiny_model, ray_cluster, monkeypatch, workers):
    """The first worker to write an output exits at once (os._exit, as when killed); its unit runs
    again (with one worker: on that worker, restarted by Ray): every image has its file and its
    record, none half-written."""
    from sgacodec.cluster.encoding import EXIT_ONCE_ENV, RayEncoder
    from sgacodec.codec.batching import BatchEncoder
    from sgacodec.config import RefineConfig
    from sgacodec.files.images import expand_inputs, read_image
    from sgacodec.files.outputs import plan_outputs

    marker = tmp_path / "killed"
    monkeypatch.setenv(EXIT_ONCE_ENV, str(marker))  # SGACODEC_* variables reach the workers
    paths = expand_inputs([str(six_images)])
    outputs = plan_outputs(paths, str(tmp_path / "coded"), ".bin")
    (tmp_path / "coded" / ".im0.bin.abcd1234.part").write_bytes(b"a write cut short by an earlier kill")
    config = RefineConfig(method="none")
    outcomes = list(RayEncoder(tiny_model, config, workers=workers).encode_files(paths, outputs))
    assert marker.exists()  # a worker did die
    assert sorted(o.index for o in outcomes) == list(range(6))
    assert all(o.error is None and o.record is not None for o in outcomes), [o.error for o in outcomes]
    assert leftovers(tmp_path / "coded") == []
    local = [o.report for o in BatchEncoder(tiny_model, config, "cpu").encode_sources(paths, read_image)]
    for outcome in outcomes:
        assert Path(outcome.output).read_bytes() == local[outcome.index].data
        assert outcome.record["bytes"] == len(local[outcome.index].data)


@needs_ray
@pytest.mark.slow
def test_a_rerun_on_ray_skips_finished_outputs(tmp_path, six_images, tiny_checkpoint, ray_cluster):
    common = ["--checkpoint", tiny_checkpoint, "--method", "none", "--json", "--ray"]
    first = cli("encode", six_images, "-o", tmp_path / "coded", *common)
    assert first.exit_code == 0, first.output
    before = {name: os.stat(tmp_path / "coded" / name).st_ino for name in files(tmp_path / "coded")}
    first_bytes = files(tmp_path / "coded")
    (tmp_path / "coded" / "im2.bin").unlink()  # as if the run had stopped before it
    (tmp_path / "coded" / "im5.bin").unlink()
    again = cli("encode", six_images, "-o", tmp_path / "coded", *common)
    assert again.exit_code == 0, again.output
    lines = [json.loads(line) for line in again.stdout.strip().splitlines()]
    assert sorted(Path(r["input"]).name for r in lines if r.get("skipped")) == \
        ["im0.png", "im1.png", "im3.png", "im4.png"]
    assert sorted(Path(r["input"]).name for r in lines if "bpp" in r) == ["im2.png", "im5.png"]
    assert "4 of 6 output(s) exist and were skipped" in again.stderr
    after = {name: os.stat(tmp_path / "coded" / name).st_ino for name in files(tmp_path / "coded")}
    assert after.keys() == before.keys()
    assert all(after[n] == before[n] for n in before if n not in ("im2.bin", "im5.bin"))  # untouched
    assert files(tmp_path / "coded") == first_bytes


@needs_ray
@pytest.mark.slow
def test_refine_on_ray_gives_the_local_records_and_resumes_them(tmp_path, six_images, tiny_checkpoint,
                                                                 ray_cluster):
    common = ["--checkpoint", tiny_checkpoint, "--method", "none", "--method", "ssl", "--iterations", "3"]
    local = cli("refine", six_images, *common, "--records", tmp_path / "local.jsonl")
    assert local.exit_code == 0, local.output
    on_ray = cli("refine", six_images, *common, "--records", tmp_path / "ray.jsonl", "--ray", "--json")
    assert on_ray.exit_code == 0, on_ray.output
    assert len(on_ray.stdout.strip().splitlines()) == 12

    def measured(path):
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        return {r["key"]: (r["bytes"], r["bpp"], r["psnr"], r["loss"], r["ms_ssim"]) for r in rows}

    assert len(measured(tmp_path / "ray.jsonl")) == 12
    assert measured(tmp_path / "ray.jsonl") == measured(tmp_path / "local.jsonl")
    again = cli("refine", six_images, *common, "--records", tmp_path / "ray.jsonl", "--ray")
    assert again.exit_code == 0, again.output
    assert "12 record(s) resumed, 0 computed" in " ".join(again.stderr.split())
    assert len(measured(tmp_path / "ray.jsonl")) == 12


@needs_ray
@pytest.mark.slow
@pytest.mark.parametrize("options", [[], ["--metadata", "none", "--alpha", "drop"]], ids=["all", "none"])
def test_a_ray_run_keeps_the_metadata_alpha_and_grayness_as_a_local_run(tmp_path, tiny_checkpoint, ray_cluster,
                                                                        options):
    """An RGBA picture with an ICC profile and a grayscale one: the files Ray's workers write hold
    what a local run's hold (the metadata, alpha and colour encode's options keep)."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(3)
    icc = (Path(__file__).parent / "fixtures" / "display-p3.icc").read_bytes()
    Image.fromarray(rng.integers(0, 256, (40, 56, 4), dtype=np.uint8), "RGBA").save(folder / "rgba.png",
                                                                                    icc_profile=icc)
    Image.fromarray(rng.integers(0, 256, (48, 40), dtype=np.uint8), "L").save(folder / "gray.png")
    common = ["--checkpoint", tiny_checkpoint, "--method", "none", *options]
    local = cli("encode", folder, "-o", tmp_path / "local", *common)
    assert local.exit_code == 0, local.output
    on_ray = cli("encode", folder, "-o", tmp_path / "ray", *common, "--ray", "--workers", 1)
    assert on_ray.exit_code == 0, on_ray.output
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    assert len(files(tmp_path / "ray")["rgba.bin"]) > (500 if not options else 0)  # the profile is in it
