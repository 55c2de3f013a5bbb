"""The refinement's schedules, in one place (docs/method.md, "Schedule"): the temperature tau,
the learning rate, the budget-aware plan, the "auto" rule, and the CPU's default budget.

    paper:  tau(t) = min(exp(-c t), tau_max),  lr constant            (c = temp_rate, 1e-3)
    budget: tau(t) = min(tau_end ** (t / T), tau_max) over the run's T steps, lr boosted for short
            runs and eased back over the run's end (``budget_learning_rate``); at T = 2000 and
            the defaults it is the paper's run
    auto:   budget up to PAPER_ITERATIONS iterations, paper beyond

With a time budget, the budget schedule times its first steps and plans T from the pace
(``iterations_for_budget``). Torch-free: tensors are accepted where noted.
"""

from __future__ import annotations

import math

from ..config import CPU_TIME_BUDGET, DEFAULT_TAU_END, EFFORT_ITERATIONS, PAPER_ITERATIONS


def effective_schedule(config) -> str:
    """'budget' or 'paper' for a RefineConfig: "auto" is the budget schedule up to PAPER_ITERATIONS
    iterations (where it measured better, and at PAPER_ITERATIONS it is the paper's run) and the
    paper's beyond (not measured)."""
    if config.schedule != "auto":
        return config.schedule
    return "budget" if config.iterations <= PAPER_ITERATIONS else "paper"


def iterations_for(iterations: int | None, effort: int | None, time_budget: float | None = None,
                   device_type: str = "cuda") -> tuple[int, float | None]:
    """(iterations, time_budget) of a request: explicit ``iterations`` win, then ``effort``
    (EFFORT_ITERATIONS); with neither, PAPER_ITERATIONS, and on a CPU without a time budget
    CPU_TIME_BUDGET seconds too (the budget schedule anneals within the steps that time affords)."""
    if iterations is not None:
        return iterations, time_budget
    if effort is not None:
        if effort not in EFFORT_ITERATIONS:
            raise ValueError(f"effort: choose from {min(EFFORT_ITERATIONS)} to {max(EFFORT_ITERATIONS)}")
        return EFFORT_ITERATIONS[effort], time_budget
    if device_type == "cpu" and time_budget is None:
        return PAPER_ITERATIONS, CPU_TIME_BUDGET
    return PAPER_ITERATIONS, time_budget


def temperature(step, tau_max: float = 1.0, rate: float = 1e-3):
    """Annealing schedule tau(t) = min(exp(-c t), tau_max) (the paper's: c = 1e-3); ``step`` an int
    or a tensor."""
    if not isinstance(step, (int, float)):  # a tensor
        import torch

        return torch.clamp(torch.exp(-rate * step), max=tau_max)
    return min(math.exp(-rate * step), tau_max)




def budget_rate(total: int, tau_end: float = DEFAULT_TAU_END) -> float:
    """The decay rate c_T = -ln(tau_end) / T that brings exp(-c_T t) down to tau_end at t = T.

    With the default tau_end = exp(-2), c_2000 = 1e-3 exactly: the paper's rate."""
    if total < 1 or not 0.0 < tau_end < 1.0:
        raise ValueError("budget schedule: total >= 1 and 0 < tau_end < 1 required")
    return -math.log(tau_end) / total


def budget_temperature(step, total: int, tau_max: float = 1.0,
                       tau_end: float = DEFAULT_TAU_END):
    """Budget-aware annealing: the paper's curve compressed in time to end at T = ``total``,

        tau(t) = min(exp(-c_T t), tau_max) = min(tau_end ** (t / T), tau_max),  c_T = -ln(tau_end) / T

    so a run of any length hardens its rounding fully (tau(T) = tau_end, or tau_max if lower). At
    T = 2000 with the default tau_end it is exactly ``temperature`` (same rate, same floats)."""
    return temperature(step, tau_max, budget_rate(total, tau_end))


def budget_learning_rate(step: int, total: int, lr: float, power: float = 0.5,
                         boost_max: float = 4.0, decay: float = 0.0, floor: float = 0.0) -> float:
    """The budget schedule's Adam learning rate at ``step`` (0-based) of a T = ``total`` step run:

        peak   = lr * min(max((2000 / T) ** power, 1), boost_max)
        end    = min(floor * lr, peak)
        lr(t)  = peak                                                for t < t0 = (1 - decay) T
               = end + (peak - end) (1 + cos(pi (t - t0) / (T - t0))) / 2   from t0 on

    A cosine from the peak down to ``end`` at T over the last ``decay`` share of the run. A run of
    2000 steps or more uses ``lr`` itself as its peak (the paper's 0.005); with floor = 1 its lr
    stays constant, as in the paper."""
    peak = lr * min(max((PAPER_ITERATIONS / max(total, 1)) ** power, 1.0), boost_max)
    start = (1.0 - decay) * total
    if decay <= 0.0 or step < start:
        return peak
    end = min(floor * lr, peak)
    return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * (step - start) / (total - start)))


def schedule_at(step: int, total: int, config) -> tuple[float, float]:
    """(tau, lr) at ``step`` of a run planned for ``total`` steps under ``effective_schedule(config)``.

    paper:  tau = min(exp(-temp_rate t), tau_max), lr constant: ``total`` plays no part.
    budget: tau = min(tau_end ** (t / T), tau_max) (rounding.budget_temperature) and lr from
            ``budget_learning_rate``. With the defaults tau_end = exp(-2) and lr_floor = 1, a
            2000-step budget run is the paper's run."""
    if effective_schedule(config) == "paper":
        return temperature(step, config.tau_max, config.temp_rate), config.lr
    return (budget_temperature(step, total, config.tau_max, config.tau_end),
            budget_learning_rate(step, total, config.lr, config.lr_power, config.lr_boost_max,
                                 config.lr_decay, config.lr_floor))


BUDGET_PROBE_STEPS = 4  # steps timed before a time budget is turned into an iteration count
BUDGET_MARGIN = 0.95  # the share of the remaining time the planned iterations may fill


def iterations_for_budget(steps_done: int, seconds_per_step: float, seconds_left: float,
                          cap: int, margin: float = BUDGET_MARGIN) -> int:
    """The iteration count T a time budget affords: the steps already run plus as many more as
    ``margin`` of the remaining time holds at the measured pace, at most ``cap`` (the configured
    iterations) and at least ``steps_done``."""
    more = int(margin * max(seconds_left, 0.0) / max(seconds_per_step, 1e-9))
    return max(steps_done, min(cap, steps_done + more))
