"""Hardening (issue 6): forged bitstreams, decode verification, untrusted checkpoints, no data lost."""

import copy
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sgacodec import bitstream as B
from sgacodec import isolate
from sgacodec.cli import main, run
from sgacodec.codec import DecodeError, coding_net, decode, encode
from sgacodec.models import ModelError, load_checkpoint
from sgacodec.refine import RefineConfig

from .conftest import make_image

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def run_cli(monkeypatch, *args) -> int:
    """The console entry point in this process (exit status, as a shell would see it)."""
    with pytest.raises(SystemExit) as exit_info:
        run([str(a) for a in args])
    return exit_info.value.code


def forged(data: bytes, **fields) -> bytes:
    """``data`` with header fields replaced and the CRC recomputed (so it passes the checksum)."""
    import dataclasses

    bs = dataclasses.replace(B.unpack(data), **fields)
    return B.pack(bs) if 1 <= bs.height <= B.MAX_SIDE and 1 <= bs.width <= B.MAX_SIDE \
        and bs.height * bs.width <= B.MAX_PIXELS else _pack_unchecked(bs)


def _pack_unchecked(bs):
    import struct

    name = bs.model.name.encode()
    body = b"".join((B.MAGIC, struct.pack(">BBB", B.VERSION, B.MODEL_KINDS.index(bs.model.kind), len(name)),
                     name, struct.pack(">BB", B.METRICS.index(bs.model.metric), bs.model.quality),
                     bs.model.weights_sha, struct.pack(">II", bs.height, bs.width),
                     struct.pack(">HHHH", *bs.z_shape, *bs.y_shape), bs.recon_hash,
                     struct.pack(">I", len(bs.z_string)), bs.z_string,
                     struct.pack(">I", len(bs.y_string)), bs.y_string))
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.fixture(scope="module")
def coded(tiny_model):
    image = make_image(70, 100, seed=3)
    [report] = encode(tiny_model, [image], RefineConfig(method="ste", iterations=3))
    rgb, _ = decode(report.data, tiny_model)
    assert np.array_equal(rgb, report.recon)  # round trip to the reported pixels
    return report


# --- forged bitstreams: the crash the fuzzer found --------------------------------------------

@pytest.mark.parametrize("side", [1024, 4096, 8192])
def test_forged_huge_image_with_a_few_bytes_is_refused_quickly(tiny_model, coded, side):
    """Declared 1024^2 or more with 8-byte strings made CompressAI's rANS decoder read past its
    buffer and segfault (exit 139). Now: refused after entropy decoding, before synthesis."""
    z_shape, y_shape = B.expected_shapes(side, side)
    data = forged(coded.data, height=side, width=side, z_shape=z_shape, y_shape=y_shape,
                  z_string=b"\xff" * 8, y_string=b"\xff" * 8)
    begin = time.monotonic()
    with pytest.raises(DecodeError, match="ends before its data"):
        decode(data, tiny_model)
    assert time.monotonic() - begin < 30


def test_forged_strings_are_refused_in_process_too(tiny_model, coded, monkeypatch):
    """Without the child process (SGACODEC_ISOLATE=0, or not Linux) the padding still protects."""
    monkeypatch.setenv("SGACODEC_ISOLATE", "0")
    z_shape, y_shape = B.expected_shapes(1024, 1024)
    bs = B.unpack(coded.data)
    for z, y in ((b"\xff" * 8, b"\xff" * 8), (b"", b""), (bs.z_string, b"\x00" * 3)):
        data = forged(coded.data, height=1024, width=1024, z_shape=z_shape, y_shape=y_shape,
                      z_string=z, y_string=y)
        with pytest.raises(DecodeError):
            decode(data, tiny_model)
    for z, y in ((b"\xff" * 100_000, bs.y_string), (bs.z_string, b"\xff" * 100_000)):
        # long runs of 0xF nibbles drive the bypass coder through the data and beyond
        with pytest.raises(DecodeError):
            decode(forged(coded.data, z_string=z, y_string=y), tiny_model)


def test_padding_never_changes_a_valid_decode(tiny_model, coded):
    net = coding_net(tiny_model, B.unpack(coded.data).version)
    x_hat = isolate.decompress_untrusted(net, coded_string(coded, "y"), coded_string(coded, "z"),
                                         B.unpack(coded.data).z_shape)
    stock = net.decompress([[coded_string(coded, "y")], [coded_string(coded, "z")]],
                           B.unpack(coded.data).z_shape)["x_hat"]
    assert torch.equal(x_hat, stock)


def coded_string(report, which):
    bs = B.unpack(report.data)
    return bs.y_string if which == "y" else bs.z_string


def test_declared_sizes_beyond_the_encoders_limit_are_refused_before_allocation(coded):
    for h, w in ((8193, 8192), (B.MAX_SIDE + 1, 1), (1, 1 << 20), (0, 10), (1 << 31, 1 << 31)):
        z_shape, y_shape = B.expected_shapes(h, w)
        fits = max(y_shape) < 1 << 16
        data = forged(coded.data, height=h, width=w, z_shape=z_shape if fits else (1, 1),
                      y_shape=y_shape if fits else (4, 4))
        with pytest.raises(B.BitstreamError, match="out of range"):
            B.unpack(data)


def test_the_child_process_contains_crashes_and_hangs():
    with pytest.raises(isolate.IsolatedError, match="crashed"):
        isolate.call(lambda: os.kill(os.getpid(), signal.SIGSEGV), timeout=30)
    with pytest.raises(isolate.IsolatedError, match="longer than"):
        isolate.call(lambda: time.sleep(30), timeout=0.5)
    with pytest.raises(isolate.IsolatedError, match="MemoryError"):
        isolate.call(lambda: (_ for _ in ()).throw(MemoryError("no room")), timeout=30)
    big = isolate.call(lambda: np.full((300, 400, 3), 7, np.uint8), timeout=30)
    assert big.shape == (300, 400, 3) and (big == 7).all()


# --- decode verification ------------------------------------------------------------------------

def perturbed(model, where):
    """A copy of the model whose decoder side computes slightly differently."""
    other = copy.copy(model)
    other.net = copy.deepcopy(model.net)
    with torch.no_grad():
        if where == "g_s":
            other.net.g_s[-1].bias += 0.02  # pixels move by about 5 levels
        else:  # the hyperprior's scales: other CDF indexes
            other.net.h_s[-1].bias.mul_(1.05).add_(0.05)
    return other


@pytest.mark.parametrize("where", ["g_s", "h_s"])
def test_a_decoder_that_reproduces_the_model_differently_is_caught(tiny_model, coded, where):
    from sgacodec.codec import ReconstructionMismatch

    with pytest.raises(DecodeError, match="does not decode|reconstruction hash mismatch"):
        decode(coded.data, perturbed(tiny_model, where), strict=True)
    with warnings.catch_warnings(record=True) as caught:  # by default: a warning, and the pixels
        warnings.simplefilter("always")
        try:
            rgb, _ = decode(coded.data, perturbed(tiny_model, where))
        except DecodeError:  # other scales read the y string past its end: refused even so
            assert where == "h_s"
            return
    assert [w.category for w in caught] == [ReconstructionMismatch]
    assert not np.array_equal(rgb, coded.recon)


def test_the_cli_warns_on_a_hash_mismatch_and_strict_refuses(tmp_path, tiny_model, tiny_checkpoint,
                                                             coded, monkeypatch):
    import sgacodec.models

    src = tmp_path / "img.bin"
    src.write_bytes(coded.data)
    monkeypatch.setattr(sgacodec.models, "load_for_bitstream", lambda *a: perturbed(tiny_model, "g_s"))
    res = invoke("decode", src, "-o", tmp_path / "strict.png", "--checkpoint", tiny_checkpoint, "--strict")
    assert res.exit_code == 1 and "reconstruction hash mismatch" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "strict.png").exists() and not list(tmp_path.glob(".*.part"))

    res = invoke("decode", src, "-o", tmp_path / "out.png", "--checkpoint", tiny_checkpoint, "--json")
    assert res.exit_code == 0, res.output
    warning = [line for line in res.output.splitlines() if line.startswith("sgacodec: warning:")]
    assert len(warning) == 1 and "written anyway" in warning[0]
    record = json.loads([line for line in res.output.splitlines() if line.startswith("{")][0])
    assert record["exact"] is False and (tmp_path / "out.png").exists()


def test_a_flipped_hash_warns_or_is_refused(tiny_model, coded):
    from sgacodec.codec import ReconstructionMismatch

    bs = B.unpack(coded.data)
    data = forged(coded.data, recon_hash=bytes(b ^ 1 for b in bs.recon_hash))
    with pytest.raises(DecodeError, match="reconstruction hash mismatch"):
        decode(data, tiny_model, strict=True)
    with pytest.warns(ReconstructionMismatch):
        rgb, _ = decode(data, tiny_model)
    assert np.array_equal(rgb, coded.recon)
    rgb, _ = decode(coded.data, tiny_model, strict=True)  # the genuine file passes
    assert np.array_equal(rgb, coded.recon)


# --- untrusted checkpoints ----------------------------------------------------------------------

class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))


@pytest.mark.parametrize("how", ["zip", "legacy", "pickle", "beside-weights"])
def test_checkpoint_pickle_payloads_never_run(tmp_path, monkeypatch, tiny_checkpoint, how):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth.tar"
    if how == "zip":
        torch.save({"state_dict": Payload()}, path)
    elif how == "legacy":
        torch.save({"state_dict": Payload()}, path, _use_new_zipfile_serialization=False)
    elif how == "pickle":
        path.write_bytes(pickle.dumps(Payload()))
    else:  # a real state dict, and a payload in another key
        state = torch.load(tiny_checkpoint, weights_only=True)
        torch.save({**state, "extra": Payload()}, path)
    with pytest.raises(ModelError, match="refusing or unable"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned-by-checkpoint").exists()
    image = tmp_path / "img.png"
    Image.fromarray(make_image(20, 20)).save(image)
    res = invoke("encode", image, "-o", tmp_path / "o.bin", "--checkpoint", path, "--method", "none")
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "pwned-by-checkpoint").exists() and not (tmp_path / "o.bin").exists()


def test_checkpoints_that_hold_no_weights_are_refused(tmp_path):
    cases = {"ints.pth": {"state_dict": {"a": 1}}, "list.pth": [1, 2, 3],
             "bad-lambda.pth": {"state_dict": {"g_a.0.weight": torch.zeros(1)}, "lmbda": "x"}}
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(ModelError):
            load_checkpoint(tmp_path / name)
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 100)
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "bad.safetensors")


# --- no data lost -------------------------------------------------------------------------------

@pytest.fixture
def png(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(make_image(40, 56, seed=2)).save(path)
    return path


def leftovers(folder):
    return sorted(p.name for p in Path(folder).rglob("*.part"))


def test_ctrl_c_during_refinement_exits_130_and_leaves_nothing(tmp_path, png, tiny_checkpoint, monkeypatch,
                                                               capsys):
    import sgacodec.codec

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sgacodec.codec, "encode", interrupted)
    out = tmp_path / "out.bin"
    assert run_cli(monkeypatch, "encode", png, "-o", out, "--checkpoint", tiny_checkpoint) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("failure", [KeyboardInterrupt, lambda: OSError(28, "No space left on device")])
def test_an_interrupted_or_failed_write_leaves_no_partial_file(tmp_path, png, tiny_checkpoint, monkeypatch,
                                                              failure):
    import sgacodec.imageio

    def broken_fsync(fd):
        raise failure()

    monkeypatch.setattr(sgacodec.imageio.os, "fsync", broken_fsync)
    out = tmp_path / "out.bin"
    code = run_cli(monkeypatch, "encode", png, "-o", out, "--checkpoint", tiny_checkpoint, "--method", "none")
    assert code == (130 if failure is KeyboardInterrupt else 1)
    assert not out.exists() and not leftovers(tmp_path)


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


def test_existing_outputs_need_force_even_when_they_appear_during_the_encode(tmp_path, png, tiny_checkpoint,
                                                                            monkeypatch):
    import sgacodec.codec

    out = tmp_path / "out.bin"
    real = sgacodec.codec.encode

    def encode_while_someone_writes(*args, **kwargs):
        out.write_bytes(b"written meanwhile")
        return real(*args, **kwargs)

    monkeypatch.setattr(sgacodec.codec, "encode", encode_while_someone_writes)
    res = invoke("encode", png, "-o", out, "--checkpoint", tiny_checkpoint, "--method", "none")
    assert res.exit_code == 1 and "--force" in res.output
    assert out.read_bytes() == b"written meanwhile" and not leftovers(tmp_path)
    monkeypatch.setattr(sgacodec.codec, "encode", real)
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
    import sgacodec.codec
    from sgacodec.hyperprior import LatentModel

    real = sgacodec.codec.encode
    devices = []

    def encode_on(model, images, config, device="cpu", *args, **kwargs):
        devices.append(torch.device(device).type)
        if torch.device(device).type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, images, config, device, *args, **kwargs)

    monkeypatch.setattr(sgacodec.codec, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(sgacodec.codec, "device_model", lambda model, device: LatentModel(model.net))
    monkeypatch.setattr(sgacodec.codec, "encode", encode_on)
    out = tmp_path / "out.bin"
    res = invoke("encode", png, "-o", out, "--checkpoint", tiny_checkpoint, "--iterations", 3, "--json")
    assert res.exit_code == 0, res.output
    assert "GPU out of memory" in res.output and "on the CPU" in res.output
    assert devices[0] == "cuda" and devices[-1] == "cpu"
    rgb, _ = decode(out.read_bytes(), load_checkpoint(tiny_checkpoint))
    assert rgb.shape == (40, 56, 3)


def test_unexpected_errors_are_one_line_and_the_batch_goes_on(tmp_path, tiny_checkpoint, monkeypatch):
    import sgacodec.codec

    real = sgacodec.codec.encode
    calls = []

    def flaky(model, images, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("a bug\nwith a second line")
        return real(model, images, *args, **kwargs)

    monkeypatch.setattr(sgacodec.codec, "encode", flaky)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"i{i}.png")
        Image.fromarray(make_image(20 + i, 20, seed=i)).save(paths[-1])
    res = invoke("encode", *paths, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint, "--method", "none")
    assert res.exit_code == 1
    assert f"  {paths[0]}: TypeError: a bug" in res.output.splitlines()
    assert (tmp_path / "out" / "i1.bin").exists() and not (tmp_path / "out" / "i0.bin").exists()


def test_unbounded_inputs_are_cut_off(tmp_path, monkeypatch):
    from sgacodec.imageio import ImageError, read_limited

    with pytest.raises(ImageError, match="larger than"):
        read_limited("/dev/zero", "/dev/zero", limit=1 << 20)
    with pytest.raises(ImageError, match="no such file"):
        read_limited(tmp_path / "missing", "missing")
    with pytest.raises(ImageError, match="is a directory"):
        read_limited(tmp_path, "folder")
