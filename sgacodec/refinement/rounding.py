"""Relaxed rounding for latent refinement (SGA and SGA+; docs/method.md, "Rounding methods").

Two-class rounding samples v~ between floor(v) and ceil(v). With r = v - floor(v), each method
defines p(floor) = f(r) through one logit per candidate (docs/method.md):

    atanh  (SGA)   logits  -atanh(r),               -atanh(1 - r)
    linear         logits  log(1 - r),              log(r)                   p(floor) = 1 - r
    cosine         logits  log cos^2(pi r / 2),     log cos^2(pi (1 - r) / 2)
    ssl            logits  log sig(-a logit r),     log sig(-a logit(1 - r)) p(floor) = sig(-a logit r)

The logits are divided by tau and tau is passed to the Gumbel-softmax as well, as the reference
code does; v~ = sum_k candidate_k * sample_k is differentiable in v.

Three-class rounding uses candidates round(v) - 1, round(v), round(v) + 1 with d = v - candidate
and logit_k = n * log(max(g(u), eps)), u = |d| * s (SSL: u = |d| * s / 1.5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import DEFAULT_A, DEFAULT_A_THREE_CLASS, DEFAULT_FACTOR, DEFAULT_POWER, THREE_CLASS_METHODS

EPS = 1e-5


def _clamped(r: torch.Tensor) -> torch.Tensor:
    return r.clamp(EPS, 1.0 - EPS)


def two_class_logits(r: torch.Tensor, method: str, a: float = DEFAULT_A) -> torch.Tensor:
    """Unnormalised log-probabilities [floor, ceil] for fractional parts r, stacked on dim -1."""
    r = _clamped(r)
    if method == "atanh":
        return torch.stack((-torch.atanh(r), -torch.atanh(1.0 - r)), dim=-1)
    if method == "linear":
        return torch.stack((torch.log(1.0 - r), torch.log(r)), dim=-1)
    if method == "cosine":
        down = torch.cos(math.pi * r / 2.0) ** 2
        up = torch.cos(math.pi * (1.0 - r) / 2.0) ** 2
        return torch.stack((torch.log(down.clamp_min(EPS)), torch.log(up.clamp_min(EPS))), dim=-1)
    if method == "ssl":
        scaled = a * torch.logit(r)
        return torch.stack((F.logsigmoid(-scaled), F.logsigmoid(scaled)), dim=-1)
    raise ValueError(f"unknown two-class rounding method {method!r}")


def p_floor(r: torch.Tensor, method: str, a: float = DEFAULT_A) -> torch.Tensor:
    """Probability of rounding down at temperature 1: softmax of the two-class logits."""
    return torch.softmax(two_class_logits(r, method, a), dim=-1)[..., 0]


def three_class_logits(
    d: torch.Tensor,
    method: str,
    a: float = DEFAULT_A_THREE_CLASS,
    factor: float = DEFAULT_FACTOR,
    power: float = DEFAULT_POWER,
) -> torch.Tensor:
    """Logits n * log(max(g(u), eps)) for offsets d = v - candidate (any shape, elementwise)."""
    if method == "linear":
        g = 1.0 - (d.abs() * factor).clamp(0.0, 1.0)
    elif method == "cosine":
        g = torch.cos(math.pi * (d.abs() * factor).clamp(0.0, 1.0) / 2.0)
    elif method == "ssl":
        u = _clamped(d.abs() * factor / 1.5)
        g = torch.sigmoid(-a * torch.logit(u))
    else:
        raise ValueError(f"three-class rounding supports {THREE_CLASS_METHODS}, not {method!r}")
    return power * torch.log(g.clamp_min(EPS))


def gumbel_sample(logits: torch.Tensor, tau: float | torch.Tensor,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
    """Soft one-hot sample: softmax((logits / tau + Gumbel noise) / tau) over the last dim; the
    Gumbel noise is -log(E) for standard exponential draws E (``noise``, or drawn here)."""
    draws = torch.empty_like(logits).exponential_() if noise is None else noise
    gumbels = -draws.log()
    return torch.softmax((logits / tau + gumbels) / tau, dim=-1)


def draw_noise(v: torch.Tensor, method: str, three_class: bool = False) -> torch.Tensor | None:
    """The random draws ``soft_round(v, method)`` makes, drawn now and in the same order (so that
    crops of them round crops of ``v`` as one call on the whole would): exponential draws [*v.shape,
    candidates] for the Gumbel methods, uniform ones in [-0.5, 0.5) for "uniform", None for "ste"."""
    if method == "ste":
        return None
    if method == "uniform":
        return torch.empty_like(v).uniform_(-0.5, 0.5)
    return torch.empty(*v.shape, 3 if three_class else 2, dtype=v.dtype, device=v.device).exponential_()


def soft_round(
    v: torch.Tensor,
    method: str,
    tau: float | torch.Tensor,
    *,
    a: float | None = None,
    three_class: bool = False,
    factor: float = DEFAULT_FACTOR,
    power: float = DEFAULT_POWER,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Stochastic relaxed rounding of v onto the integer grid (differentiable in v).

    Baselines: ``ste`` = round(v) forward, identity gradient; ``uniform`` = v + U(-0.5, 0.5).
    ``noise``: the random draws to use (``draw_noise``'s, or a crop of them), else drawn here.
    """
    if method == "ste":
        return v + (torch.round(v) - v).detach()
    if method == "uniform":
        return v + (torch.empty_like(v).uniform_(-0.5, 0.5) if noise is None else noise)
    if three_class:
        a = DEFAULT_A_THREE_CLASS if a is None else a
        centre = torch.round(v).detach()
        candidates = torch.stack((centre - 1.0, centre, centre + 1.0), dim=-1)
        logits = three_class_logits(v.unsqueeze(-1) - candidates, method, a, factor, power)
    else:
        a = DEFAULT_A if a is None else a
        down = torch.floor(v).detach()
        candidates = torch.stack((down, down + 1.0), dim=-1)
        logits = two_class_logits(v - down, method, a)
    return (candidates * gumbel_sample(logits, tau, noise)).sum(dim=-1)
