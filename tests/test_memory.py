"""Memory bounded per megapixel: sizes whose coding would not fit are refused before anything is
allocated, and allocation failures are one line (sgacodec/memory.py)."""

import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sgacodec.codec import decoder, isolate, memory
from sgacodec.codec.batching import encode
from sgacodec.config import RefineConfig
from sgacodec.errors import ResourceError
from sgacodec.network.latent_model import LatentModel

from .support import invoke


def flat(height, width):
    return np.full((height, width, 3), 128, np.uint8)


def test_sizes_and_limits_parse():
    assert memory.parse_size("8G") == 8 << 30 and memory.parse_size("500M") == 500 << 20
    assert memory.parse_size("1.5g") == 3 << 29 and memory.parse_size("off") is None
    with pytest.raises(ResourceError, match="not a size"):
        memory.parse_size("lots")
    assert memory.image_bytes(128, 1024, 1024) == 1024 * 1024 * memory.BYTES_PER_PIXEL
    assert memory.image_bytes(16, 1, 1) == 64 * 64 * memory.BYTES_PER_PIXEL // 8  # padded, by channels
    assert memory.available_bytes() is None or memory.available_bytes() > 0


def test_the_estimate_of_a_whole_image_tile_follows_its_rows_and_columns():
    """With --tile-size 0 one worker computes the whole padded image: Hp Wp times the whole
    image's bytes per pixel (less than a block's, which includes what every block holds whatever
    its size), not the square of its longer side (a 4000x3000 photo was estimated at 19.8 GB, its
    measured peak 12.3 GB) nor a block's bytes per pixel (estimated 15.0 GB, measured 6.4 GB)."""
    from sgacodec.network.grid import Grid

    wide, square = Grid(64, 4096, 0), Grid(4096, 4096, 0)
    halo, per = memory.TILE_HALO, memory.TILE_BYTES_PER_PIXEL
    for path in ("encode", "decode"):
        share = memory.IMAGE_BYTES_PER_PIXEL[path]
        coding = memory.estimate(path, 128, wide) - memory.PROCESS_BYTES - 64 * 4096 * share
        assert coding == 64 * 4096 * memory.WHOLE_IMAGE_BYTES_PER_PIXEL
        assert memory.estimate(path, 128, wide) < memory.estimate(path, 128, square) / 10
        assert memory.estimate(path, 16, wide) - memory.PROCESS_BYTES - 64 * 4096 * share == coding // 8
    tiled = Grid(3000, 4000, 512)  # workers compute blocks of SYNTHESIS_BLOCK, whatever the image
    assert memory.estimate("decode", 128, tiled, workers=1) == (
        memory.PROCESS_BYTES + 3008 * 4032 * memory.IMAGE_BYTES_PER_PIXEL["decode"] + (256 + halo) ** 2 * per)


def test_a_small_file_of_a_large_image_is_refused_before_its_synthesis(tiny_model, monkeypatch):
    """A 2.5 kB file of a flat 1024 x 1024 image needed 2.4 GB to decode (whole image): the memory a
    decode needs is known from the header (tiles: the pixels and one worker's tile), and beyond the
    limit the file is refused before anything is decoded."""
    from sgacodec.network import streams
    from sgacodec.network.grid import Grid

    [report] = encode(tiny_model, [flat(256, 256)], RefineConfig(method="none"))
    needed = memory.estimate("decode", 16, Grid(256, 256, 256), workers=1) - memory.PROCESS_BYTES
    monkeypatch.setenv(memory.LIMIT_ENV, str(needed - 1))
    calls = []
    monkeypatch.setattr(streams, "decode_z", lambda *a: calls.append(1))
    with pytest.raises(ResourceError, match=r"decoding 256x256 needs about \d+ MB of memory and "
                                            r"SGACODEC_MEMORY_LIMIT allows \d+ MB; refused") as refused:
        decoder.decode(report.data, tiny_model)
    assert not calls and "\n" not in str(refused.value)
    monkeypatch.undo()
    monkeypatch.setenv(memory.LIMIT_ENV, str(needed))
    assert np.array_equal(decoder.decode(report.data, tiny_model).rgb, report.recon)


def test_an_image_too_large_for_the_memory_is_refused_before_any_allocation(tmp_path, tiny_model,
                                                                           tiny_checkpoint, monkeypatch):
    """An 8000 x 8000 PNG of 186 kB asked for 8 GB in its first convolution: the tiled path and
    the refinement (the whole image) are both checked before they allocate."""
    from sgacodec.codec import tiled

    def analyse(*args, **kwargs):
        raise AssertionError("allocated before the memory check")

    monkeypatch.setattr(tiled, "analyse", analyse)
    monkeypatch.setattr(LatentModel, "analysis", analyse)
    monkeypatch.setenv(memory.LIMIT_ENV, "40M")
    with pytest.raises(ResourceError, match="encoding 2000x1500 needs about"):
        encode(tiny_model, [flat(1500, 2000)], RefineConfig(method="none"))
    Image.fromarray(flat(1500, 2000)).save(tmp_path / "big.png")
    res = invoke("encode", tmp_path / "big.png", "-o", tmp_path / "big.bin", "--checkpoint", tiny_checkpoint,
                 "--iterations", 5)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and "needs about" in lines[-1] and "Traceback" not in res.output, res.output
    assert not (tmp_path / "big.bin").exists()


def test_allocation_failures_are_one_clear_line(tiny_model, monkeypatch):
    from sgacodec.codec import tiled

    def fails(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 8192000000 bytes. Error code 12")

    monkeypatch.setattr(tiled, "analyse", fails)
    with pytest.raises(ResourceError, match=r"^not enough memory to encode 40x32 \(1 image\(s\)\): an "
                                            r"allocation failed$"):
        encode(tiny_model, [flat(32, 40)], RefineConfig(method="none"))
    with pytest.raises(isolate.OutOfMemory):
        isolate.call(lambda: torch.empty(1 << 62, dtype=torch.uint8), timeout=60)


def test_parallel_coding_is_bounded_by_the_memory(monkeypatch):
    each = memory.image_bytes(128, 512, 768)
    monkeypatch.setenv(memory.LIMIT_ENV, str(3 * each + 1))
    assert memory.fitting(each, 16) == 3
    monkeypatch.setenv(memory.LIMIT_ENV, "1")
    assert memory.fitting(each, 16) == 1
    monkeypatch.setenv(memory.LIMIT_ENV, "off")
    assert memory.fitting(each, 16) == 16


FAULTS = """
import resource, torch
from sgacodec.codec.memory import keep_freed_memory
def faults():
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        block = torch.ones(40 << 20, dtype=torch.uint8)  # 40 MB, over glibc's largest mmap threshold
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
before = faults()
kept = keep_freed_memory()
faults()
print(kept, before, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's mallopt")
def test_kept_memory_is_reused_without_page_faults():
    """A 40 MB block allocated and freed five times: each time mapped afresh (a page fault per
    4 kB page) by default; once keep_freed_memory has run (in a process of its own), faulted in
    at most once and then reused."""
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True).stdout
    kept, before, after = out.split()
    assert kept == "True"
    pages = (40 << 20) // 4096
    assert int(before) > 4 * pages and int(after) < 1.5 * pages, (before, after)
