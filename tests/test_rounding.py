import math

import pytest
import torch

from sgacodec.rounding import (
    THREE_CLASS_METHODS,
    TWO_CLASS_METHODS,
    gumbel_sample,
    p_floor,
    soft_round,
    temperature,
    three_class_logits,
    two_class_logits,
)

R = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)


@pytest.mark.parametrize("method", TWO_CLASS_METHODS)
def test_two_class_probabilities_are_a_distribution(method):
    probs = torch.softmax(two_class_logits(R, method), dim=-1)
    assert torch.all(probs >= 0)
    assert torch.allclose(probs.sum(-1), torch.ones_like(R))


@pytest.mark.parametrize("method", TWO_CLASS_METHODS)
def test_limits_round_to_the_nearest_integer(method):
    near = torch.tensor([1e-6, 1 - 1e-6], dtype=torch.float64)
    p = p_floor(near, method)
    assert p[0] > 0.99 and p[1] < 0.01
    # symmetric: p(floor | r) = 1 - p(floor | 1 - r)
    assert torch.allclose(p_floor(R, method), 1 - p_floor(1 - R, method), atol=1e-6)


def test_documented_probabilities():
    r = torch.tensor([0.1, 0.3, 0.5, 0.8], dtype=torch.float64)
    assert torch.allclose(p_floor(r, "linear"), 1 - r)
    assert torch.allclose(p_floor(r, "cosine"), torch.cos(math.pi * r / 2) ** 2)
    assert torch.allclose(p_floor(r, "ssl", a=2.3), torch.sigmoid(-2.3 * torch.logit(r)))


def test_ssl_with_a_1_is_linear():
    assert torch.allclose(p_floor(R, "ssl", a=1.0), p_floor(R, "linear"), atol=1e-9)
    assert torch.allclose(torch.softmax(two_class_logits(R, "ssl", a=1.0), -1),
                          torch.softmax(two_class_logits(R, "linear"), -1), atol=1e-9)


def test_ssl_large_a_approaches_hard_rounding():
    r = torch.tensor([0.2, 0.45, 0.55, 0.8], dtype=torch.float64)
    assert torch.allclose(p_floor(r, "ssl", a=50.0), torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64),
                          atol=1e-3)


@pytest.mark.parametrize("method,three_class", [(m, False) for m in TWO_CLASS_METHODS]
                         + [(m, True) for m in THREE_CLASS_METHODS])
def test_soft_round_gradients_finite_and_values_in_range(method, three_class):
    torch.manual_seed(0)
    v = torch.tensor([-2.0, -1.5, -0.3, 0.0, 1e-7, 0.4999, 0.5, 0.9999999, 3.0, 7.25],
                     requires_grad=True)
    out = soft_round(v, method, tau=0.3, three_class=three_class)
    out.sum().backward()
    assert torch.isfinite(v.grad).all()
    span = 1.0 if not three_class else 1.5
    assert torch.all((out - v.detach()).abs() <= span + 1e-5)


@pytest.mark.parametrize("method", THREE_CLASS_METHODS)
def test_three_class_prefers_the_nearest_candidate(method):
    d = torch.tensor([[-1.0, 0.1, 1.1]])  # offsets to round-1, round, round+1 for v = round + 0.1
    logits = three_class_logits(d, method)
    probs = torch.softmax(logits, -1)
    assert torch.allclose(probs.sum(-1), torch.ones(1))
    assert probs[0].argmax() == 1


def test_gumbel_sample_is_a_distribution_and_sharpens_with_tau():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.7, 0.3]])).repeat(2000, 1)
    soft = gumbel_sample(logits, 1.0)
    assert torch.allclose(soft.sum(-1), torch.ones(2000))
    cold = gumbel_sample(logits, 0.05)
    assert (cold.max(-1).values > 0.99).float().mean() > 0.95
    # at tau = 1 the sample picks the first class with probability about 0.7
    assert abs((soft.argmax(-1) == 0).float().mean().item() - 0.7) < 0.05


def test_ste_and_uniform():
    v = torch.tensor([0.2, 0.7, -1.6], requires_grad=True)
    out = soft_round(v, "ste", 1.0)
    assert torch.equal(out.detach(), torch.round(v.detach()))
    out.sum().backward()
    assert torch.equal(v.grad, torch.ones(3))
    noisy = soft_round(v.detach(), "uniform", 1.0)
    assert torch.all((noisy - v.detach()).abs() <= 0.5)


def test_temperature_schedule():
    assert temperature(0) == 1.0
    assert temperature(0, tau_max=0.5) == 0.5
    assert temperature(1000) == pytest.approx(math.exp(-1.0))
    assert temperature(500, tau_max=0.2) == 0.2
    values = [temperature(t) for t in range(0, 3000, 100)]
    assert values == sorted(values, reverse=True)
    t = torch.arange(0, 2000, dtype=torch.float32)
    assert torch.allclose(temperature(t, 0.5), torch.tensor([temperature(int(s), 0.5) for s in t]))
