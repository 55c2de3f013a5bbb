"""Transposed convolutions by kernel taps compute PyTorch's transposed convolution."""

import pytest
import torch
import torch.nn.functional as F

from sgacodec.network.deconv import TapConvTranspose2d, by_taps, supported


@pytest.mark.parametrize("cin, cout, kernel, stride, padding, output_padding, bias", [
    (8, 6, 5, 2, 2, 1, True),   # CompressAI's deconv(): g_s and h_s
    (3, 7, 3, 2, 1, 1, False),
    (3, 4, 4, 2, 1, 0, True),
    (2, 3, 5, 3, 1, 0, True),   # stride 3
    (6, 5, 3, 1, 1, 0, True),   # stride 1
])
def test_taps_compute_the_transposed_convolution(cin, cout, kernel, stride, padding, output_padding, bias):
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding, bias=bias).double()
    assert supported(layer)
    x = torch.randn(2, cin, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        expected = F.conv_transpose2d(x, layer.weight, layer.bias, stride, padding, output_padding)
        got = TapConvTranspose2d(layer)(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, rtol=0, atol=1e-13)


def test_only_what_the_taps_compute_faster_is_replaced():
    deconv = torch.nn.ConvTranspose2d(8, 8, 5, 2, 2, 1)
    assert supported(deconv)
    assert not supported(torch.nn.ConvTranspose2d(8, 8, 5, 2, 2, 1, groups=2))
    assert not supported(torch.nn.ConvTranspose2d(8, 8, 5, 2, 2, 0))  # output not 2x the input
    assert not supported(torch.nn.ConvTranspose2d(128, 3, 5, 2, 2, 1))  # columns smaller than input
    assert not supported(torch.nn.Conv2d(8, 8, 3))
    net = torch.nn.Sequential(deconv, torch.nn.ReLU(), torch.nn.Sequential(torch.nn.ConvTranspose2d(8, 4, 5, 2, 2, 1)))
    x = torch.randn(1, 8, 3, 4)
    with torch.no_grad():
        expected = net(x)
        replaced = by_taps(net)
        got = replaced(x)
    assert replaced is net and isinstance(net[0], TapConvTranspose2d) and isinstance(net[2][0], TapConvTranspose2d)
    assert net[0].layer is deconv  # the same parameters
    assert torch.allclose(got, expected, atol=1e-5)
