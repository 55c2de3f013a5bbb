"""One batch in and out: refinement, entropy coding on the coding network, and the stock CompressAI decoder."""

import copy
import dataclasses
import threading
import time
import warnings

import numpy as np
import pytest
import torch

import sgacodec.config
from sgacodec import metrics
from sgacodec.codec import container as B
from sgacodec.codec import devices, pixels
from sgacodec.codec import encoder as codec
from sgacodec.codec.batching import encode
from sgacodec.codec.container import pack, unpack
from sgacodec.codec.decoder import decode
from sgacodec.codec.encoder import code_latents
from sgacodec.codec.pixels import pad, to_tensor
from sgacodec.config import RefineConfig
from sgacodec.errors import DecodeError
from sgacodec.network.coding_net import coding_net
from sgacodec.network.latent_model import LatentModel

from .support import TINY_LMBDA, forged, make_image, perturbed


@pytest.mark.parametrize("size", [(217, 333), (1, 1), (65, 63), (64, 128)])
def test_odd_sizes_round_trip_to_the_reported_pixels(tiny_model, size):
    image = make_image(*size, seed=1)
    [report] = encode(tiny_model, [image], RefineConfig(iterations=10))
    rgb, header, _ = decode(report.data, tiny_model)
    assert rgb.shape == (*size, 3) and (header.height, header.width) == size
    assert np.array_equal(rgb, report.recon)
    assert report.psnr == pytest.approx(metrics.psnr(image, rgb))
    assert report.bpp == pytest.approx(8 * len(report.data) / (size[0] * size[1]))



def test_decode_is_compressais_own_decompress(tiny_model):
    """decode = the model's own decompress() of the file's strings, on the coding network (the
    model with h_s and g_s in float64): exactly for a file of one tile (--tile-size 0), and for a
    tiled file the same pixels, its tiles computed apart (their halos taken from the neighbours)."""
    image = make_image(100, 150, seed=2)
    [report] = encode(tiny_model, [image], RefineConfig(iterations=20, tile_size=0))
    header = unpack(report.data)
    assert header.version == 3 and header.tile == 0 and len(header.y_strings) == 1
    net = coding_net(tiny_model.net, header.version)
    stock = net.decompress([[header.y_strings[0]], [header.z_string]], header.z_shape)["x_hat"]
    expected = stock[0, :, :100, :150].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    rgb, _, _ = decode(report.data, tiny_model)
    assert np.array_equal(rgb, expected)
    [tiled] = encode(tiny_model, [image], RefineConfig(iterations=20, tile_size=64))
    header = unpack(tiled.data)
    assert header.tile == 64 and len(header.y_strings) == 6  # 128 x 192 padded: 2 x 3 tiles
    assert np.array_equal(decode(tiled.data, tiny_model).rgb, expected)


def test_coding_net_runs_the_transforms_in_float64(tiny_model):
    net = coding_net(tiny_model.net, 2)
    assert coding_net(tiny_model.net, 2) is net  # made once per model
    assert all(p.dtype == torch.float64 for m in (net.h_s, net.g_s) for p in m.parameters())
    assert all(p.dtype == torch.float32 for p in tiny_model.net.parameters())  # the model is untouched
    y = torch.randn(1, tiny_model.net.M, 4, 4)
    with torch.no_grad():
        out, out64 = net.g_s(y), net.g_s.module(y.double())
        exact = copy.deepcopy(tiny_model.net.g_s).double()(y.double())
    # float64 throughout; the transposed convolutions by kernel taps (deconv.py) sum in another order
    assert out.dtype == torch.float32 and torch.equal(out, out64.float())
    assert torch.allclose(out64, exact, rtol=0, atol=1e-12)



def test_float32_coder_tables_are_built_only_for_version_1(tiny_checkpoint, monkeypatch):
    """Version 2 codes with the coding network's float64 tables: loading a model, and coding and
    decoding version 2 files, never run the model's float32 update() (which loading used to);
    coding version 1 runs it, once."""
    from sgacodec.models.checkpoints import load_checkpoint
    from sgacodec.network.compressai_import import import_compressai

    cls, calls = import_compressai().MeanScaleHyperprior, []
    real = cls.update
    monkeypatch.setattr(cls, "update", lambda self, *a, **k: calls.append(self) or real(self, *a, **k))
    model = load_checkpoint(tiny_checkpoint)
    y, z = LatentModel(model.net).analysis(pad(to_tensor(make_image(64, 64, seed=6))))
    [(data, rgb)] = code_latents(model, y, z, (64, 64))
    assert np.array_equal(decode(data, model, strict=True).rgb, rgb)
    assert calls == []
    for _ in range(2):
        code_latents(model, y, z, (64, 64), version=1)
    assert calls == [model.net]


@pytest.mark.parametrize("inverse", [False, True])
def test_the_coding_networks_gdn_computes_compressais(inverse):
    from compressai.layers import GDN

    from sgacodec.models.embedded import load_embedded
    from sgacodec.network.coding_net import MatmulGDN, gdn_by_matmul

    torch.manual_seed(0)
    gdn = GDN(6, inverse=inverse).double()
    with torch.no_grad():
        gdn.gamma.add_(torch.rand(6, 6, dtype=torch.float64) * 0.1)
        x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
        replaced = gdn_by_matmul(torch.nn.Sequential(gdn, torch.nn.ReLU()))
        assert isinstance(replaced[0], MatmulGDN) and replaced[0].gdn is gdn
        assert torch.allclose(replaced[0](x), gdn(x), rtol=0, atol=1e-14)
    assert any(isinstance(m, MatmulGDN) for m in coding_net(load_embedded().net, 2).g_s.modules())


def test_version_1_files_still_decode(tiny_model):
    """Files written before version 2 were coded with the float32 model; they decode as they were."""
    image = make_image(70, 90, seed=4)
    y, z = LatentModel(tiny_model.net).analysis(pad(to_tensor(image)))
    [(data, rgb)] = code_latents(tiny_model, y, z, (70, 90), version=1)
    assert data[4] == 1 and unpack(data).version == 1
    decoded, _, _ = decode(data, tiny_model, strict=True)
    assert np.array_equal(decoded, rgb)
    # one that does not decode says that version 1 files may not decode on another CPU
    cut = pack(dataclasses.replace(unpack(data), z_string=b""))
    with pytest.raises(DecodeError, match="version 1 file"):
        decode(cut, tiny_model)



def test_unrefined_encode_matches_compressais_compress(tiny_model):
    """method none codes exactly what the model's own compress() codes for the padded image (on
    the coding network: the model with float64 h_s, g_s and rANS tables), the analysis computed
    tile by tile; tiled, the z string is the same and each tile's y string codes that tile."""
    image = make_image(128, 192, seed=5)
    [report] = encode(tiny_model, [image], RefineConfig(method="none", tile_size=0))
    header = unpack(report.data)
    stock = coding_net(tiny_model.net, 3).compress(pad(to_tensor(image)))
    assert header.y_strings == (stock["strings"][0][0],)
    assert header.z_string == stock["strings"][1][0]
    assert report.bpp == report.base_bpp and report.iterations == 0
    [tiled] = encode(tiny_model, [image], RefineConfig(method="none", tile_size=64))
    header = unpack(tiled.data)
    assert header.z_string == stock["strings"][1][0] and len(header.y_strings) == 6
    assert np.array_equal(tiled.recon, report.recon)


def test_method_none_codes_the_encoders_latents_without_evaluating_them_first(tiny_model, monkeypatch):
    """Nothing to refine: refine() (whose first step is a true-loss pass through g_s) is not run;
    the report's figures come from the real bytes as always."""
    image = make_image(64, 96, seed=8)
    [expected] = encode(tiny_model, [image], RefineConfig(method="ste", iterations=0))
    monkeypatch.setattr(codec, "refine_latents", lambda *a, **k: pytest.fail("refine_latents() ran for method none"))
    [report] = encode(tiny_model, [image], RefineConfig(method="none"))
    assert report.data == expected.data and report.iterations == 0
    assert (report.bpp, report.psnr) == (report.base_bpp, report.base_psnr) == (expected.bpp, expected.psnr)


def test_refinement_improves_real_bytes_rd(tiny_model):
    image = make_image(128, 128, seed=6)
    [report] = encode(tiny_model, [image], RefineConfig(iterations=150))
    assert report.loss < report.base_loss



def test_batched_refinement_equals_one_at_a_time(tiny_model):
    """Per-image losses are summed, so a batch refines each image as if alone (STE: no noise)."""
    images = [make_image(64, 64, seed=s) for s in (10, 11)]
    config = RefineConfig(method="ste", iterations=25)
    together = encode(tiny_model, images, config, batch_size=2)
    alone = [encode(tiny_model, [im], config)[0] for im in images]
    for a, b in zip(together, alone):
        assert a.loss == pytest.approx(b.loss, rel=1e-3)
        # regression: files from a batch decode alone to the reported pixels (they once did not:
        # h_s and g_s over a batch of two round differently from a batch of one)
        assert np.array_equal(decode(a.data, tiny_model)[0], a.recon)



def test_the_suite_wide_round_trip_check_is_active(every_encode_round_trips, tiny_model):
    encode(tiny_model, [make_image(64, 64, seed=s) for s in (1, 2)], RefineConfig(method="ste", iterations=2),
           batch_size=2)
    assert len(every_encode_round_trips) == 4  # refined and base file of each image, all decoded



@pytest.mark.slow
def test_other_lambda_moves_along_the_rd_curve(tiny_model):
    image = make_image(128, 128, seed=8)
    config = RefineConfig(iterations=100)
    [low] = encode(tiny_model, [image], config.with_(lmbda=TINY_LMBDA / 8))
    [high] = encode(tiny_model, [image], config.with_(lmbda=TINY_LMBDA * 8))
    assert low.bpp < high.bpp



def test_time_budget_stops_early(tiny_model):
    image = make_image(64, 64)
    [report] = encode(tiny_model, [image], RefineConfig(iterations=100000, time_budget=0.5))
    assert 0 < report.iterations < 100000



def test_coding_side_runs_single_threaded_whatever_the_caller_set(tiny_model, monkeypatch):
    """The encoder's reference decode and the decoder use one thread, so they cannot disagree."""
    from sgacodec.network import streams

    seen = []
    real = streams.encode_y

    def spy(*args):
        seen.append(torch.get_num_threads())
        return real(*args)

    monkeypatch.setattr(streams, "encode_y", spy)
    monkeypatch.setenv("SGACODEC_ISOLATE", "0")  # coding in-process, where the spy sees it (the
    # forked child that codes otherwise sets one thread itself)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        [report] = encode(tiny_model, [make_image(64, 128)], RefineConfig(method="none", tile_size=64))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 1]  # two tiles
    monkeypatch.setenv("SGACODEC_ISOLATE", "0")  # the in-process decode path
    assert np.array_equal(decode(report.data, tiny_model)[0], report.recon)


def test_parallel_coding_gives_the_bytes_of_coding_each_image_alone(tiny_model, monkeypatch):
    """Images of a batch, and the tiles of an image in worker threads, code to the bytes each
    image gives alone, in a forked child or in-process, on one torch thread each."""
    from sgacodec.network import streams

    images = [make_image(48, 140, seed=s) for s in (50, 51, 52)]
    latent_model = devices.device_model(tiny_model, torch.device("cpu"))
    with torch.no_grad():
        y, z = latent_model.analysis(torch.cat([pixels.pad(pixels.to_tensor(im)) for im in images]))
    alone = [codec.code_latents(tiny_model, y[i : i + 1], z[i : i + 1], (48, 140), tile=64)[0] for i in range(3)]

    seen = []
    real = streams.encode_y

    def spy(*args):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return real(*args)

    monkeypatch.setattr(streams, "encode_y", spy)
    monkeypatch.setenv("SGACODEC_ISOLATE", "0")  # in-process, where the spy sees the workers; the
    # images coded alone above went through the forked child: the same bytes either way
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        together = codec.code_latents(tiny_model, y, z, (48, 140), tile=64)
        assert torch.get_num_threads() == 2  # restored after the pool
    finally:
        torch.set_num_threads(before)
    for (data, rgb), (data_alone, rgb_alone) in zip(together, alone):
        assert data == data_alone and np.array_equal(rgb, rgb_alone)
    assert len(seen) == 9 and all(threads == 1 for _, threads in seen)  # 3 images x 3 tiles


@pytest.mark.parametrize("where", ["g_s", "h_s"])
def test_a_decoder_that_reproduces_the_model_differently_is_caught(tiny_model, coded, where):
    with pytest.raises(DecodeError, match="does not decode|reconstruction hash mismatch"):
        decode(coded.data, perturbed(tiny_model, where), strict=True)
    try:  # by default: the pixels, said to be inexact
        rgb, _, exact = decode(coded.data, perturbed(tiny_model, where))
    except DecodeError:  # other scales read the y string past its end: refused even so
        assert where == "h_s"
        return
    assert exact is False
    assert not np.array_equal(rgb, coded.recon)



def test_a_flipped_hash_is_said_or_refused(tiny_model, coded):
    bs = B.unpack(coded.data)
    data = forged(coded.data, recon_hash=bytes(b ^ 1 for b in bs.recon_hash))
    with pytest.raises(DecodeError, match="reconstruction hash mismatch"):
        decode(data, tiny_model, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decode says it through its result, never a warning
        rgb, _, exact = decode(data, tiny_model)
    assert np.array_equal(rgb, coded.recon) and exact is False
    assert decode(data, tiny_model, verify=False).exact is None
    rgb, _, exact = decode(coded.data, tiny_model, strict=True)  # the genuine file passes
    assert np.array_equal(rgb, coded.recon) and exact is True


def test_a_coding_step_that_hangs_is_stopped_with_one_line(tiny_model, monkeypatch):
    """The encoder's rANS coding runs, like the decoder, in a child with a time limit: CompressAI's
    encoder can loop in C++ where no signal reaches it (a NaN symbol)."""
    def hang(*args):
        time.sleep(20)  # in-process (before the fix) this returned after 20 s, with no result
        raise AssertionError("the coding step was not stopped")

    from sgacodec.network import streams

    monkeypatch.setattr(streams, "encode_z", hang)
    monkeypatch.setattr(sgacodec.config, "ENCODING_TIME", (1.0, 0.0))
    with pytest.raises(codec.EncodeError, match="entropy coding took longer than 1 s; stopped") as stopped:
        encode(tiny_model, [make_image(32, 40)], RefineConfig(method="none"))
    assert "\n" not in str(stopped.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e9])
def test_latents_rans_cannot_code_are_refused_before_coding(tiny_model, value):
    """A NaN latent (a diverged refinement, a broken model) hung the rANS encoder for good."""
    lm = devices.device_model(tiny_model, torch.device("cpu"))
    with torch.no_grad():
        y, z = lm.analysis(pixels.pad(pixels.to_tensor(make_image(32, 40))))
    y[0, 0, 0, 0] = value
    with pytest.raises(codec.EncodeError, match="cannot entropy-code this image: the latent y"):
        codec.code_latents(tiny_model, y, z, (32, 40))


def test_an_image_refined_in_tiles_is_coded_as_when_refined_whole(tiny_model):
    """encode with the refinement forced into tiles (as a large photo's runs): the same
    refinement, so the file's rate and PSNR are the whole refinement's (within what a hard
    rounding flipped by float noise moves), its progress heard per batch of tiles."""
    image = make_image(150, 260, seed=4)
    config = RefineConfig(iterations=6, tile_size=64, eval_every=1)
    heard: list[float] = []
    [tiled] = encode(tiny_model, [image], config.with_(refine_tiles=True), on_step=heard.append)
    [whole] = encode(tiny_model, [image], config.with_(refine_tiles=False))
    assert tiled.iterations == whole.iterations == 6
    assert tiled.bpp == pytest.approx(whole.bpp, rel=0.01) and tiled.psnr == pytest.approx(whole.psnr, abs=0.05)
    assert any(step != int(step) for step in heard)  # shares of a step, batch of tiles by batch
    assert np.array_equal(decode(tiled.data, tiny_model).rgb, tiled.recon)


@pytest.fixture(scope="module")
def tiled_file(tiny_model):
    """A 150x200 file in tiles of 64 (3 x 4 tiles, each its own synthesis block) and its full decode."""
    [report] = encode(tiny_model, [make_image(150, 200, seed=11)], RefineConfig(method="none", tile_size=64))
    return report.data, decode(report.data, tiny_model, strict=True).rgb


@pytest.mark.parametrize("region", [(0, 0, 1, 1), (37, 21, 50, 70), (63, 63, 2, 2), (130, 90, 500, 500),
                                    (0, 0, 200, 150), (199, 149, 1, 1)])
def test_a_region_decodes_to_the_full_decodes_pixels_from_the_tiles_it_needs(tiny_model, tiled_file, region):
    """The region's pixels equal the full decode's (clipped to the image); only the blocks the
    region meets are synthesised; the hash, which covers the whole image, is not claimed."""
    from sgacodec.codec.decoder import tiles_to_decode

    data, full = tiled_file
    x, y, w, h = region
    done = []
    result = decode(data, tiny_model, region=region, on_progress=done.append)
    assert np.array_equal(result.rgb, full[y : y + h, x : x + w]) and result.exact is None
    header = unpack(data)
    meets = len({(r // 64, c // 64) for r in range(y, min(y + h, 150)) for c in range(x, min(x + w, 200))})
    assert tiles_to_decode(header, region) == meets == sum(done)
    assert (meets < 12) == (region != (0, 0, 200, 150))


@pytest.mark.parametrize("region", [(200, 0, 1, 1), (0, 150, 1, 1), (-1, 0, 5, 5), (0, 0, 0, 5)])
def test_a_region_outside_the_image_is_refused(tiny_model, tiled_file, region):
    with pytest.raises(DecodeError, match="not inside the 200x150 image"):
        decode(tiled_file[0], tiny_model, region=region)


def test_a_region_of_a_version_1_or_2_file_is_the_crop_of_its_full_decode():
    """Golden files of the fixed layout: decoded whole, then cropped (no tiles to choose from)."""
    from sgacodec.models.checkpoints import load_checkpoint

    from .support import ROOT

    golden_model = load_checkpoint(ROOT / "tests" / "golden" / "tiny.safetensors")
    for name in ("example-tiny-v1.bin", "example-tiny-v2.bin"):
        data = (ROOT / "tests" / "golden" / name).read_bytes()
        full = decode(data, golden_model).rgb
        assert unpack(data).version < 3 and full.shape[0] > 30 and full.shape[1] > 40
        assert np.array_equal(decode(data, golden_model, region=(5, 7, 33, 21)).rgb, full[7:28, 5:38])


def test_strips_are_the_decode_row_by_row_and_check_the_hash_at_the_end(tiny_model, tiled_file):
    """Strips (Decoder.strips) hands the image over in row strips (a row of synthesis blocks each:
    the image is never held whole), the same pixels as decode's, and says exact after the last."""
    from sgacodec.codec.decoder import Strips

    data, full = tiled_file
    strips = Strips(B.unpack(data), tiny_model)
    parts = []
    for part in strips:
        assert strips.exact is None  # said only once every row has been hashed
        parts.append(part)
    assert len(parts) == 3 and all(len(p) <= 64 for p in parts)  # 150 rows in blocks of 64
    assert np.array_equal(np.concatenate(parts), full) and strips.exact is True
    region = Strips(B.unpack(data), tiny_model, region=(37, 21, 50, 70))
    assert np.array_equal(np.concatenate(list(region)), full[21:91, 37:87]) and region.exact is None
    bs = B.unpack(data)
    forged_hash = forged(data, recon_hash=bytes(b ^ 1 for b in bs.recon_hash))
    inexact = Strips(B.unpack(forged_hash), tiny_model)
    assert np.array_equal(np.concatenate(list(inexact)), full) and inexact.exact is False
    assert "hash mismatch" in inexact.warning
    with pytest.raises(DecodeError, match="reconstruction hash mismatch"):
        list(Strips(B.unpack(forged_hash), tiny_model, strict=True))


def test_the_encoders_synthesis_reads_y_hat_in_place_and_gives_the_decoders_pixels(tiny_model):
    """The encoder synthesises the decoder's pixels from its own y^ (TileDecoder.from_y_hat): each
    tile read as a view of that y^, never copied whole again, and the pixels those of a decode of
    the file's streams."""
    from concurrent.futures import ThreadPoolExecutor

    from sgacodec.codec import tiled
    from sgacodec.network.grid import Grid

    image = make_image(100, 150, seed=4)
    [report] = encode(tiny_model, [image], RefineConfig(method="none", tile_size=64))
    header = unpack(report.data)
    net, grid = coding_net(tiny_model.net, 3), Grid(100, 150, 64)
    with ThreadPoolExecutor(2) as pool:
        streams = tiled.TileDecoder.from_streams(net, grid, False, header.z_string, header.y_strings, pool)
        for t in grid.tiles:
            streams._decode_y(t)
        rows = range(grid.shape[0])
        y_hat = torch.cat([torch.cat([streams.read_y(*t.y) for t in grid.row(i)], -1) for i in rows], -2)
        kept = tiled.TileDecoder.from_y_hat(net, grid, y_hat, pool)
        base = y_hat.untyped_storage().data_ptr()
        assert all(t.untyped_storage().data_ptr() == base for t in kept.y_hat.values())
        assert np.array_equal(kept.image(), report.recon)
        assert np.array_equal(streams.image(), report.recon)
