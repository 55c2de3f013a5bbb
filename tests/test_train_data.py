"""The training pool: crops in range, flips, sizes, the same global batch whatever the processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_crops_are_in_range_and_flip():
    from sgacodec.training.data import CropPool

    im = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    batch = CropPool([im], 8, seed=0).batch(64)
    assert batch.shape == (64, 3, 8, 8) and batch.dtype == torch.uint8
    reference = torch.from_numpy(im).permute(2, 0, 1)
    flips = {"none": reference, "h": reference.flip(2), "v": reference.flip(1), "both": reference.flip(1, 2)}
    seen = {name for b in batch for name, f in flips.items() if torch.equal(b, f)}
    assert seen == set(flips)  # every crop is the image under one of the four flips, and all occur


def test_crops_come_from_every_image_at_every_place():
    """Images of different sizes in one buffer: each crop is a true window of one image."""
    from sgacodec.training.data import CropPool

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((20, 30), (40, 16), (16, 16))]
    pool = CropPool(images + [np.zeros((10, 40, 3), np.uint8)], 16, seed=1)  # too small: left out
    assert len(pool) == 3
    windows = {}
    for k, im in enumerate(images):
        t = torch.from_numpy(im).permute(2, 0, 1)
        for top in range(im.shape[0] - 15):
            for left in range(im.shape[1] - 15):
                w = t[:, top : top + 16, left : left + 16]
                for f in (w, w.flip(2), w.flip(1), w.flip(1, 2)):
                    windows.setdefault(f.numpy().tobytes(), set()).add((k, top, left))
    found = set()
    for _ in range(20):
        for crop in pool.batch(32):
            places = windows.get(crop.contiguous().numpy().tobytes())
            assert places, "a crop that is no window of any image"
            found |= {k for k, _, _ in places}
    assert found == {0, 1, 2}


def test_ranks_cut_slices_of_one_global_batch():
    from sgacodec.training.data import CropPool

    images = [np.random.default_rng(s).integers(0, 256, (40, 50, 3), dtype=np.uint8) for s in range(3)]
    whole = CropPool(images, 16, seed=5).batch(6)
    parts = [CropPool(images, 16, seed=5).batch(6, rank, 3) for rank in range(3)]
    assert torch.equal(torch.cat(parts), whole)
    with pytest.raises(ValueError):
        CropPool(images, 16).batch(6, 0, 4)


def test_load_images_searches_folders_and_skips_small_ones(tmp_path):
    from PIL import Image

    from sgacodec.training.data import image_files, load_images

    (tmp_path / "sub").mkdir()
    Image.fromarray(np.zeros((70, 80, 3), np.uint8)).save(tmp_path / "sub" / "a.png")
    Image.fromarray(np.zeros((30, 80, 3), np.uint8)).save(tmp_path / "b.jpg")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in image_files(tmp_path)] == ["b.jpg", "a.png"]
    assert [im.shape for im in load_images(tmp_path, 64)] == [(70, 80, 3)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        image_files(tmp_path / "empty")
