"""Loading the model a user asks for, or the one a file names: a checkpoint, a CompressAI zoo
model, or an embedded model (the default). Every loaded model is on the CPU in float32, in eval
mode, its weights checked; the coder's tables are built where a file format version needs them
(network/coding_net.py), not here.
"""

from __future__ import annotations

from ..config import DEFAULT_MODEL, ZOO_DEFAULT_QUALITY, environ
from ..errors import ModelError
from .checkpoints import load_checkpoint
from .embedded import load_embedded
from .loaded import LoadedModel, ModelId
from .zoo import load_zoo
from .zoo_table import has_quality


def load_model(model: str = DEFAULT_MODEL, quality: int | None = None, metric: str = "mse",
               checkpoint=None, architecture: str | None = None) -> LoadedModel:
    """The model the user asked for: a checkpoint file, a zoo name, or 'default' (embedded)."""
    if checkpoint is not None:
        return load_checkpoint(checkpoint, architecture)
    if model in (None, DEFAULT_MODEL):
        return load_embedded(quality)
    return load_zoo(model, ZOO_DEFAULT_QUALITY if quality is None else quality, metric)


def load_for_bitstream(model_id: ModelId, checkpoint=None, allow_download: bool = False) -> LoadedModel:
    """The model a bitstream names; a checkpoint file must be given for checkpoint-coded files.
    A zoo model is read from torch.hub's cache only: an untrusted file never starts a download,
    unless ``allow_download`` (or SGACODEC_ALLOW_DOWNLOAD=1)."""
    if model_id.kind == "checkpoint" and checkpoint is None:
        raise ModelError(f"this file was coded with a checkpoint ({model_id.describe()}); "
                         "pass it with --checkpoint FILE")
    if checkpoint is not None:
        loaded = load_checkpoint(checkpoint, model_id.name if model_id.kind == "checkpoint" else None)
    elif model_id.kind == "embedded":
        loaded = load_embedded(model_id.quality)
    else:
        if not has_quality(model_id.name, model_id.quality):
            raise ModelError(f"this file names an unknown zoo model ({model_id.describe()})")
        allow = allow_download or environ("SGACODEC_ALLOW_DOWNLOAD", "") == "1"
        loaded = load_zoo(model_id.name, model_id.quality, model_id.metric, allow_download=allow)
    if loaded.identity.weights_sha != model_id.weights_sha and any(model_id.weights_sha):
        raise ModelError(f"model mismatch: the file was coded with weights {model_id.weights_sha.hex()}, "
                         f"the loaded model has {loaded.identity.weights_sha.hex()}")
    return loaded
