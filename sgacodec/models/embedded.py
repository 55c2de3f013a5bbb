"""The models shipped with sgacodec, in ``models/weights`` (docs/models.md): a manifest, and
fp16 safetensors checked against their sha256 when loaded."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelError
from .checkpoints import net_from_state_dict, read_state_dict, sha256_file
from .loaded import LoadedModel, ModelId

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"


def embedded_manifest() -> dict:
    if not MANIFEST.is_file():
        return {"models": []}
    return json.loads(MANIFEST.read_text())


def load_embedded(quality: int | None = None) -> LoadedModel:
    """One of the models shipped in sgacodec/models/weights (see docs/models.md)."""
    manifest = embedded_manifest()
    models = {m["quality"]: m for m in manifest["models"]}
    if not models:
        raise ModelError("this build ships no embedded model; use --model NAME or --checkpoint FILE")
    quality = manifest.get("default_quality", min(models)) if quality is None else quality
    if quality not in models:
        raise ModelError(f"no embedded model of quality {quality}; available: {sorted(models)}")
    entry = models[quality]
    path = WEIGHTS_DIR / entry["file"]
    state, _ = read_state_dict(path)
    net, _ = net_from_state_dict(state, entry["architecture"], f"embedded model {entry['file']}")
    sha = sha256_file(path)
    if sha.hex() != entry["sha256"]:
        raise ModelError(f"embedded model {entry['file']} is damaged (sha256 mismatch)")
    return LoadedModel(net, ModelId("embedded", entry["name"], "mse", quality, sha[:8]), entry["lmbda"])
