"""Golden files: bitstreams written by earlier builds must keep decoding to the same pixels.

tests/golden/ holds a crop of docs/example.png coded as file format version 1 (float32 coding)
and version 2 (float64 coding) with a small committed model (tiny.safetensors), and as version 2
with the embedded default model; and as version 3 (chunks, tiles) with each model, in one tile
and in tiles of 64 pixels; with the SHA-256 of the pixels each must decode to (golden.json).
A change in the coder, the bitstream reader or the model loading that breaks an old file fails
here. Regenerate only on purpose (a new file format, new shipped weights), never to make a
failure pass: ``SGACODEC_REGENERATE_GOLDEN=1 python -m pytest tests/test_golden.py`` (all), or
``SGACODEC_REGENERATE_GOLDEN=v3`` (the version 3 files only, the older ones kept).
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from sgacodec.codec import container as bitstream
from sgacodec.codec.decoder import decode
from sgacodec.codec.encoder import code_latents
from sgacodec.codec.pixels import pad, to_tensor
from sgacodec.config import RefineConfig
from sgacodec.files.images import read_image
from sgacodec.models.checkpoints import load_checkpoint
from sgacodec.models.embedded import load_embedded
from sgacodec.network.coding_net import without_coder_tables
from sgacodec.network.latent_model import LatentModel
from sgacodec.refinement.loop import refine_latents as refine

from .support import ROOT, TINY_LMBDA, train_tiny

GOLDEN = ROOT / "tests" / "golden"
MANIFEST = GOLDEN / "golden.json"
CHECKPOINT = GOLDEN / "tiny.safetensors"


def golden_image():
    """A 61 x 83 crop of docs/example.png: odd sizes, so the decoder crops its padding."""
    return read_image(ROOT / "docs" / "example.png")[40:101, 50:133].copy()


def pixels_sha256(rgb) -> str:
    return hashlib.sha256(rgb.tobytes()).hexdigest()


def regenerate():
    from safetensors.torch import save_file

    GOLDEN.mkdir(exist_ok=True)
    net = train_tiny()
    save_file({k: v.contiguous() for k, v in without_coder_tables(net.state_dict()).items()},
              str(CHECKPOINT), metadata={"lmbda": str(TINY_LMBDA)})
    CHECKPOINT.chmod(0o644)
    tiny, default, image = load_checkpoint(CHECKPOINT), load_embedded(), golden_image()
    entries = []
    for name, model, version in (("example-tiny-v1.bin", tiny, 1), ("example-tiny-v2.bin", tiny, 2),
                                 ("example-default-v2.bin", default, 2)):
        x = pad(to_tensor(image))
        result = refine(LatentModel(model.net), x, image.shape[:2], model.lmbda,
                        RefineConfig(method="ste", iterations=5))
        [(data, rgb)] = code_latents(model, result.y, result.z, image.shape[:2], version=version)
        (GOLDEN / name).write_bytes(data)
        entries.append({"file": name, "model": "tiny" if model is tiny else "embedded", "version": version,
                        "height": image.shape[0], "width": image.shape[1], "pixels_sha256": pixels_sha256(rgb)})
    manifest = {"image": "docs/example.png[40:101, 50:133]", "files": entries,
                "tiny_unrefined_v2_sha256": hashlib.sha256(unrefined_v2(tiny, image)).hexdigest()}
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")


V3_FILES = (("example-tiny-v3.bin", "tiny", 0), ("example-tiny-v3-tiles.bin", "tiny", 64),
            ("example-default-v3-tiles.bin", "embedded", 64))


def regenerate_v3():
    """The version 3 golden files, added to the manifest beside the older ones (kept as they are)."""
    tiny, default, image = load_checkpoint(CHECKPOINT), load_embedded(), golden_image()
    manifest = json.loads(MANIFEST.read_text())
    entries = [e for e in manifest["files"] if e["version"] < 3]
    for name, which, tile in V3_FILES:
        model = tiny if which == "tiny" else default
        x = pad(to_tensor(image))
        result = refine(LatentModel(model.net), x, image.shape[:2], model.lmbda,
                        RefineConfig(method="ste", iterations=5))
        [(data, rgb)] = code_latents(model, result.y, result.z, image.shape[:2], version=3, tile=tile)
        (GOLDEN / name).write_bytes(data)
        entries.append({"file": name, "model": which, "version": 3, "tile": tile, "height": image.shape[0],
                        "width": image.shape[1], "pixels_sha256": pixels_sha256(rgb)})
    manifest["files"] = entries
    manifest["tiny_unrefined_v3_sha256"] = hashlib.sha256(unrefined_v3(tiny, image)).hexdigest()
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")


def unrefined_v3(model, image) -> bytes:
    """The version 3 file, in tiles of 64 pixels, of ``image`` with the encoder's own latents."""
    y, z = LatentModel(model.net).analysis(pad(to_tensor(image)))
    [(data, _)] = code_latents(model, y, z, image.shape[:2], version=3, tile=64)
    return data


def unrefined_v2(model, image) -> bytes:
    """The version 2 file of ``image`` with the encoder's own latents."""
    y, z = LatentModel(model.net).analysis(pad(to_tensor(image)))
    [(data, _)] = code_latents(model, y, z, image.shape[:2], version=2)
    return data


if os.environ.get("SGACODEC_REGENERATE_GOLDEN") == "v3":
    regenerate_v3()
elif os.environ.get("SGACODEC_REGENERATE_GOLDEN"):
    regenerate()
    regenerate_v3()


def entries():
    return json.loads(MANIFEST.read_text())["files"]


@pytest.mark.parametrize("entry", entries(), ids=lambda e: e["file"])
def test_golden_files_decode_to_their_pixels(entry):
    data = (GOLDEN / entry["file"]).read_bytes()
    header = bitstream.unpack(data)
    assert header.version == entry["version"] and (header.height, header.width) == (entry["height"], entry["width"])
    assert header.tile == entry.get("tile", 0)
    model = load_checkpoint(CHECKPOINT) if entry["model"] == "tiny" else None
    if model is None and header.model.weights_sha != load_embedded().identity.weights_sha:
        pytest.fail(f"{entry['file']} was coded with embedded weights {header.model.weights_sha.hex()}, which "
                    "are no longer shipped: regenerate the golden files on purpose (see the module docstring)")
    decoded = decode(data, model, strict=True)
    assert decoded.exact and pixels_sha256(decoded.rgb) == entry["pixels_sha256"]


@pytest.mark.parametrize("version", [2, 3])
def test_the_golden_image_encodes_to_the_same_bytes_unrefined(version):
    """The coding side is as stable as the decoding side: the tiny model's unrefined file of the
    golden image (version 2, and version 3 in tiles) has the same bytes as when the golden files
    were made (on this project's machine type: the analysis transform g_a runs in float32)."""
    make = unrefined_v2 if version == 2 else unrefined_v3
    data = make(load_checkpoint(CHECKPOINT), golden_image())
    assert hashlib.sha256(data).hexdigest() == json.loads(MANIFEST.read_text())[f"tiny_unrefined_v{version}_sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("quality", [1, 2, 3])
def test_estimated_bits_match_the_coded_bytes(quality):
    """The refinement's rate estimate (-log2 likelihoods) is what the entropy coder spends: the two
    rANS strings cost the estimated bits within 1%, plus at most 128 bits of overhead per stream
    (each stream's final state and 32-bit word padding; measured: 29 to 180 bits for two)."""
    model = load_embedded(quality)
    image = read_image(ROOT / "docs" / "example.png")
    x = pad(to_tensor(image))
    for config in (RefineConfig(method="none"), RefineConfig(method="ssl", iterations=10)):
        result = refine(LatentModel(model.net), x, image.shape[:2], model.lmbda, config)
        [(data, _)] = code_latents(model, result.y, result.z, image.shape[:2])
        header = bitstream.unpack(data)
        coded = 8 * (sum(len(s) for s in header.y_strings) + len(header.z_string))
        estimated = float(result.best.bpp) * image.shape[0] * image.shape[1]
        overhead = 128 * (len(header.y_strings) + 1)
        assert 0.99 * estimated <= coded <= 1.01 * estimated + overhead, (config.method, estimated, coded)
        assert torch.isfinite(result.best.bpp).all()
