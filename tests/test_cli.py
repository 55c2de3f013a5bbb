"""The command line as a whole: help and usage errors, a lean start-up, signals, one-line errors."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from .support import ROOT, cli, leftovers, python, run_entry_point, run_process


@pytest.mark.slow
def test_help_and_usage_errors():
    res = run_process("--help")
    assert res.returncode == 0 and b"encode" in res.stdout
    res = run_process("encode", "x.png", "--method", "bogus")
    assert res.returncode == 2 and b"Traceback" not in res.stderr
    res = run_process("encode", "x.png", "--method", "atanh", "--three-class")
    assert res.returncode == 1 and b"three-class" in res.stderr



def test_cli_import_and_help_load_neither_torch_nor_compressai():
    res = python("import sgacodec, sgacodec.cli, sys; "
                  "bad = [m for m in ('torch', 'compressai', 'numpy', 'ray') if m in sys.modules]; "
                  "assert not bad, bad")
    assert res.returncode == 0, res.stderr.decode()
    for args in (["--help"], ["--version"], ["encode", "--help"], ["decode", "--help"], ["encode"],
                 ["encode", "x.png", "--method", "bogus"], ["refine", "--help"]):
        res = python("import sys; from sgacodec.cli import main\n"
                      f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
                      "assert 'torch' not in sys.modules and 'compressai' not in sys.modules\n"
                      "assert 'ray' not in sys.modules")
        assert res.returncode == 0, (args, res.stderr.decode())



def test_the_entry_point_freezes_the_objects_on_the_way_out():
    """No last garbage collection over torch's objects at exit (about 0.5 s of CPU per process)."""
    import gc

    gc.unfreeze()
    try:
        assert run_entry_point("--version") == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_ctrl_c_during_refinement_exits_130_and_leaves_nothing(tmp_path, png, tiny_checkpoint, monkeypatch,
                                                               capsys):
    import sgacodec.codec.batching

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sgacodec.codec.batching, "encode_batch", interrupted)
    out = tmp_path / "out.bin"
    assert run_entry_point("encode", png, "-o", out, "--checkpoint", tiny_checkpoint) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists() and not leftovers(tmp_path)



@pytest.mark.slow
def test_sigterm_in_a_real_process_exits_143_and_leaves_nothing(tmp_path, png, tiny_checkpoint):
    out = tmp_path / "out.bin"
    proc = subprocess.Popen([sys.executable, str(ROOT / "bin" / "sgacodec"), "encode", str(png), "-o", str(out),
                             "--checkpoint", str(tiny_checkpoint), "--iterations", "1000000"],
                            stderr=subprocess.PIPE, env=dict(os.environ, OMP_NUM_THREADS="1"))
    time.sleep(6)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()
    assert b"Traceback" not in err and not out.exists() and not leftovers(tmp_path)



@pytest.mark.parametrize("failure", [KeyboardInterrupt, lambda: OSError(28, "No space left on device")])
def test_an_interrupted_or_failed_write_leaves_no_partial_file(tmp_path, png, tiny_checkpoint, monkeypatch,
                                                              failure):
    import sgacodec.files.outputs

    def broken_fsync(fd):
        raise failure()

    monkeypatch.setattr(sgacodec.files.outputs.os, "fsync", broken_fsync)
    out = tmp_path / "out.bin"
    code = run_entry_point("encode", png, "-o", out, "--checkpoint", tiny_checkpoint, "--method", "none")
    assert code == (130 if failure is KeyboardInterrupt else 1)
    assert not out.exists() and not leftovers(tmp_path)



def test_outputs_get_ordinary_file_permissions(tmp_path, png_333x217, tiny_checkpoint):

    out = tmp_path / "perm.bin"
    old = os.umask(0o022)
    try:
        assert cli("encode", png_333x217, "-o", out, "--checkpoint", tiny_checkpoint,
                   "--method", "none").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


HUNG_CODER = """
import pathlib, sys
from sgacodec.network import streams
from sgacodec.cli import run

real = streams.encode_y

def nan_latents(net, y, scales, means):  # what a NaN model gives, past every earlier check:
    pathlib.Path(sys.argv[1]).write_text("coding")  # CompressAI's rANS encoder then loops in C++ for good
    return real(net, y * float("nan"), scales, means)

streams.encode_y = nan_latents
run(sys.argv[2:])
"""


def processes_running(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_a_coding_step_hung_in_cpp(tmp_path, png, tiny_checkpoint, signum):
    """Before the fix, the rANS encoder's endless loop (a NaN symbol) ignored both signals."""
    script, started, out = tmp_path / "hung_coder.py", tmp_path / "started", tmp_path / "out.bin"
    script.write_text(HUNG_CODER)
    proc = subprocess.Popen([sys.executable, str(script), str(started), "encode", str(png), "-o", str(out),
                             "--checkpoint", str(tiny_checkpoint), "--method", "none"],
                            stderr=subprocess.PIPE, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT)))
    try:
        for _ in range(1200):  # the coding step starts after torch's import and the model's load
            if started.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert started.exists(), proc.stderr.read().decode()
        time.sleep(1)  # inside the C++ loop by now
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err.decode()
    assert b"Traceback" not in err and not out.exists() and not leftovers(tmp_path)
    assert not processes_running(str(script))  # the child that coded is gone too
