"""Decoding untrusted bytes: forged strings refused, padding harmless, crashes and hangs contained."""

import os
import signal
import time

import numpy as np
import pytest
import torch

from sgacodec.codec import container as B
from sgacodec.codec import isolate
from sgacodec.codec.decoder import decode
from sgacodec.errors import DecodeError
from sgacodec.network.coding_net import coding_net

from .support import forged


@pytest.mark.parametrize("side", [1024, 4096, 8192])
def test_forged_huge_image_with_a_few_bytes_is_refused_quickly(tiny_model, coded, side):
    """Declared 1024^2 or more with 8-byte strings made CompressAI's rANS decoder read past its
    buffer and segfault (exit 139). Now: refused after entropy decoding, before synthesis."""
    tiles = B.tile_count(side, side, B.unpack(coded.data).tile)
    data = forged(coded.data, height=side, width=side, z_string=b"\xff" * 8, y_strings=(b"\xff" * 8,) * tiles)
    begin = time.monotonic()
    with pytest.raises(DecodeError, match="ends before its data"):
        decode(data, tiny_model)
    assert time.monotonic() - begin < 30



def test_forged_strings_are_refused_in_process_too(tiny_model, coded, monkeypatch):
    """Without the child process (SGACODEC_ISOLATE=0, or not Linux) the padding still protects."""
    monkeypatch.setenv("SGACODEC_ISOLATE", "0")
    bs = B.unpack(coded.data)
    tiles = B.tile_count(1024, 1024, bs.tile)
    for z, y in ((b"\xff" * 8, b"\xff" * 8), (b"", b""), (bs.z_string, b"\x00" * 3)):
        data = forged(coded.data, height=1024, width=1024, z_string=z, y_strings=(y,) * tiles)
        with pytest.raises(DecodeError):
            decode(data, tiny_model)
    for z, y in ((b"\xff" * 100_000, bs.y_strings[0]), (bs.z_string, b"\xff" * 100_000)):
        # long runs of 0xF nibbles drive the bypass coder through the data and beyond
        with pytest.raises(DecodeError):
            decode(forged(coded.data, z_string=z, y_strings=(y,)), tiny_model)



def test_padding_never_changes_a_valid_decode(tiny_model, coded):
    from sgacodec.network.streams import decompress_untrusted

    net = coding_net(tiny_model.net, B.unpack(coded.data).version)
    x_hat = decompress_untrusted(net, coded_string(coded, "y"), coded_string(coded, "z"),
                                 B.unpack(coded.data).z_shape)
    stock = net.decompress([[coded_string(coded, "y")], [coded_string(coded, "z")]],
                           B.unpack(coded.data).z_shape)["x_hat"]
    assert torch.equal(x_hat, stock)



def coded_string(report, which):
    bs = B.unpack(report.data)
    [y_string] = bs.y_strings
    return y_string if which == "y" else bs.z_string



def test_the_child_process_contains_crashes_and_hangs():
    with pytest.raises(isolate.IsolatedError, match="crashed"):
        isolate.call(lambda: os.kill(os.getpid(), signal.SIGSEGV), timeout=30)
    with pytest.raises(isolate.IsolatedError, match="longer than"):
        isolate.call(lambda: time.sleep(30), timeout=0.5)
    with pytest.raises(isolate.OutOfMemory, match="out of memory"):
        isolate.call(lambda: (_ for _ in ()).throw(MemoryError("no room")), timeout=30)
    big = isolate.call(lambda: np.full((300, 400, 3), 7, np.uint8), timeout=30)
    assert big.shape == (300, 400, 3) and (big == 7).all()



def test_declared_sizes_beyond_the_encoders_limit_are_refused_before_allocation(coded):
    for h, w in ((32769, 32768), (B.MAX_SIDE + 1, 1), (1, 1 << 20), (0, 10), (1 << 31, 1 << 31)):
        data = forged(coded.data, height=h, width=w)
        with pytest.raises(B.BitstreamError, match="out of range"):
            B.unpack(data)


@pytest.mark.parametrize("isolated", ["1", "0"])
def test_a_stream_hands_over_each_item_as_the_child_sends_it(monkeypatch, isolated):
    """isolate.stream yields the items in order while the child computes the next (the parent
    holds one at a time); an error in the computation is raised where the items stop."""
    monkeypatch.setenv("SGACODEC_ISOLATE", isolated)
    sent = [np.full((2, 3, 3), k, np.uint8) for k in range(4)]
    got = list(isolate.stream(lambda: iter(sent), timeout=30))
    assert [g.tolist() for g in got] == [s.tolist() for s in sent]

    def failing():
        yield sent[0]
        raise ValueError("the third tile is damaged")

    items = isolate.stream(failing, timeout=30)
    assert np.array_equal(next(items), sent[0])
    with pytest.raises(isolate.IsolatedError, match="the third tile is damaged"):
        next(items)


def test_a_stream_given_up_by_its_consumer_stops_the_child(tmp_path):
    """An error in the consumer (a full disk while writing the PNG) passes through unchanged, and
    the child, which would go on computing, is stopped."""
    marker = tmp_path / "child-went-on"

    def endless():
        yield np.zeros(1, np.uint8)
        time.sleep(5)
        marker.write_text("the child was not stopped")
        yield np.zeros(1, np.uint8)

    begin = time.monotonic()
    with pytest.raises(OSError, match="disk full"):
        for _ in isolate.stream(endless, timeout=60):
            raise OSError("disk full")
    time.sleep(0.2)
    assert time.monotonic() - begin < 4 and not marker.exists()
    time.sleep(5)
    assert not marker.exists()
