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

from . import compressai_import as _compressai

LOG2 = 0.6931471805599453

# This module and _compressai.py (its import) are the only ones that use CompressAI's private or
# undocumented APIs (entropy model internals, the autoregressive coder, the zoo's tables); the
# versions they were checked against:
COMPRESSAI_CHECKED = _compressai.COMPRESSAI_CHECKED


def import_compressai():
    """``compressai.models``, imported without the CompressAI subpackages sgacodec never uses
    (datasets, transforms: torchvision, torch_geometric) where its version allows (_compressai.py)."""
    return _compressai.load()


# --- the zoo's tables (compressai.zoo internals) ---------------------------------------------

def architecture_class(name: str):
    """The CompressAI model class of a zoo architecture name (KeyError when unknown)."""
    import_compressai()
    from compressai.zoo.image import model_architectures

    return model_architectures[name]


def zoo_weights_url(name: str, metric: str, quality: int) -> str:
    import_compressai()
    from compressai.zoo.image import model_urls

    return model_urls[name][metric][quality]


def zoo_network(name: str, quality: int, metric: str):
    """CompressAI's pretrained zoo model (downloads into torch.hub's cache when not there)."""
    import_compressai()
    from compressai.zoo import image_models

    return image_models[name](quality=quality, metric=metric, pretrained=True, progress=False)


def synthesis_channels(net) -> int:
    """The channel count N of the model's transforms (memory grows with it)."""
    return int(getattr(net, "N", 192))


MAX_CDF_LENGTH = 1 << 13  # symbols per rANS table: the shipped models need at most 130, the
# Gaussian conditional's widest table has 3133; update() allocates channels x length x ~100 bytes
MAX_LATENT = 1 << 20  # |latent| and |median| beyond this are no model's (rANS codes int32 symbols)


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


def rename_legacy_keys(state_dict: dict) -> dict:
    """CompressAI's own conversion of older checkpoints' key names (compressai.zoo.pretrained)."""
    import_compressai()
    from compressai.zoo.pretrained import load_pretrained

    return load_pretrained(dict(state_dict))


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

    # The padding multiple: g_a downsamples by 16, h_a by 4 more.
    multiple = 64

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

    # --- entropy coding: CPU, CompressAI's own coders (on codec.coding_net's copy) -----------

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


# --- training ----------------------------------------------------------------------------------

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
