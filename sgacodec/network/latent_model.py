"""One interface over CompressAI's hyperprior family, as refinement and entropy coding need it
(docs/method.md, "What is optimised" and "Entropy coding").

    y = g_a(x),  z = h_a(y)            (ScaleHyperprior: z = h_a(|y|))
    z^ = Q(z - med) + med              med: the EntropyBottleneck's medians, what compress() codes
    (scales, mu) = h_s(z^)             ScaleHyperprior: mu = 0
    y^ = Q(y - mu) + mu                context models: mu also depends on causal neighbours of y^
    x^ = g_s(y^)

Context models (mbt2018, cheng2020-*) predict mu from already decoded y^. During refinement the
context is taken from the current hard y^ in parallel (one masked convolution); the bitstream is
then coded with CompressAI's own sequential coder, so what is written is always exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import LATENT_MULTIPLE
from .checks import MAX_LATENT
from .compressai_import import import_compressai

LOG2 = 0.6931471805599453


@dataclass
class YParams:
    scales: torch.Tensor
    means: torch.Tensor | None


class LatentModel:
    """Wraps a CompressAI hyperprior model; every method works on batches."""

    def __init__(self, net: torch.nn.Module):
        models = import_compressai()
        JointAutoregressiveHierarchicalPriors = models.JointAutoregressiveHierarchicalPriors
        MeanScaleHyperprior, ScaleHyperprior = models.MeanScaleHyperprior, models.ScaleHyperprior

        if not isinstance(net, ScaleHyperprior):
            raise TypeError(f"{type(net).__name__} is not a CompressAI hyperprior model")
        self.net = net
        self.has_context = isinstance(net, JointAutoregressiveHierarchicalPriors)
        self.has_means = isinstance(net, MeanScaleHyperprior)

    multiple = LATENT_MULTIPLE  # the padding multiple: g_a downsamples by 16, h_a by 4 more

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def analysis(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.net.g_a(x)
        z = self.net.h_a(y if self.has_means else torch.abs(y))
        return y, z

    def z_offset(self) -> torch.Tensor:
        """The EntropyBottleneck's medians, shaped [1, C, 1, 1]."""
        return self.net.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)

    def z_hard(self, z: torch.Tensor) -> torch.Tensor:
        med = self.z_offset()
        return torch.round(z - med) + med

    def y_params(self, z_tilde: torch.Tensor, y_context: torch.Tensor | None = None) -> YParams:
        """Scales and means for y from (soft or hard) z; y_context: hard y^ for context models."""
        params = self.net.h_s(z_tilde)
        if self.has_context:
            ctx = self.net.context_prediction(y_context)
            params = self.net.entropy_parameters(torch.cat((params, ctx), dim=1))
        if not self.has_means:
            return YParams(params, None)
        scales, means = params.chunk(2, 1)
        return YParams(scales, means)

    def y_hard(self, y: torch.Tensor, z_hat: torch.Tensor) -> tuple[torch.Tensor, YParams]:
        """y^ = Q(y - mu) + mu with mu from the hard z^ (context: one parallel pass)."""
        if self.has_context:
            first = self.y_params(z_hat, torch.round(y)).means  # context from round(y)
            params = self.y_params(z_hat, torch.round(y - first) + first)
        else:
            params = self.y_params(z_hat)
        if params.means is None:
            return torch.round(y), params
        return torch.round(y - params.means) + params.means, params

    def z_bits(self, z_tilde: torch.Tensor) -> torch.Tensor:
        """-sum log2 p(z~) per image, shape [B]."""
        eb = self.net.entropy_bottleneck
        values = z_tilde.permute(1, 0, 2, 3).reshape(z_tilde.size(1), 1, -1)
        likelihood, _, _ = eb._likelihood(values)
        if eb.use_likelihood_bound:
            likelihood = eb.likelihood_lower_bound(likelihood)
        likelihood = likelihood.reshape(z_tilde.size(1), z_tilde.size(0), -1)
        return -torch.log(likelihood).sum(dim=(0, 2)) / LOG2

    def y_bits(self, y_tilde: torch.Tensor, params: YParams) -> torch.Tensor:
        """-sum log2 p(y~ | scales, mu) per image, shape [B]."""
        gc = self.net.gaussian_conditional
        likelihood = gc._likelihood(y_tilde, params.scales, params.means)
        if gc.use_likelihood_bound:
            likelihood = gc.likelihood_lower_bound(likelihood)
        return -torch.log(likelihood).flatten(1).sum(dim=1) / LOG2

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.net.g_s(y_hat)

    # --- entropy coding: CPU, CompressAI's own coders (on the coding network: coding_net.py) -----------

    @torch.no_grad()
    def compress_latents(self, y: torch.Tensor, z: torch.Tensor) -> tuple[list, list]:
        """Code latents exactly as the model's compress() would code g_a(x), h_a(g_a(x)).

        Returns (y_strings, z_strings), one string per image. Must run on the CPU model.
        """
        net = self.net
        z_strings = net.entropy_bottleneck.compress(z)
        z_hat = net.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        if self.has_context:
            params = net.h_s(z_hat)
            kernel, pad = 5, 2
            y_padded = F.pad(y, (pad, pad, pad, pad))
            y_strings = [
                net._compress_ar(y_padded[i : i + 1], params[i : i + 1], y.size(2), y.size(3),
                                 kernel, pad)
                for i in range(y.size(0))
            ]
            return y_strings, z_strings
        params = self.y_params(z_hat)
        for t in (params.scales, params.means if params.means is not None else params.scales):
            if not torch.isfinite(t).all() or t.abs().max() > MAX_LATENT:
                raise ValueError("the hyper-synthesis gives NaN, infinite or absurd scales or means; "
                                 "the model's h_s is broken")
        indexes = net.gaussian_conditional.build_indexes(params.scales)
        y_strings = net.gaussian_conditional.compress(y, indexes, means=params.means)
        return y_strings, z_strings

    @torch.no_grad()
    def decompress(self, y_strings: list, z_strings: list, z_shape) -> torch.Tensor:
        """The stock CompressAI decoder: model.decompress([y_strings, z_strings], shape)."""
        return self.net.decompress([y_strings, z_strings], tuple(z_shape))["x_hat"]
