"""sgacodec refine: methods compared, trajectories logged, grids resumed, errors."""

import json

import pytest
import torch
from click.testing import CliRunner

from sgacodec.cli import main

from .support import cli, invoke, save_png


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



@pytest.mark.slow
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



def test_refine_cli_passes_the_batch_size(tmp_path, tiny_checkpoint, monkeypatch):
    import sgacodec.evaluation.runner as runner

    inputs = [str(save_png(tmp_path / f"im{i}.png", 48, 64, seed=i)) for i in range(2)]
    seen = []
    real = runner.BatchEncoder

    def spy(model, config, device, batch_size=None, on_note=None):
        seen.append(batch_size)
        return real(model, config, device, batch_size, on_note)

    monkeypatch.setattr(runner, "BatchEncoder", spy)
    for extra in ([], ["--batch-size", "3"]):
        res = CliRunner().invoke(main, ["refine", *inputs, "--checkpoint", str(tiny_checkpoint),
                                        "--method", "none", "--device", "cpu", *extra])
        assert res.exit_code == 0, res.output
    assert seen == [None, 3]  # None: the pipeline picks (one image at a time on a CPU)


def test_the_cpu_estimate_counts_only_what_is_not_resumed(tmp_path, png_333x217, tiny_checkpoint):
    args = ["refine", png_333x217, "--checkpoint", tiny_checkpoint, "--method", "ste", "--iterations", 2,
            "--crop", 32, "--device", "cpu", "--records", tmp_path / "r.jsonl"]
    res = cli(*args)
    assert res.exit_code == 0 and "Refining on the CPU: 1 refinement(s)" in res.stderr, res.stderr
    res = cli(*args[:-4], "--iterations", 3, *args[-4:])
    assert res.exit_code == 0 and "Refining on the CPU: 1 refinement(s) of 3 iterations" in res.stderr, res.stderr
    res = cli(*args)
    assert res.exit_code == 0 and "Refining on the CPU" not in res.stderr and "resumed" in res.stderr


def test_refine_outputs_are_checked_before_any_work_and_the_records_folder_is_made(tmp_path, png,
                                                                                  tiny_checkpoint):
    res = invoke("refine", png, "--checkpoint", tiny_checkpoint, "--method", "none",
                 "--log", tmp_path / "missing" / "log.csv")
    assert res.exit_code == 1 and "does not exist" in res.output
    records = tmp_path / "new" / "records.jsonl"
    res = invoke("refine", png, "--checkpoint", tiny_checkpoint, "--method", "none", "--records", records)
    assert res.exit_code == 0, res.output
    assert records.read_text().count("\n") == 1


def test_redo_unproven_computes_again_only_the_records_without_provenance(tmp_path, png_333x217,
                                                                          tiny_checkpoint):
    records = tmp_path / "r.jsonl"
    args = ["refine", png_333x217, "--checkpoint", tiny_checkpoint, "--method", "none", "--method", "ste",
            "--iterations", 2, "--crop", 32, "--records", records]
    assert cli(*args).exit_code == 0
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert all(r["provenance"] for r in lines) and len(lines) == 2
    del lines[1]["provenance"]  # an older record, written before records named their provenance
    records.write_text("".join(json.dumps(r) + "\n" for r in lines))
    res = cli(*args, "--redo-unproven")
    assert res.exit_code == 0 and "1 record(s) resumed, 1 computed" in " ".join(res.stderr.split()), res.stderr
    again = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(again) == 3 and again[2]["key"] == lines[1]["key"] and again[2]["provenance"]
    res = cli(*args, "--redo-unproven")  # the new record is proven: nothing more to compute
    assert res.exit_code == 0 and "2 record(s) resumed, 0 computed" in " ".join(res.stderr.split()), res.stderr


def test_records_from_another_file_are_copied_not_computed_again(tmp_path, png_333x217, tiny_checkpoint):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    args = ["refine", png_333x217, "--checkpoint", tiny_checkpoint, "--method", "none", "--method", "ste",
            "--iterations", 2, "--crop", 32]
    assert cli(*args, "--records", first).exit_code == 0
    res = cli(*args, "--method", "uniform", "--records", second, "--records-from", first)
    assert res.exit_code == 0, res.output
    assert "2 record(s) resumed (2 copied from --records-from), 1 computed" in " ".join(res.stderr.split())
    lines = second.read_text().splitlines()
    assert lines[:2] == first.read_text().splitlines()  # as they were, provenance included
    assert json.loads(lines[2])["method"] == "uniform" and len(lines) == 3
    res = cli(*args, "--method", "uniform", "--records", second, "--records-from", first)
    assert res.exit_code == 0 and "3 record(s) resumed, 0 computed" in " ".join(res.stderr.split())
    assert len(second.read_text().splitlines()) == 3  # nothing copied twice
    res = invoke(*args, "--records-from", first)
    assert res.exit_code == 1 and "need --records" in res.output
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    res = invoke(*args, "--records", second, "--records-from", binary)
    assert res.exit_code == 1 and f"--records-from {binary}: 'utf-8' codec can't decode" in res.output


def test_refine_to_targets_records_each_image_and_target_and_resumes(tmp_path, image_dir, tiny_checkpoint):
    records = tmp_path / "t.jsonl"
    args = ["refine", image_dir, "--checkpoint", tiny_checkpoint, "--iterations", 4, "--target-bpp", 0.5,
            "--target-psnr", 14, "--records", records]
    res = cli(*args, "--json")
    assert res.exit_code == 0, res.output
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(out) == 2 * 2  # images x targets
    assert {tuple(r["target"]["target"].values()) for r in out} == {("bpp", 0.5), ("psnr", 14)}
    assert all(r["bpp"] <= 0.5 for r in out if r["target"]["target"]["kind"] == "bpp")
    assert {r["tag"] for r in out} == {"ssl-it4-tau1-bpp0.5", "ssl-it4-tau1-psnr14"}
    assert "ssl 4it to bpp" in res.stderr  # its own curve in the tables
    res = cli(*args)  # again: every record resumed
    assert res.exit_code == 0 and "4 record(s) resumed, 0 computed" in " ".join(res.stderr.split()), res.output
    res = invoke(*args, "--lmbda-scale", 2)
    assert res.exit_code == 1 and "drop --lmbda" in res.output
