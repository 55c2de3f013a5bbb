"""Entropy-coded streams (sgacodec/network/streams.py): the scale indexes and the z and y decoding are
CompressAI's own, computed faster; untrusted strings that run past their end are refused."""

import pytest
import torch

from sgacodec.models.embedded import load_embedded
from sgacodec.network import streams
from sgacodec.network.coding_net import coding_net


@pytest.fixture(scope="module")
def coding():
    return coding_net(load_embedded().net, 3)


def test_scale_indexes_are_compressais(coding):
    gc = coding.gaussian_conditional
    table = gc.scale_table.float()
    torch.manual_seed(0)
    scales = torch.cat([
        torch.exp(torch.empty(20000).uniform_(-4, 7)),          # below the lower bound to past the table
        table, torch.nextafter(table, table + 1), torch.nextafter(table, table - 1),  # on the boundaries
        torch.tensor([0.0, 1e-9, 1e9]),
    ]).reshape(1, 1, 1, -1)
    expected = gc.build_indexes(scales)
    got = streams.scale_indexes(gc, scales)
    assert got.dtype == expected.dtype and torch.equal(got, expected)


@pytest.mark.parametrize("with_means", [True, False])
def test_decode_y_is_compressais_decompress(coding, with_means):
    gc = coding.gaussian_conditional
    torch.manual_seed(1)
    y = torch.randn(1, 192, 5, 7) * 4
    scales = torch.exp(torch.randn(1, 192, 5, 7))
    means = torch.randn(1, 192, 5, 7) if with_means else None
    string = streams.encode_y(coding, y, scales, means)
    indexes = gc.build_indexes(scales)
    expected = gc.decompress([streams.pad_string(string, y.numel())], indexes, scales.dtype, means=means)
    got = streams.decode_y(coding, string, scales, means)
    assert got.dtype == expected.dtype and torch.equal(got, expected)
    assert torch.equal(got, streams.quantized_y(y, means))
    with pytest.raises(streams.CorruptData, match="ends before its data"):
        streams.decode_y(coding, string[: len(string) // 2], scales, means)


def test_decode_z_is_compressais_decompress(coding):
    eb = coding.entropy_bottleneck
    torch.manual_seed(2)
    z = torch.randn(1, eb.channels, 3, 5) * 6
    string, z_hat = streams.encode_z(coding, z)
    expected = eb.decompress([streams.pad_string(string, z.numel())], (3, 5))
    got = streams.decode_z(coding, string, (3, 5))
    assert got.dtype == expected.dtype and torch.equal(got, expected) and torch.equal(got, z_hat)
    with pytest.raises(streams.CorruptData, match="the z string ends before its data"):
        streams.decode_z(coding, string[: len(string) // 2], (3, 5))
