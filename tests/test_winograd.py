"""Minimal filtering (sgacodec/network/winograd.py) computes PyTorch's convolutions, and the
coding network uses it where it applies."""

import itertools

import pytest
import torch

from sgacodec.models.embedded import load_embedded
from sgacodec.network import winograd
from sgacodec.network.coding_net import coding_net
from sgacodec.network.deconv import TapConvTranspose2d

LAYERS = [
    lambda: torch.nn.ConvTranspose2d(8, 6, 5, 2, 2, 1),               # CompressAI's deconv: g_s, h_s
    lambda: torch.nn.ConvTranspose2d(3, 7, 3, 2, 1, 1, bias=False),   # phases of 1 and 2 taps
    lambda: torch.nn.ConvTranspose2d(3, 4, 4, 2, 1, 0),
    lambda: torch.nn.ConvTranspose2d(2, 3, 5, 3, 1, 0),               # stride 3
    lambda: torch.nn.ConvTranspose2d(6, 5, 3, 1, 1, 0),               # stride 1
    lambda: torch.nn.ConvTranspose2d(4, 4, 6, 2, 2, 0),               # 3 taps per phase, even kernel
    lambda: torch.nn.Conv2d(6, 5, 3, 1, 1),                           # h_s's last layer
    lambda: torch.nn.Conv2d(6, 5, 3, 1, 1, bias=False),
]


@pytest.mark.parametrize("make", LAYERS)
def test_minimal_filtering_computes_the_layer(make):
    torch.manual_seed(0)
    layer = make().double()
    assert winograd.phases(layer) is not None
    conv = winograd.WinogradConv(layer)
    for (h, w), batch in itertools.product([(1, 1), (1, 2), (2, 2), (5, 7), (6, 3), (9, 10)], [1, 2]):
        x = torch.randn(batch, layer.in_channels, h, w, dtype=torch.float64)
        with torch.no_grad():
            expected, got = layer(x), conv(x)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=0, atol=1e-13), (h, w, (got - expected).abs().max())


@pytest.mark.parametrize("make", LAYERS)
def test_a_window_is_that_part_of_the_whole_output(make):
    """forward_window computes only the blocks a window meets (network/tiling.py asks for the
    outputs it keeps), each with the same sums as the whole output: equal up to the rounding of
    the matrix products, whose kernels can sum in another order for another width (~1e-16)."""
    torch.manual_seed(2)
    layer = make().double()
    conv = winograd.WinogradConv(layer)
    x = torch.randn(2, layer.in_channels, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        whole = conv(x)
        height, width = whole.shape[-2:]
        for r0, r1, c0, c1 in [(0, height, 0, width), (1, height - 1, 2, width - 3), (3, 4, 0, 1),
                               (height - 1, height, width - 2, width), (2, height - 1, width // 2, width)]:
            got = conv.forward_window(x, ((r0, r1), (c0, c1)))
            assert got.shape == whole[..., r0:r1, c0:c1].shape
            assert torch.allclose(got, whole[..., r0:r1, c0:c1], rtol=0, atol=1e-14), (r0, r1, c0, c1)
        with pytest.raises(ValueError, match="not inside"):
            conv.forward_window(x, ((0, height + 1), (0, width)))


def test_rounding_is_below_the_taps():
    """On a g_s-sized layer the error against PyTorch's float64 is at most the taps' (both ~1e-15)."""
    torch.manual_seed(1)
    layer = torch.nn.ConvTranspose2d(128, 128, 5, 2, 2, 1).double()
    x = torch.randn(1, 128, 24, 24, dtype=torch.float64)
    with torch.no_grad():
        expected = layer(x)
        ours = (winograd.WinogradConv(layer)(x) - expected).abs().max()
        taps = (TapConvTranspose2d(layer)(x) - expected).abs().max()
    assert ours <= taps and ours < 1e-14


def test_the_weights_are_transformed_again_when_they_change():
    layer = torch.nn.Conv2d(3, 3, 3, 1, 1).double()
    conv = winograd.WinogradConv(layer)
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        conv(x)
        layer.weight.mul_(2)
        assert torch.allclose(conv(x), layer(x), atol=1e-13)


def test_what_is_replaced():
    assert winograd.phases(torch.nn.Conv2d(4, 4, 3, 2, 1)) is None        # strided
    assert winograd.phases(torch.nn.Conv2d(4, 4, 5, 1, 2)) is None        # 5 taps
    assert winograd.phases(torch.nn.Conv2d(4, 4, 1)) is None              # 1 x 1
    assert winograd.phases(torch.nn.ConvTranspose2d(4, 4, 7, 2, 3, 1)) is None  # 4 taps a phase
    assert winograd.phases(torch.nn.ConvTranspose2d(128, 3, 5, 2, 2, 1)) is None  # taps not faster
    deconv7 = torch.nn.ConvTranspose2d(8, 8, 7, 2, 3, 1)
    net = torch.nn.Sequential(torch.nn.ConvTranspose2d(8, 8, 5, 2, 2, 1), torch.nn.ReLU(),
                              torch.nn.Sequential(deconv7, torch.nn.Conv2d(8, 4, 3, 1, 1)))
    x = torch.randn(1, 8, 3, 4)
    with torch.no_grad():
        expected = net(x)
        replaced = winograd.by_winograd(net)
        got = replaced(x)
    assert replaced is net and isinstance(net[0], winograd.WinogradConv)
    assert isinstance(net[2][0], TapConvTranspose2d) and net[2][0].layer is deconv7
    assert isinstance(net[2][1], winograd.WinogradConv)
    assert torch.allclose(got, expected, atol=1e-5)


def test_the_coding_network_filters_minimally():
    coding = coding_net(load_embedded().net, 3)
    for transform in (coding.g_s, coding.h_s):
        assert any(isinstance(m, winograd.WinogradConv) for m in transform.modules())
        assert not any(type(m) in (torch.nn.Conv2d, torch.nn.ConvTranspose2d) and winograd.phases(m)
                       for m in transform.modules()
                       if not any(getattr(p, "layer", None) is m for p in transform.modules()))
