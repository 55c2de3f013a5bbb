"""The refinement loop: lower true R-D loss, never worse than the encoder, speed paths, and the
caller's network left untouched."""

import copy
import warnings

import numpy as np
import pytest
import torch

from sgacodec.codec.batching import encode
from sgacodec.codec.decoder import decode
from sgacodec.codec.pixels import pad, to_tensor
from sgacodec.config import RefineConfig
from sgacodec.network.latent_model import LatentModel
from sgacodec.refinement import loop as refine_module
from sgacodec.refinement import speed
from sgacodec.refinement.loop import refine_latents as refine
from sgacodec.refinement.loop import true_rd

from .support import TINY_LMBDA, make_image


@pytest.mark.slow
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



def test_compile_failure_falls_back_to_eager_with_the_same_result(tiny_model, monkeypatch):
    """A torch.compile that breaks (no compiler, unsupported op) never breaks refinement."""

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no backend")
        return call

    image = to_tensor(make_image(64, 64, seed=30))
    lm = LatentModel(tiny_model.net)
    config = RefineConfig(method="ste", iterations=15)
    eager = refine(lm, image, (64, 64), TINY_LMBDA, config)
    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(speed, "_compile_failed", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = refine(lm, image, (64, 64), TINY_LMBDA, config.with_(compile="default"))
    assert any("torch.compile failed" in str(w.message) for w in caught)
    assert torch.equal(fallback.best.loss, eager.best.loss)
    assert torch.equal(fallback.y, eager.y)
    monkeypatch.setattr(speed, "_compile_failed", False)



def test_cpu_defaults_are_eager_and_unchanged(tiny_model):
    assert refine_module.compile_mode(RefineConfig(), torch.device("cpu")) is None
    assert refine_module.compile_mode(RefineConfig(), torch.device("cuda")) in ("default", None)
    with pytest.raises(ValueError):
        RefineConfig(compile="fastest")
    with pytest.raises(ValueError):
        RefineConfig(precision="fp8")



def test_bf16_relaxed_pass_and_sparse_evaluation_stay_never_worse(tiny_model):
    image = to_tensor(make_image(64, 64, seed=31))
    lm = LatentModel(tiny_model.net)
    for config in (RefineConfig(iterations=40, precision="bf16"), RefineConfig(iterations=40, eval_every=7)):
        result = refine(lm, image, (64, 64), TINY_LMBDA, config)
        assert result.best.loss.item() <= result.base.loss.item()
        again = true_rd(lm, image, (64, 64), result.y, result.z, TINY_LMBDA)
        assert again.loss.item() == pytest.approx(result.best.loss.item(), rel=1e-5)
        assert all(p.dtype == torch.float32 for p in tiny_model.net.parameters())



def test_sgacodec_compile_environment_override(monkeypatch):
    monkeypatch.setenv("SGACODEC_COMPILE", "off")
    assert refine_module.compile_mode(RefineConfig(), torch.device("cuda")) is None
    monkeypatch.setenv("SGACODEC_COMPILE", "bogus")
    with pytest.raises(ValueError):
        refine_module.compile_mode(RefineConfig(), torch.device("cpu"))



needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")



@needs_cuda
@pytest.mark.parametrize("compile_mode,precision", [("off", "fp32"), ("default", "tf32"), ("off", "bf16")])
def test_cuda_fast_paths_match_the_cpu_and_decode_exactly(tiny_model, compile_mode, precision):
    """channels_last, fused Adam, TF32 / bf16 and torch.compile on the GPU: same R-D as the CPU
    (to the float noise that flips a few rounding decisions), files that decode to the reported pixels."""


    images = [make_image(64, 96, seed=s) for s in (32, 33)]
    config = RefineConfig(method="ste", iterations=40, compile=compile_mode, precision=precision)
    cpu = encode(tiny_model, images, config, batch_size=2)
    gpu = encode(tiny_model, images, config, device="cuda", batch_size=2)
    for c, g in zip(cpu, gpu):
        assert g.loss == pytest.approx(c.loss, rel=0.03)
        assert g.loss <= g.base_loss * 1.02  # real bytes; "never worse" holds for the true loss
        rgb, _, _ = decode(g.data, tiny_model)
        assert np.array_equal(rgb, g.recon)
    assert all(p.device.type == "cpu" and p.is_contiguous() for p in tiny_model.net.parameters())


def test_refine_leaves_the_callers_network_as_it_found_it(tiny_model):
    net = copy.deepcopy(tiny_model.net)
    net.g_s[0].weight.requires_grad_(True)  # whatever the caller had set stays set
    frozen_before = {n: p.requires_grad for n, p in net.named_parameters()}
    values_before = {n: p.detach().clone() for n, p in net.named_parameters()}
    image = to_tensor(make_image(64, 64, seed=12))
    refine(LatentModel(net), image, (64, 64), TINY_LMBDA, RefineConfig(iterations=5, channels_last=True))
    assert {n: p.requires_grad for n, p in net.named_parameters()} == frozen_before
    assert all(torch.equal(p, values_before[n]) and p.is_contiguous() for n, p in net.named_parameters())
    assert all(p.grad is None for p in net.parameters())


def _reference_refine(lm, x, size, lmbda, iterations, tau_of, lr_of, method="ssl", seed=0):
    """The refinement loop written out plainly (eager, one image, best kept on the host), with the
    schedule given as functions of the step: what refine() must reproduce bit for bit."""
    from sgacodec.refinement.loop import relaxed_rd

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
    """schedule="paper": tau = min(exp(-1e-3 t), 1), Adam lr 0.005, for any length."""
    import math

    x = to_tensor(make_image(64, 64, seed=40))
    lm = LatentModel(tiny_model.net)
    result = refine(lm, x, (64, 64), TINY_LMBDA, RefineConfig(method=method, iterations=30, schedule="paper"))
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
                          lr_boost_max=10.0, lr_decay=0.4, lr_floor=0.0)
    peak, start = 0.005 * math.sqrt(2000 / T), 0.6 * T

    def lr_of(t):
        return peak if t < start else peak * 0.5 * (1 + math.cos(math.pi * (t - start) / (T - start)))

    result = refine(lm, x, (64, 64), TINY_LMBDA, config)
    best, best_y = _reference_refine(lm, x, (64, 64), TINY_LMBDA, T,
                                     lambda t: min(math.exp(math.log(tau_end) / T * t), 1.0), lr_of)
    assert torch.allclose(result.best.loss, best, rtol=1e-6)
    assert torch.allclose(result.y, best_y, atol=1e-5)
    paper = refine(lm, x, (64, 64), TINY_LMBDA, RefineConfig(iterations=T, schedule="paper"))
    assert not torch.equal(paper.y, result.y)  # the schedule is really in use


def test_budget_schedule_turns_a_time_budget_into_an_iteration_count(tiny_model, monkeypatch):
    from sgacodec.refinement import loop as refine_module

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
    assert result.best.loss.item() <= result.base.loss.item()
def test_a_refinement_continued_with_its_adam_state_and_schedule_is_one_refinement(tiny_model):
    """Two chained halves (the second from the first's latents, Adam state and step) give what one
    refinement of the whole length gives, when each half's best iterate is its last (STE,
    deterministic; the true loss evaluated at the halves' ends only): what encoding to a target
    relies on."""
    lm = LatentModel(tiny_model.net)
    x = to_tensor(make_image(64, 64, seed=4))
    config = RefineConfig(method="ste", iterations=12, lr=0.002, eval_every=6, schedule="paper")
    whole = refine(lm, x, (64, 64), TINY_LMBDA, config, keep_history=True)
    first = refine(lm, x, (64, 64), TINY_LMBDA, config.with_(iterations=6), keep_history=True)
    losses = [h["loss"][0] for h in whole.history]
    assert len(losses) == 3 and losses == sorted(losses, reverse=True)  # the best iterates are the last
    second = refine(lm, x, (64, 64), TINY_LMBDA, config.with_(iterations=6), first.y, first.z, start_step=6,
                    adam=first.adam)
    assert torch.allclose(second.y, whole.y, atol=1e-6) and torch.allclose(second.z, whole.z, atol=1e-6)
    restarted = refine(lm, x, (64, 64), TINY_LMBDA, config.with_(iterations=6), first.y, first.z)
    assert not torch.allclose(restarted.y, whole.y, atol=1e-6)  # without Adam's state: another path
    with pytest.raises(ValueError, match="paper's schedule"):  # the budget schedule plans one whole run
        refine(lm, x, (64, 64), TINY_LMBDA, config.with_(iterations=6, schedule="budget"), first.y, first.z,
               start_step=6, adam=first.adam)


def test_select_keeps_the_iterate_that_minimises_the_given_score(tiny_model):
    """``select`` replaces the true loss as what the returned iterate minimises (encoding to a
    target keeps the iterate predicted nearest its goal); here the fewest bits of all iterates."""
    image = make_image(64, 64, seed=5)
    x, lm = to_tensor(image), LatentModel(tiny_model.net)
    config = RefineConfig(iterations=12, lmbda=TINY_LMBDA)
    by_loss = refine(lm, x, (64, 64), TINY_LMBDA, config, keep_history=True)
    fewest = refine(lm, x, (64, 64), TINY_LMBDA, config, keep_history=True, select=lambda t: t.bpp)
    bpps = [h["bpp"][0] for h in fewest.history]  # the encoder's latents and each step's
    assert fewest.best.bpp.item() == pytest.approx(min(bpps))
    assert by_loss.best.loss.item() == pytest.approx(min(h["loss"][0] for h in by_loss.history))
    assert fewest.best.bpp.item() < by_loss.best.bpp.item()  # another iterate than the best loss's
    again = true_rd(lm, x, (64, 64), fewest.y, fewest.z, TINY_LMBDA)  # the latents are that iterate's
    assert again.bpp.item() == pytest.approx(fewest.best.bpp.item(), rel=1e-5)


@pytest.mark.parametrize("method", ["ssl", "uniform", "ste"])
def test_refinement_in_tiles_is_the_whole_images(tiny_model, method):
    """An image of several tiles (odd sizes; tiles smaller than the image, and one tile) refines in
    tiles to the latents and losses of the whole-image refinement (the same noise, the gradient
    accumulated tile by tile): within float rounding."""
    from sgacodec.network.grid import Grid
    from sgacodec.refinement.tiled import tiled_steps

    image = make_image(150, 260, seed=1)
    x = pad(to_tensor(image))
    latent_model = LatentModel(tiny_model.net)
    with torch.no_grad():
        y, z = latent_model.analysis(x)
    assert tiled_steps(latent_model, Grid(150, 260, 64)) is not None  # 3 x 5 tiles
    assert tiled_steps(latent_model, Grid(150, 260, 512)) is None  # one tile: the whole image
    results = {tile: refine(latent_model, x, image.shape[:2], TINY_LMBDA,
                            RefineConfig(method=method, iterations=8, tile_size=tile, eval_every=1,
                                         refine_tiles=True), y, z)
               for tile in (0, 64, 512)}
    whole = results[0]
    for tile in (64, 512):
        tiled = results[tile]
        assert torch.allclose(tiled.y, whole.y, atol=1e-4) and torch.allclose(tiled.z, whole.z, atol=1e-4)
        for a, b in ((tiled.base, whole.base), (tiled.best, whole.best)):
            assert torch.allclose(a.loss, b.loss, rtol=1e-5) and torch.allclose(a.bpp, b.bpp, rtol=1e-5)
    assert whole.best.loss < whole.base.loss


def test_small_images_refine_whole_and_large_ones_in_tiles():
    """The automatic choice (refine_tiles None): whole while the batch's padded pixels fit
    WHOLE_REFINE_MEGAPIXELS on the device, in tiles beyond; never in tiles for one tile or a
    context model; True and False force it."""
    from sgacodec.config import WHOLE_REFINE_MEGAPIXELS
    from sgacodec.network.grid import Grid
    from sgacodec.refinement.tiled import refines_in_tiles

    auto = RefineConfig()
    kodak, photo = Grid(512, 768, 512), Grid(3000, 4000, 512)
    assert not refines_in_tiles(auto, kodak, "cpu") and refines_in_tiles(auto, photo, "cpu")
    assert refines_in_tiles(auto, kodak, "cpu", images=int(WHOLE_REFINE_MEGAPIXELS["cpu"] * 1e6 // (512 * 768)) + 1)
    assert not refines_in_tiles(auto, Grid(2048, 2048, 512), "cuda")  # 4 MP: whole on a GPU
    assert refines_in_tiles(auto, Grid(6000, 8000, 512), "cuda")
    assert not refines_in_tiles(auto, photo, "cpu", has_context=True)
    assert not refines_in_tiles(auto, Grid(3000, 4000, 0), "cpu")  # one tile
    assert refines_in_tiles(auto.with_(refine_tiles=True), kodak, "cpu")
    assert not refines_in_tiles(auto.with_(refine_tiles=False), photo, "cpu")


def test_tiles_of_one_shape_refine_as_one_batch_and_a_continued_run_continues(tiny_model):
    """Tiles of the same crop geometry go through the networks together (a batch of interior
    tiles); a refinement continued from another's latents, step and Adam state (as a target's
    search continues its chain) is the one run straight through, in tiles too."""
    from sgacodec.network.grid import Grid
    from sgacodec.refinement.tiled import tiled_steps

    image = make_image(400, 400, seed=2)
    x = pad(to_tensor(image))
    latent_model = LatentModel(tiny_model.net)
    with torch.no_grad():
        y, z = latent_model.analysis(x)
    steps = tiled_steps(latent_model, Grid(400, 400, 64), batch=4)
    assert max(len(b) for b in steps.batches) == 4 and sum(len(b) for b in steps.batches) == 49
    config = RefineConfig(iterations=4, tile_size=64, eval_every=1, schedule="paper", refine_tiles=True)
    batched = refine(latent_model, x, (400, 400), TINY_LMBDA, config, y, z)
    whole = refine(latent_model, x, (400, 400), TINY_LMBDA, config.with_(tile_size=0), y, z)
    assert torch.allclose(batched.best.loss, whole.best.loss, rtol=1e-4)  # float32 sums in another order
    first = refine(latent_model, x, (400, 400), TINY_LMBDA, config.with_(iterations=2), y, z)
    then = refine(latent_model, x, (400, 400), TINY_LMBDA, config.with_(iterations=2, seed=config.seed + 2),
                  first.y, first.z, start_step=2, adam=first.adam)
    assert first.iterations == then.iterations == 2 and then.adam is not None
    assert then.best.loss <= then.base.loss  # the best iterate is kept: never worse than where it began
    assert torch.allclose(then.base.loss, first.best.loss, rtol=1e-5)  # it began where the first ended
