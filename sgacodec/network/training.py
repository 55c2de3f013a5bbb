"""What training the embedded models needs of CompressAI: a new MeanScaleHyperprior, its R-D
loss, and the EntropyBottleneck's training forward without its host reads."""

from __future__ import annotations

import torch

from .compressai_import import import_compressai


def mean_scale_hyperprior(N: int, M: int) -> torch.nn.Module:
    """A new (untrained) MeanScaleHyperprior with N and M channels (the embedded models' kind)."""
    return import_compressai().MeanScaleHyperprior(N, M)


def rate_distortion_loss(lmbda: float) -> torch.nn.Module:
    """CompressAI's RateDistortionLoss: lambda * 255^2 * MSE(x, x^) + bpp."""
    import_compressai()
    from compressai.losses import RateDistortionLoss

    return RateDistortionLoss(lmbda=lmbda)


def noisy_bottleneck(entropy_bottleneck, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The EntropyBottleneck's training forward: (z + uniform noise, its likelihood).

    The same draws and values as CompressAI's own forward in training mode, without its host
    reads: that one permutes by an index tensor made on z's device, which costs one device
    synchronisation per dimension at every training step and breaks torch.compile's graph.
    """
    eb = entropy_bottleneck
    channels, batch = z.size(1), z.size(0)
    values = z.transpose(0, 1).reshape(channels, 1, -1)
    outputs = eb.quantize(values, "noise")
    likelihood, _, _ = eb._likelihood(outputs)
    if eb.use_likelihood_bound:
        likelihood = eb.likelihood_lower_bound(likelihood)

    def back(t):
        return t.reshape(channels, batch, *z.shape[2:]).transpose(0, 1).contiguous()

    return back(outputs), back(likelihood)
