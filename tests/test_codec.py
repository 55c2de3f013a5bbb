"""End-to-end: refinement, entropy coding, and the stock CompressAI decoder."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from sgacodec import metrics
from sgacodec.bitstream import pack, unpack
from sgacodec.codec import DecodeError, code_latents, coding_net, decode, encode, pad, to_tensor
from sgacodec.hyperprior import LatentModel
from sgacodec.refine import RefineConfig, refine, true_rd

from .conftest import TINY_LMBDA, make_image


def test_refinement_lowers_the_true_rd_loss(tiny_model):
    image = make_image(128, 128, seed=3)
    x = to_tensor(image)
    lm = LatentModel(tiny_model.net)
    result = refine(lm, x, (128, 128), TINY_LMBDA, RefineConfig(iterations=150))
    assert result.iterations == 150
    assert result.best.loss.item() < 0.98 * result.base.loss.item()
    # the kept latents really have the loss reported for them
    again = true_rd(lm, x, (128, 128), result.y, result.z, TINY_LMBDA)
    assert again.loss.item() == pytest.approx(result.best.loss.item(), rel=1e-5)


@pytest.mark.parametrize("method,three_class", [("ste", False), ("uniform", False), ("atanh", False),
                                                ("linear", True), ("cosine", False), ("ssl", True)])
def test_every_method_never_returns_worse_than_the_encoder(tiny_model, method, three_class):
    image = make_image(64, 64, seed=4)
    lm = LatentModel(tiny_model.net)
    result = refine(lm, to_tensor(image), (64, 64), TINY_LMBDA,
                    RefineConfig(method=method, three_class=three_class, iterations=30))
    assert result.best.loss.item() <= result.base.loss.item()


@pytest.mark.parametrize("size", [(217, 333), (1, 1), (65, 63), (64, 128)])
def test_odd_sizes_round_trip_to_the_reported_pixels(tiny_model, size):
    image = make_image(*size, seed=1)
    [report] = encode(tiny_model, [image], RefineConfig(iterations=10))
    rgb, header = decode(report.data, tiny_model)
    assert rgb.shape == (*size, 3) and (header.height, header.width) == size
    assert np.array_equal(rgb, report.recon)
    assert report.psnr == pytest.approx(metrics.psnr(image, rgb))
    assert report.bpp == pytest.approx(8 * len(report.data) / (size[0] * size[1]))


def test_decode_is_compressais_own_decompress(tiny_model):
    """decode = the model's own decompress() of the file's strings, on the coding network (the
    model with h_s and g_s in float64, file version 2)."""
    image = make_image(100, 150, seed=2)
    [report] = encode(tiny_model, [image], RefineConfig(iterations=20))
    header = unpack(report.data)
    assert header.version == 2
    net = coding_net(tiny_model, header.version)
    stock = net.decompress([[header.y_string], [header.z_string]], header.z_shape)["x_hat"]
    expected = stock[0, :, :100, :150].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    rgb, _ = decode(report.data, tiny_model)
    assert np.array_equal(rgb, expected)


def test_coding_net_runs_the_transforms_in_float64(tiny_model):
    net = coding_net(tiny_model)
    assert coding_net(tiny_model) is net  # made once per model
    assert all(p.dtype == torch.float64 for m in (net.h_s, net.g_s) for p in m.parameters())
    assert all(p.dtype == torch.float32 for p in tiny_model.net.parameters())  # the model is untouched
    y = torch.randn(1, tiny_model.net.M, 4, 4)
    with torch.no_grad():
        out = net.g_s(y)
        exact = copy.deepcopy(tiny_model.net.g_s).double()(y.double())
    assert out.dtype == torch.float32 and torch.equal(out, exact.float())


def test_version_1_files_still_decode(tiny_model):
    """Files written before version 2 were coded with the float32 model; they decode as they were."""
    image = make_image(70, 90, seed=4)
    y, z = LatentModel(tiny_model.net).analysis(pad(to_tensor(image)))
    [(data, rgb)] = code_latents(tiny_model, y, z, (70, 90), version=1)
    assert data[4] == 1 and unpack(data).version == 1
    decoded, _ = decode(data, tiny_model, strict=True)
    assert np.array_equal(decoded, rgb)
    # one that does not decode says that version 1 files may not decode on another CPU
    cut = pack(dataclasses.replace(unpack(data), z_string=b""))
    with pytest.raises(DecodeError, match="version 1 file"):
        decode(cut, tiny_model)


def test_unrefined_encode_matches_compressais_compress(tiny_model):
    """method none codes exactly what the model's own compress() codes for the padded image (on
    the coding network: the model with float64 h_s, g_s and rANS tables)."""
    image = make_image(128, 192, seed=5)
    [report] = encode(tiny_model, [image], RefineConfig(method="none"))
    header = unpack(report.data)
    stock = coding_net(tiny_model).compress(pad(to_tensor(image)))
    assert header.y_string == stock["strings"][0][0]
    assert header.z_string == stock["strings"][1][0]
    assert report.bpp == report.base_bpp and report.iterations == 0


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


def test_other_lambda_moves_along_the_rd_curve(tiny_model):
    image = make_image(128, 128, seed=8)
    config = RefineConfig(iterations=100)
    [low] = encode(tiny_model, [image], config, lmbda=TINY_LMBDA / 8)
    [high] = encode(tiny_model, [image], config, lmbda=TINY_LMBDA * 8)
    assert low.bpp < high.bpp


def test_time_budget_stops_early(tiny_model):
    image = make_image(64, 64)
    [report] = encode(tiny_model, [image], RefineConfig(iterations=100000, time_budget=0.5))
    assert 0 < report.iterations < 100000


def test_coding_side_runs_single_threaded_whatever_the_caller_set(tiny_model, monkeypatch):
    """The encoder's reference decode and the decoder use one thread, so they cannot disagree."""
    seen = []
    real = LatentModel.compress_latents

    def spy(self, y, z):
        seen.append(torch.get_num_threads())
        return real(self, y, z)

    monkeypatch.setattr(LatentModel, "compress_latents", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        [report] = encode(tiny_model, [make_image(64, 64)], RefineConfig(method="none"))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [1]
    monkeypatch.setenv("SGACODEC_ISOLATE", "0")  # the in-process decode path
    assert np.array_equal(decode(report.data, tiny_model)[0], report.recon)


def _reference_refine(lm, x, size, lmbda, iterations, tau_of, lr_of, method="ssl", seed=0):
    """The refinement loop written out plainly (eager, one image, best kept on the host), with the
    schedule given as functions of the step: what refine() must reproduce bit for bit."""
    from sgacodec.refine import relaxed_rd

    config = RefineConfig(method=method)
    torch.manual_seed(seed)
    with torch.no_grad():
        y, z = lm.analysis(x)
    y, z = y.detach().clone(), z.detach().clone()
    best = true_rd(lm, x, size, y, z, lmbda).loss
    best_y = y.clone()
    y.requires_grad_(True)
    z.requires_grad_(True)
    optimiser = torch.optim.Adam([y, z], lr=lr_of(0))
    for step in range(iterations):
        optimiser.param_groups[0]["lr"] = lr_of(step)
        optimiser.zero_grad()
        relaxed_rd(lm, x, size, y, z, lmbda, config, tau_of(step)).loss.sum().backward()
        optimiser.step()
        current = true_rd(lm, x, size, y.detach(), z.detach(), lmbda).loss
        if current < best:
            best, best_y = current, y.detach().clone()
    return best, best_y


@pytest.mark.parametrize("method", ["ssl", "atanh"])
def test_paper_schedule_is_bit_identical_to_the_plain_loop(tiny_model, method):
    """schedule="paper" (the default): tau = min(exp(-1e-3 t), 1), Adam lr 0.005, for any length."""
    import math

    x = to_tensor(make_image(64, 64, seed=40))
    lm = LatentModel(tiny_model.net)
    result = refine(lm, x, (64, 64), TINY_LMBDA, RefineConfig(method=method, iterations=30))
    best, best_y = _reference_refine(lm, x, (64, 64), TINY_LMBDA, 30,
                                     lambda t: min(math.exp(-1e-3 * t), 1.0), lambda t: 0.005, method)
    assert result.best.loss.item() < result.base.loss.item()
    assert torch.equal(result.best.loss, best)
    assert torch.equal(result.y, best_y)


def test_budget_schedule_anneals_within_the_run(tiny_model):
    """schedule="budget": tau = tau_end ** (t / T) and lr = 0.005 * sqrt(2000 / T) with a cosine
    decay over the last 40%, computed by refine() exactly as written here."""
    import math

    x = to_tensor(make_image(64, 64, seed=41))
    lm = LatentModel(tiny_model.net)
    T, tau_end = 40, 0.05
    config = RefineConfig(iterations=T, schedule="budget", tau_end=tau_end, lr_power=0.5,
                          lr_boost_max=10.0, lr_decay=0.4)
    peak, start = 0.005 * math.sqrt(2000 / T), 0.6 * T

    def lr_of(t):
        return peak if t < start else peak * 0.5 * (1 + math.cos(math.pi * (t - start) / (T - start)))

    result = refine(lm, x, (64, 64), TINY_LMBDA, config)
    best, best_y = _reference_refine(lm, x, (64, 64), TINY_LMBDA, T,
                                     lambda t: min(math.exp(math.log(tau_end) / T * t), 1.0), lr_of)
    assert torch.allclose(result.best.loss, best, rtol=1e-6)
    assert torch.allclose(result.y, best_y, atol=1e-5)
    paper = refine(lm, x, (64, 64), TINY_LMBDA, RefineConfig(iterations=T))
    assert not torch.equal(paper.y, result.y)  # the schedule is really in use


def test_budget_schedule_turns_a_time_budget_into_an_iteration_count(tiny_model, monkeypatch):
    from sgacodec import refine as refine_module

    planned = []
    real = refine_module.schedule_at

    def spy(step, total, config):
        planned.append((step, total))
        return real(step, total, config)

    monkeypatch.setattr(refine_module, "schedule_at", spy)
    x = to_tensor(make_image(64, 64, seed=42))
    lm = LatentModel(tiny_model.net)
    config = RefineConfig(iterations=100000, time_budget=1.0, schedule="budget")
    result = refine(lm, x, (64, 64), TINY_LMBDA, config)
    # steps 0..4 run under the provisional T (step 0 untimed, steps 1..4 timed), then the estimate
    probe = 1 + refine_module.BUDGET_PROBE_STEPS
    assert [total for _, total in planned[:probe]] == [100000] * probe
    totals = {total for _, total in planned[probe:]}
    assert len(totals) == 1  # one estimate, kept to the end
    [estimate] = totals
    assert probe < estimate < 100000
    assert result.iterations <= estimate
    assert result.seconds < 1.5
    assert result.best.loss.item() <= result.base.loss.item()
