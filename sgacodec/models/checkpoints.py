"""Local checkpoints: state dicts read without unpickling code (``torch.load(weights_only=True)``
or safetensors), their architecture inferred from their keys, their weights checked before a
model is built or its coder tables computed.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from ..errors import ModelError, first_sentence
from .loaded import LoadedModel, ModelId
from .messages import load_failure, mismatch_reason
from .zoo_table import METRICS, ZOO_NAMES


def sha256_file(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def prepare(net, source: str):
    """The model as every loader returns it: float32, eval mode, weights checked. No ``update()``:
    the coding network builds the coder's tables in float64 (network/coding_net.py), and the
    float32 ones only version 1 files need come from ``with_float32_tables``."""
    net = net.float().eval()
    check_weights(net, source)
    return net


MAX_CHANNELS = 1024  # CompressAI's zoo models have at most 320; the model is built from these sizes


def check_weights(net, source: str) -> None:
    """Refuse, with one line, weights that would hang or exhaust the coder: NaN or infinite
    values anywhere (a NaN latent makes CompressAI's rANS encoder loop forever), or entropy
    bottleneck quantiles whose rANS tables would need gigabytes. Runs before ``update()``."""
    import torch

    from ..network.checks import coder_table_problem

    for name, tensor in net.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelError(f"{source}: {name} holds {bad} NaN or infinite value(s); refused")
    problem = coder_table_problem(net)
    if problem:
        raise ModelError(f"{source}: {problem}; refused")


def _check_sizes(state_dict, source: str) -> None:
    """Weights whose shapes would build an absurdly large model (the architecture's sizes N and M
    are read from them) are refused before the model is built."""
    for name, tensor in state_dict.items():
        if name.endswith(".weight") and tensor.dim() >= 2 and max(tensor.shape[:2]) > MAX_CHANNELS:
            raise ModelError(f"{source}: {name} has shape {list(tensor.shape)}, more channels than any "
                             f"CompressAI model (at most {MAX_CHANNELS}); refused")


# --- architecture from a state dict ---------------------------------------------------------

def infer_architecture(state_dict) -> str:
    """Guess the zoo architecture name of a CompressAI state dict from its keys and shapes."""
    keys = set(state_dict)
    if any(".conv_a." in k or ".conv_b." in k for k in keys):
        return "cheng2020-attn"
    if "g_a.0.conv1.weight" in keys:
        return "cheng2020-anchor"
    if "context_prediction.weight" in keys:
        return "mbt2018"
    if "h_s.4.weight" in keys and "g_a.6.weight" in keys:
        # the last h_s layer is a conv with 2M outputs (scales and means) in MeanScaleHyperprior
        # and M outputs (scales) in ScaleHyperprior
        if state_dict["h_s.4.weight"].shape[0] == 2 * state_dict["g_a.6.weight"].shape[0]:
            return "mbt2018-mean"
        return "bmshj2018-hyperprior"
    raise ModelError("checkpoint is not a CompressAI hyperprior model (unrecognised keys)")


def _architecture_class(name: str):
    if name not in ZOO_NAMES:
        raise ModelError(f"unknown architecture {name!r}; choose from {', '.join(ZOO_NAMES)}")
    from ..network.compressai_zoo import architecture_class

    return architecture_class(name)


def net_from_state_dict(state_dict, architecture: str | None = None, source: str = "checkpoint"):
    from ..network.compressai_zoo import rename_legacy_keys

    state_dict = rename_legacy_keys(state_dict)
    architecture = architecture or infer_architecture(state_dict)
    _check_sizes(state_dict, source)
    try:
        net = _architecture_class(architecture).from_state_dict(state_dict)
    except (RuntimeError, KeyError, IndexError) as exc:
        reason = mismatch_reason(exc) if isinstance(exc, RuntimeError) else f"no weight {exc}"
        raise ModelError(f"{source} does not fit architecture {architecture}: {reason}") from None
    return prepare(net.float(), source), architecture


def read_state_dict(path: Path):
    """(state_dict, metadata) from .safetensors or a torch file, never executing pickled code."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    meta = {}
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"cannot read safetensors checkpoint {path}: {first_sentence(exc)}") from None
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError for payloads, RuntimeError for junk
            raise ModelError(f"refusing or unable to load checkpoint {path}: {load_failure(exc)}") from None
        if isinstance(state, dict) and "state_dict" in state:
            meta = {k: v for k, v in state.items() if isinstance(v, (int, float, str))}
            state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ModelError(f"checkpoint {path} holds no state dict")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return state, meta


def load_checkpoint(path, architecture: str | None = None, lmbda: float | None = None) -> LoadedModel:
    path = Path(path)
    state, meta = read_state_dict(path)
    net, architecture = net_from_state_dict(state, architecture, f"checkpoint {path}")
    if lmbda is None and "lmbda" in meta:
        try:
            lmbda = float(meta["lmbda"])
        except (TypeError, ValueError):
            raise ModelError(f"checkpoint {path}: lmbda {str(meta['lmbda'])[:40]!r} is not a number") from None
        if not (math.isfinite(lmbda) and lmbda > 0):
            raise ModelError(f"checkpoint {path}: lmbda {lmbda} is not a positive number")
    metric = meta.get("metric", "mse")
    identity = ModelId("checkpoint", architecture, metric if metric in METRICS else "mse",
                       0, sha256_file(path)[:8])
    return LoadedModel(net, identity, lmbda)
