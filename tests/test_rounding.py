import math

import pytest
import torch

from sgacodec.config import DEFAULT_TAU_END, THREE_CLASS_METHODS, TWO_CLASS_METHODS, RefineConfig
from sgacodec.refinement.rounding import gumbel_sample, p_floor, soft_round, three_class_logits, two_class_logits
from sgacodec.refinement.schedules import (
    budget_learning_rate,
    budget_rate,
    budget_temperature,
    iterations_for_budget,
    schedule_at,
    temperature,
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


def test_paper_schedule_is_the_papers_formula_for_any_run_length():
    config = RefineConfig(schedule="paper")
    assert config.lr == 0.005 and config.temp_rate == 1e-3
    for total in (25, 100, 2000, 5000):
        for step in (0, 1, 17, 99, 500, 1999, 4000):
            tau, lr = schedule_at(step, total, config)
            assert tau == min(math.exp(-1e-3 * step), 1.0)
            assert lr == 0.005
    tau, _ = schedule_at(300, 100, config.with_(tau_max=0.5, temp_rate=2e-3))
    assert tau == min(math.exp(-2e-3 * 300), 0.5)


def test_budget_temperature_reaches_its_end_value_at_T():
    for total in (10, 25, 100, 200, 2000):
        for tau_end in (DEFAULT_TAU_END, 0.05, 0.01):
            assert budget_temperature(0, total, 1.0, tau_end) == 1.0
            assert budget_temperature(total, total, 1.0, tau_end) == pytest.approx(tau_end, rel=1e-12)
            half = total // 2
            assert budget_temperature(half, total, 1.0, tau_end) == pytest.approx(
                tau_end ** (half / total), rel=1e-12)
            values = [budget_temperature(t, total, 1.0, tau_end) for t in range(total + 1)]
            assert values == sorted(values, reverse=True)
    assert budget_temperature(0, 100, 0.5) == 0.5  # tau_max caps it as in the paper's schedule
    t = torch.arange(0, 100, dtype=torch.float32)
    assert torch.allclose(budget_temperature(t, 100, 0.7, 0.05),
                          torch.tensor([budget_temperature(int(s), 100, 0.7, 0.05) for s in t]))
    with pytest.raises(ValueError):
        budget_rate(100, 1.5)
    with pytest.raises(ValueError):
        budget_rate(0)


def test_budget_schedule_at_2000_steps_is_the_papers_exactly():
    assert budget_rate(2000) == 1e-3
    paper, budget = RefineConfig(schedule="paper"), RefineConfig(schedule="budget")
    assert all(schedule_at(t, 2000, budget) == schedule_at(t, 2000, paper) for t in range(2000))
    floored = budget.with_(lr_decay=0.3, lr_floor=1.0)
    assert all(schedule_at(t, 2000, floored) == schedule_at(t, 2000, paper) for t in range(2000))
    # shorter runs anneal faster and with a larger step size
    tau, lr = schedule_at(50, 100, budget)
    assert tau == pytest.approx(math.exp(-1.0)) and lr > paper.lr
    # by default the step size eases from the boosted peak back to the paper's over the run's second
    # half (lr_decay 0.5, lr_floor 1)
    peak = paper.lr * math.sqrt(2000 / 200)
    assert schedule_at(0, 200, budget)[1] == schedule_at(99, 200, budget)[1] == pytest.approx(peak)
    assert schedule_at(150, 200, budget)[1] == pytest.approx((peak + paper.lr) / 2)
    assert schedule_at(199, 200, budget)[1] == pytest.approx(paper.lr, rel=1e-3)


def test_budget_learning_rate():
    # peak: lr * clamp((2000 / T) ** power, 1, boost_max)
    assert budget_learning_rate(0, 2000, 0.005) == 0.005
    assert budget_learning_rate(0, 5000, 0.005) == 0.005
    assert budget_learning_rate(0, 500, 0.005, power=0.5) == pytest.approx(0.01)
    assert budget_learning_rate(0, 20, 0.005, power=0.5, boost_max=4.0) == pytest.approx(0.02)
    # cosine decay to 0 over the last `decay` share of the run
    lrs = [budget_learning_rate(t, 200, 0.01, power=0.0, decay=0.25) for t in range(201)]
    assert lrs[:150] == [0.01] * 150
    assert lrs[175] == pytest.approx(0.005) and lrs[200] == pytest.approx(0.0, abs=1e-15)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert budget_learning_rate(199, 200, 0.01, power=0.0, decay=0.0) == 0.01
    # floor: the cosine ends at floor * lr (never above the peak); floor 1 at T >= 2000 is constant
    lrs = [budget_learning_rate(t, 100, 0.005, power=0.5, boost_max=4.0, decay=0.5, floor=1.0)
           for t in range(101)]
    assert lrs[0] == pytest.approx(0.02) and lrs[100] == pytest.approx(0.005)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert all(budget_learning_rate(t, 2000, 0.005, decay=0.3, floor=1.0) == 0.005 for t in range(2000))


def test_time_budget_conversion():
    # 4 steps done at 0.1 s per step, 10 s left: 95% of 10 s holds 95 more steps
    assert iterations_for_budget(4, 0.1, 10.0, cap=2000) == 99
    assert iterations_for_budget(4, 0.1, 10.0, cap=2000, margin=1.0) == 104
    assert iterations_for_budget(4, 0.1, 10.0, cap=50) == 50  # never beyond the configured count
    assert iterations_for_budget(4, 0.1, -1.0, cap=2000) == 4  # time is up: stop now
    assert iterations_for_budget(4, 0.0, 1.0, cap=300) == 300


def test_schedule_config_is_checked():
    with pytest.raises(ValueError):
        RefineConfig(schedule="cosine")
    with pytest.raises(ValueError):
        RefineConfig(schedule="budget", tau_end=1.0)
    with pytest.raises(ValueError):
        RefineConfig(schedule="budget", lr_decay=1.5)
    with pytest.raises(ValueError):
        RefineConfig(schedule="budget", lr_floor=-1.0)
