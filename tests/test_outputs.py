"""Outputs: special files never replaced, collisions and inputs caught before any work, every
output checked before refining (sgacodec/outputs.py, through the command line)."""

import json
import os
import stat
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest
from PIL import Image

import sgacodec.codec.batching
from sgacodec.errors import OutputError
from sgacodec.files import outputs

from .support import ROOT, invoke, leftovers, make_image


@pytest.fixture
def never_refines(monkeypatch):
    """Fails the test if any refinement starts (pipeline.encode_batch is the only way in)."""
    def refuse(*args, **kwargs):
        raise AssertionError("refinement started before the outputs were checked")

    monkeypatch.setattr(sgacodec.codec.batching, "encode_batch", refuse)


def read_in_background(path):
    """A thread that reads a FIFO to its end; got[0] holds the bytes."""
    got = []

    def read():
        with open(path, "rb") as f:
            got.append(f.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


def test_force_never_replaces_a_fifo_or_a_device_it_streams_to_them(tmp_path, png, tiny_checkpoint):
    """With -o pointing at a FIFO or a character device the bytes are written into it, as with
    -o - (no --force needed, and --force does not replace it by a regular file)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for force in ((), ("--force",)):
        thread, got = read_in_background(fifo)
        res = invoke("encode", png, "-o", fifo, *force, "--checkpoint", tiny_checkpoint, "--method", "none")
        thread.join(timeout=60)
        assert res.exit_code == 0, res.output
        assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced by a file"
        assert got and got[0].startswith(b"SGAC")
    coded = got[0]
    thread, got = read_in_background(fifo)  # decode writes there the same way
    res = invoke("decode", "-", "-o", fifo, "--force", "--checkpoint", tiny_checkpoint, input=coded)
    thread.join(timeout=60)
    assert res.exit_code == 0, res.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and got and got[0].startswith(b"\x89PNG")
    assert not leftovers(tmp_path)
    # a character device (made here: the null device's numbers), replaced by nothing
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        device = None
    if device is not None:
        res = invoke("encode", png, "-o", device, "--force", "--checkpoint", tiny_checkpoint, "--method", "none")
        assert res.exit_code == 0, res.output
        assert stat.S_ISCHR(os.stat(device).st_mode)
        blocks = tmp_path / "blocks"
        os.mknod(blocks, stat.S_IFBLK | 0o600, os.makedev(7, 200))  # a loop device number
        res = invoke("encode", png, "-o", blocks, "--force", "--checkpoint", tiny_checkpoint, "--method", "none")
        assert res.exit_code == 1 and "block device" in res.output
        assert stat.S_ISBLK(os.stat(blocks).st_mode)


def test_dev_null_stays_a_character_device(png, tiny_checkpoint):
    res = invoke("encode", png, "-o", "/dev/null", "--checkpoint", tiny_checkpoint, "--method", "none")
    assert res.exit_code == 0, res.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    if outputs.output_kind("/dev/null") == "stream":  # never try --force on /dev/null otherwise
        res = invoke("encode", png, "-o", "/dev/null", "--force", "--checkpoint", tiny_checkpoint,
                     "--method", "none")
        assert res.exit_code == 0, res.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_atomic_write_never_replaces_a_special_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="not a regular file"):
        outputs.atomic_write(fifo, b"data")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and not leftovers(tmp_path)


def test_two_inputs_that_would_write_one_output_are_refused_before_any_work(tmp_path, tiny_checkpoint,
                                                                           never_refines):
    Image.fromarray(make_image(20, 24)).save(tmp_path / "a.png")
    Image.fromarray(make_image(20, 24)).save(tmp_path / "a.jpg")
    os.link(tmp_path / "a.png", tmp_path / "hard.png")
    cases = [[tmp_path / "a.png", tmp_path / "a.jpg"],  # beside their inputs: a.bin twice
             [tmp_path / "a.png", f"{tmp_path}/./a.png"]]  # one file named twice
    for inputs in cases:
        res = invoke("encode", *inputs, "--checkpoint", tiny_checkpoint, "--method", "none")
        assert res.exit_code == 1 and "would both write" in res.output, res.output
        res = invoke("encode", *inputs, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint, "--method", "none")
        assert res.exit_code == 1 and "would both write" in res.output, res.output
    assert not (tmp_path / "a.bin").exists()
    with pytest.raises(OutputError, match="would both write"):
        outputs.plan_outputs([str(tmp_path / "a.png"), str(tmp_path / "hard.png")], None, ".png")
    assert outputs.plan_outputs(["x/a.png", "y/a.png"], None, ".bin") == ["x/a.bin", "y/a.bin"]


def run_with_stdin(args, stdin_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    with open(stdin_path, "rb") as stdin:
        return subprocess.run([sys.executable, "-m", "sgacodec", *map(str, args)], stdin=stdin,
                              capture_output=True, env=env, timeout=300)


@pytest.mark.slow
def test_stdin_input_never_replaces_the_file_it_was_read_from(tmp_path, png, tiny_checkpoint):
    before = png.read_bytes()
    link = tmp_path / "other-name.png"
    os.link(png, link)
    for out in (png, link):
        res = run_with_stdin(["encode", "-", "-o", out, "--force", "--checkpoint", tiny_checkpoint,
                              "--method", "none"], png)
        assert res.returncode == 1 and b"input" in res.stderr, res.stderr
    assert png.read_bytes() == before and link.read_bytes() == before
    coded = tmp_path / "a.bin"
    assert invoke("encode", png, "-o", coded, "--checkpoint", tiny_checkpoint, "--method", "none").exit_code == 0
    data = coded.read_bytes()
    res = run_with_stdin(["decode", "-", "-o", coded, "--force", "--checkpoint", tiny_checkpoint], coded)
    assert res.returncode == 1 and b"input" in res.stderr and coded.read_bytes() == data


def unwritable_folder(tmp_path):
    """A folder this process cannot create files in: a read-only one (mode 0555 does not stop root,
    so /sys is the read-only folder there); None when there is none."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (str(folder), "/sys"):
        try:
            with tempfile.TemporaryFile(dir=candidate):
                pass
        except OSError:
            return candidate
    return None


def test_unwritable_or_missing_outputs_are_refused_before_refinement(tmp_path, png, tiny_checkpoint,
                                                                    never_refines):
    cases = [(tmp_path / "missing" / "a.bin", "does not exist")]
    folder = unwritable_folder(tmp_path)
    if folder is not None:
        cases += [(os.path.join(folder, "a.bin"), "cannot write"), (os.path.join(folder, "new") + "/", "cannot")]
    for out, why in cases:
        res = invoke("encode", png, "-o", out, "--checkpoint", tiny_checkpoint, "--iterations", 2000)
        assert res.exit_code == 1 and why in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
    res = invoke("decode", png, "-o", tmp_path / "missing" / "a.png", "--checkpoint", tiny_checkpoint)
    assert res.exit_code == 1 and "does not exist" in res.output
    res = invoke("refine", png, "--checkpoint", tiny_checkpoint, "--log", tmp_path / "missing" / "log.csv")
    assert res.exit_code == 1 and "does not exist" in res.output
    (tmp_path / "read-only").chmod(0o755)


def test_an_output_ending_in_a_slash_is_a_new_directory(tmp_path, png, tiny_checkpoint):
    res = invoke("encode", png, "-o", f"{tmp_path}/coded/", "--checkpoint", tiny_checkpoint, "--method", "none")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "coded").is_dir() and (tmp_path / "coded" / "small.bin").read_bytes()[:4] == b"SGAC"
    res = invoke("decode", tmp_path / "coded" / "small.bin", "-o", f"{tmp_path}/decoded/",
                 "--checkpoint", tiny_checkpoint)
    assert res.exit_code == 0 and (tmp_path / "decoded" / "small.png").is_file()


def test_json_records_hold_no_nan_or_infinity(tmp_path, png, tiny_checkpoint, monkeypatch):
    """A perfect reconstruction has an infinite PSNR: JSON null, not Infinity (strict parsers)."""
    from sgacodec import metrics

    monkeypatch.setattr(metrics, "psnr_from_mse", lambda mse: float("inf"))

    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))

    res = invoke("encode", png, "-o", tmp_path / "a.bin", "--checkpoint", tiny_checkpoint, "--method", "none", "--json")
    assert res.exit_code == 0, res.output
    record = strict(res.stdout.strip().splitlines()[-1])
    assert record["psnr"] is None and record["bpp"] > 0
    line = outputs.json_line({"a": float("nan"), "b": [float("-inf"), np.float64(1.5)]})
    assert strict(line) == {"a": None, "b": [None, 1.5]}


def test_a_symbolic_link_is_written_through_never_replaced(tmp_path, png, tiny_checkpoint):
    target = tmp_path / "target.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    res = invoke("encode", png, "-o", link, "--force", "--checkpoint", tiny_checkpoint, "--method", "none")
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and target.read_bytes().startswith(b"SGAC") and not leftovers(tmp_path)


@pytest.mark.slow
def test_dev_stdout_is_written_in_place_never_replaced(tmp_path, png, tiny_checkpoint):
    """/dev/stdout is a symbolic link in /dev: replacing it (as root, with --force) would have
    replaced the system's /dev/stdout by a regular file."""
    assert os.path.islink("/dev/stdout")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    forces = [()] + ([("--force",)] if outputs.output_kind("/dev/stdout") == "stream" else [])
    for force in forces:  # never --force unless /dev/stdout is known to be written in place
        out = tmp_path / "redirected.bin"
        with open(out, "wb") as stdout:
            res = subprocess.run([sys.executable, "-m", "sgacodec", "encode", str(png), "-o", "/dev/stdout", *force,
                                  "--checkpoint", str(tiny_checkpoint), "--method", "none"],
                                 stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=300)
        assert res.returncode == 0, res.stderr.decode()
        assert out.read_bytes().startswith(b"SGAC") and os.path.islink("/dev/stdout")
        with open(png, "ab") as appended:  # >> an input: refused like cat's "input file is output file"
            res = subprocess.run([sys.executable, "-m", "sgacodec", "encode", str(png), "-o", "/dev/stdout",
                                  "--checkpoint", str(tiny_checkpoint), "--method", "none"],
                                 stdout=appended, stderr=subprocess.PIPE, env=env, timeout=300)
        assert res.returncode == 1 and b"input" in res.stderr
    assert os.path.islink("/dev/stdout")


def test_an_output_written_piece_by_piece_appears_whole_or_not_at_all(tmp_path, capfdbinary):
    """open_output (decode writes its PNG as the strips come): the file appears when the block
    ends, never after an error (nor its temporary file); stdout gets everything at the end."""
    dst = tmp_path / "out.png"
    with outputs.open_output(str(dst), force=False) as f:
        f.write(b"first ")
        assert not dst.exists()  # still the temporary file
        f.write(b"second")
    assert dst.read_bytes() == b"first second"
    with pytest.raises(RuntimeError, match="hash mismatch"):
        with outputs.open_output(str(dst), force=True) as f:
            f.write(b"half")
            raise RuntimeError("hash mismatch")
    assert dst.read_bytes() == b"first second" and leftovers(tmp_path) == []
    with pytest.raises(OutputError, match="exists"):
        with outputs.open_output(str(dst), force=False) as f:
            f.write(b"other")
    with pytest.raises(RuntimeError):
        with outputs.open_output("-") as f:
            f.write(b"never shown")
            raise RuntimeError
    with outputs.open_output("-") as f:
        f.write(b"to ")
        f.write(b"stdout")
    assert capfdbinary.readouterr().out == b"to stdout"
