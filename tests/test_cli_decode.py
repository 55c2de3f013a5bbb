"""sgacodec decode: bad files in a real process, the reconstruction check and --strict."""

import json

import pytest

from .support import cli, invoke, perturbed, run_process


@pytest.mark.slow
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



def test_the_cli_warns_on_a_hash_mismatch_and_strict_refuses(tmp_path, tiny_model, tiny_checkpoint,
                                                             coded, monkeypatch):
    import sgacodec.codec.decoder

    src = tmp_path / "img.bin"
    src.write_bytes(coded.data)
    monkeypatch.setattr(sgacodec.codec.decoder, "load_for_bitstream", lambda *a: perturbed(tiny_model, "g_s"))
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


def test_decode_region_writes_that_rectangle_and_refuses_a_bad_one(tmp_path, tiny_model, tiny_checkpoint):
    import numpy as np
    from PIL import Image

    from sgacodec.codec.batching import encode
    from sgacodec.codec.decoder import decode
    from sgacodec.config import RefineConfig

    from .support import make_image

    [report] = encode(tiny_model, [make_image(100, 140, seed=5)], RefineConfig(method="none", tile_size=64))
    src = tmp_path / "tiled.bin"
    src.write_bytes(report.data)
    full = decode(report.data, tiny_model).rgb
    res = invoke("decode", src, "-o", tmp_path / "part.png", "--checkpoint", tiny_checkpoint, "--region", "70,30,50,40")
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "part.png") as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), full[30:70, 70:120])
    for bad, says in (("1,2,3", "four whole numbers"), ("0,0,0,5", "at least 1"), ("500,0,5,5", "not inside")):
        res = invoke("decode", src, "-o", tmp_path / f"bad-{bad}.png", "--checkpoint", tiny_checkpoint, "--region", bad)
        assert res.exit_code != 0 and says in res.output and not (tmp_path / f"bad-{bad}.png").exists(), res.output
