"""Tiled execution equals the whole-image forward (sgacodec/network/tiling.py): the halo derivation
for every architecture sgacodec loads, checked against perturbations and against whole computation."""

import pytest
import torch
from compressai.layers import (
    GDN,
    AttentionBlock,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    subpel_conv3x3,
)
from compressai.models import (
    Cheng2020Anchor,
    Cheng2020Attention,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)
from torch import nn

from sgacodec.network import tiling

torch.set_num_threads(1)

ARCHS = {
    "bmshj2018-hyperprior": lambda: ScaleHyperprior(8, 12),
    "mbt2018-mean": lambda: MeanScaleHyperprior(8, 12),
    "mbt2018": lambda: JointAutoregressiveHierarchicalPriors(8, 12),
    "cheng2020-anchor": lambda: Cheng2020Anchor(8),
    "cheng2020-attn": lambda: Cheng2020Attention(8),
}
# tiles in output units: odd sizes, smaller than the halo, exactly the output (1x1 grid), larger
TILES = {"g_a": [(1, 3), (2, 1), (5, 5), (8, 12)],
         "h_a": [(1, 1), (1, 2), (9, 9)],
         "h_s": [(1, 1), (3, 5), (100, 100)],
         "g_s": [(16, 48), (64, 16), (37, 23), (128, 192)]}


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request):
    """A small random model in float64 and the inputs of its four transforms (a 128 x 192 image)."""
    torch.manual_seed(0)
    net = ARCHS[request.param]().double().eval()
    with torch.no_grad():
        x = torch.rand(1, 3, 128, 192, dtype=torch.float64)
        y = net.g_a(x)
        z = net.h_a(y)
    return net, {"g_a": x, "h_a": y, "h_s": z, "g_s": y}


@pytest.mark.parametrize("name", list(TILES))
def test_tiled_equals_whole(arch, name):
    net, inputs = arch
    module, x = getattr(net, name), inputs[name]
    with torch.no_grad():
        whole = module(x)
        for tile in TILES[name]:
            got = tiling.run_tiled(module, x, tile)
            assert got.shape == whole.shape
            assert (got - whole).abs().max().item() < 1e-10, (name, tile)


def test_float32_and_reader():
    """Float32 within rounding; the input read lazily, never beyond a tile's image plus the halo."""
    torch.manual_seed(1)
    g_a = MeanScaleHyperprior(8, 12).g_a.eval()
    x = torch.rand(2, 3, 64, 192)
    reads = []

    def read(r0, r1, c0, c1):
        reads.append((r0, r1, c0, c1))
        return x[..., r0:r1, c0:c1].clone()

    (hb, ha), (wb, wa) = tiling.halo(g_a)
    with torch.no_grad():
        whole = g_a(x)
        got = tiling.run_tiled(g_a, read, (3, 2), in_size=(64, 192))
    assert (got - whole).abs().max().item() < 1e-4 * whole.abs().max().item()
    assert reads and all(r1 - r0 <= 16 * 3 + hb + ha and c1 - c0 <= 16 * 2 + wb + wa for r0, r1, c0, c1 in reads)


def tiny():
    """Layers with tuple kernels, strides, dilation, odd output padding and CompressAI blocks; no
    ReLU (it can hide a dependency from the perturbation test)."""
    return nn.Sequential(
        nn.Conv2d(2, 4, (5, 3), stride=(2, 1), padding=(2, 1)), GDN(4),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.LeakyReLU(),
        nn.ConvTranspose2d(4, 4, 3, stride=2, padding=2, output_padding=1),  # k - 2p + op = 0: 2n - 2,
        # and k < p + s: a crop must start before the inputs output lo needs for s a <= lo
        nn.ConvTranspose2d(4, 4, (6, 5), stride=(2, 3), padding=(1, 1), output_padding=(0, 2)),
        ResidualBlockWithStride(4, 4), ResidualBlockUpsample(4, 4), subpel_conv3x3(4, 2, 2),
        nn.Conv2d(2, 2, 3, stride=3, groups=2))


def tiny_deconv():
    """k - p + op < s: a crop must extend past the inputs output hi needs, for s (b - 1) + e > hi."""
    return nn.Sequential(nn.ConvTranspose2d(2, 3, 3, stride=3, padding=1), GDN(3, inverse=True),
                         nn.Conv2d(3, 2, (1, 3), stride=2))


@pytest.mark.parametrize("make", [tiny, tiny_deconv, lambda: nn.Sequential(ResidualBlock(2, 4), AttentionBlock(4))])
def test_needs_matches_perturbation(make):
    """needs() is the hull of the inputs whose perturbation changes an output (all of them: ReLU
    aside, any dependent output changes with random float64 weights); and tiled equals whole."""
    torch.manual_seed(2)
    m = make().double().eval()
    H, W = 11, 7
    x = torch.randn(1, 2, H, W, dtype=torch.float64)
    with torch.no_grad():
        base = m(x)
        changed = torch.zeros(H, W, *base.shape[-2:], dtype=torch.bool)
        for r in range(H):
            for c in range(W):
                xp = x.clone()
                xp[..., r, c] += 1.0
                changed[r, c] = ((m(xp) - base).abs() > 1e-12).any(1)[0]
        for tile in [(1, 1000), (1000, 1), (2, 3), (5, 4)]:  # every single row, every single column
            assert (tiling.run_tiled(m, x, tile) - base).abs().max().item() < 1e-10
    relu = any(isinstance(layer, nn.ReLU) for layer in m.modules())
    for axis, n in ((0, H), (1, W)):
        assert tiling.output_size(m, n, axis) == base.shape[2 + axis]
        for o in range(base.shape[2 + axis]):
            hit = changed.select(2 + axis, o).any(-1)  # [H, W]
            idx = hit.any(1 - axis).nonzero().flatten()
            lo, hi = tiling.needs(m, o, o, n, axis)
            assert lo <= idx.min() and idx.max() <= hi
            if not relu:
                assert (idx.min().item(), idx.max().item()) == (lo, hi), (axis, o)


class InFloat64(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module.double()

    def forward(self, x):
        return self.module(x.double()).to(x.dtype)


class TapLike(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return nn.functional.conv_transpose2d(x, self.layer.weight, self.layer.bias, self.layer.stride,
                                              self.layer.padding, self.layer.output_padding)


class MatmulGDNLike(nn.Module):
    def __init__(self, gdn):
        super().__init__()
        self.gdn = gdn

    def forward(self, x):
        return self.gdn(x)


def deconv(a, b):
    return nn.ConvTranspose2d(a, b, 5, stride=2, padding=2, output_padding=1)


def test_wrappers():
    torch.manual_seed(3)
    m = InFloat64(nn.Sequential(TapLike(deconv(3, 4)), MatmulGDNLike(GDN(4, inverse=True)),
                                nn.LeakyReLU(inplace=True), TapLike(deconv(4, 2))))
    x = torch.randn(1, 3, 9, 6)
    with torch.no_grad():
        whole = m(x)
        for tile in [(1, 1), (5, 3), (36, 24)]:
            got = tiling.run_tiled(m, x, tile)
            assert got.dtype == torch.float32 and (got - whole).abs().max().item() <= 1e-6 * whole.abs().max().item()
        assert (tiling.run_tiled(m, x.double(), (5, 7)) - m(x.double())).abs().max().item() < 1e-10
    # two k5 s2 p2 deconvs: output 4i needs inputs i-1..i+1, output 4i+3 needs i..i+2
    assert tiling.halo(m) == ((1, 2), (1, 2))


def test_in_place_first_layer_leaves_input():
    m = nn.Sequential(nn.LeakyReLU(inplace=True), nn.Conv2d(1, 1, 3, padding=1)).double()
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    keep = x.clone()
    with torch.no_grad():
        got = tiling.run_tiled(m, x, (2, 2))
        assert torch.equal(x, keep) and (got - m(x.clone())).abs().max().item() < 1e-12


def test_unsupported():
    for m in [nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2)),
              nn.ConvTranspose2d(1, 1, 3, dilation=2), nn.Conv2d(1, 1, 3, padding="same")]:
        with pytest.raises(tiling.UnsupportedLayer):
            tiling.run_tiled(m, torch.zeros(1, 1, 8, 8), (4, 4))
    with pytest.raises(tiling.UnsupportedLayer, match="Upsample"):
        tiling.needs(nn.Upsample(scale_factor=2), 0, 1, 4)
