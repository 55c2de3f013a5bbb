"""Checks that keep CompressAI's entropy coder away from what would hang it or exhaust memory:
absurd entropy-bottleneck quantiles (before ``update()`` builds tables from them) and latents
that rANS cannot code (before coding them).
"""

from __future__ import annotations

import torch

MAX_CDF_LENGTH = 1 << 13  # symbols per rANS table: the shipped models need at most 130, the
# Gaussian conditional's widest table has 3133; update() allocates channels x length x ~100 bytes
MAX_LATENT = 1 << 20  # |latent| and |median| beyond this are no model's (rANS codes int32 symbols)


def synthesis_channels(net) -> int:
    """The channel count N of the model's transforms (memory grows with it)."""
    return int(getattr(net, "N", 192))


def coder_table_problem(net) -> str | None:
    """Why ``update()`` would build unreasonable rANS tables from this model's EntropyBottleneck
    quantiles (non-finite, absurd medians, or tables longer than MAX_CDF_LENGTH, which would
    allocate gigabytes); None when they are reasonable. Checked before ``update()`` runs."""
    quantiles = net.entropy_bottleneck.quantiles.detach().double()
    if not torch.isfinite(quantiles).all():
        return "entropy_bottleneck.quantiles holds NaN or infinite values"
    lower, median, upper = quantiles[:, 0, 0], quantiles[:, 0, 1], quantiles[:, 0, 2]
    if median.abs().max() > MAX_LATENT:
        return f"entropy_bottleneck.quantiles has medians beyond +-{MAX_LATENT}"
    length = int(((median - lower).ceil().clamp(min=0) + (upper - median).ceil().clamp(min=0) + 1).max())
    if length > MAX_CDF_LENGTH:
        return (f"entropy_bottleneck.quantiles span {length} values per channel (at most "
                f"{MAX_CDF_LENGTH}): absurd quantiles, the coder's tables would not fit in memory")
    return None


def coding_problem(y: torch.Tensor, z: torch.Tensor) -> str | None:
    """Why these latents cannot be entropy-coded (non-finite, or beyond what rANS codes), or None.

    CompressAI casts each symbol to int32; a NaN becomes INT_MIN and the bypass coder then loops
    without end in C++, beyond the reach of Ctrl-C."""
    for name, t in (("y", y), ("z", z)):
        if not torch.isfinite(t).all():
            return f"the latent {name} holds NaN or infinite values (the model or the refinement diverged)"
        if t.numel() and t.abs().max() > MAX_LATENT:
            return f"the latent {name} holds values beyond +-{MAX_LATENT} (the model or the refinement diverged)"
    return None
