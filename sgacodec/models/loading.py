"""Loading CompressAI hyperprior models: the zoo, local checkpoints, and the embedded models.

Checkpoints are read with ``torch.load(weights_only=True)`` or safetensors: never unpickled code.
Every loaded model is put on the CPU in float32, in eval mode. The entropy coder's tables are
built where a file format version needs them, not here: version 2 codes with float64 tables
(float64.float64_coding_net), version 1 with CompressAI's float32 ones
(float64.with_float32_tables: ``update(force=True)``, as CompressAI's own compress() needs).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..codec.container import ModelId
from ..config import DEFAULT_MODEL, METRICS, ZOO_DEFAULT_QUALITY, ZOO_LAMBDAS, ZOO_NAMES
from ..errors import ModelError  # noqa: F401 - raised here, defined with the other errors

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"


@dataclass
class LoadedModel:
    net: object  # a compressai ScaleHyperprior subclass, CPU, float32, eval (coder tables: see above)
    identity: ModelId
    lmbda: float | None  # training lambda, when known

    def resolve_lmbda(self, lmbda: float | None = None, scale: float = 1.0) -> float:
        """The inference lambda: ``lmbda`` when given, else ``scale`` x the training lambda."""
        if lmbda is not None:
            return float(lmbda)
        if self.lmbda is None:
            raise ModelError("the model's training lambda is unknown; pass --lmbda")
        return self.lmbda * scale

    def describe(self) -> str:
        """'embedded msh-q2 q2': kind, name and quality, for tables and records."""
        ident = self.identity
        return f"{ident.kind} {ident.name}" + (f" q{ident.quality}" if ident.quality else "")


def sha256_file(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def _prepare(net, source: str):
    """The model as every loader returns it: float32, eval mode, weights checked. No ``update()``:
    the coding network builds the coder's tables in float64 (codec.coding_net), and the float32
    ones only version 1 files need come from ``with_float32_tables``."""
    net = net.float().eval()
    check_weights(net, source)
    return net


MAX_CHANNELS = 1024  # CompressAI's zoo models have at most 320; the model is built from these sizes


def check_weights(net, source: str) -> None:
    """Refuse, with one line, weights that would hang or exhaust the coder: NaN or infinite
    values anywhere (a NaN latent makes CompressAI's rANS encoder loop forever), or entropy
    bottleneck quantiles whose rANS tables would need gigabytes. Runs before ``update()``."""
    import torch

    from ..network.latent_model import coder_table_problem

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


def first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of an error message, on one line, never cut inside a word."""
    text = " ".join(str(text).split())
    match = re.match(r"(.+?[.:;])(\s|$)", text)
    sentence = match.group(1).rstrip(".:;") if match else text
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0] + " ..."
    return sentence


def mismatch_reason(exc: BaseException) -> str:
    """One line for load_state_dict's many-line RuntimeError (size mismatch, missing or
    unexpected keys)."""
    text = str(exc)
    size = re.search(r"size mismatch for ([\w.]+): copying a param with shape torch.Size\((\[[^\]]*\])\) "
                     r"from checkpoint, the shape in current model is torch.Size\((\[[^\]]*\])\)", text)
    if size:
        return f"{size.group(1)} has shape {size.group(2)}, the architecture needs {size.group(3)}"
    for label, what in (("Missing", "missing"), ("Unexpected", "unexpected")):
        keys = re.search(label + r' key\(s\) in state_dict: ((?:"[^"]*"(?:, )?)+)', text)
        if keys:
            names = re.findall(r'"([^"]*)"', keys.group(1))
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            return f"{len(names)} {what} weight(s): {', '.join(names[:3])}{more}"
    details = [line.strip() for line in text.splitlines()[1:] if line.strip()]
    return first_sentence(details[0] if details else text) or type(exc).__name__


def load_failure(exc: BaseException) -> str:
    """Why torch.load refused a file, in one line (never PyTorch's advice to turn weights_only off)."""
    text = " ".join(str(exc).split())
    if "Weights only load failed" in text or type(exc).__name__ == "UnpicklingError":
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return f"it holds pickled objects other than tensors{what}; sgacodec loads weights only, never code"
    if "PytorchStreamReader" in text or "zip archive" in text:
        return "damaged or truncated file (not a readable torch zip archive)"
    return f"not a torch or safetensors checkpoint ({type(exc).__name__})"


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
    from ..network.latent_model import architecture_class

    return architecture_class(name)


def net_from_state_dict(state_dict, architecture: str | None = None, source: str = "checkpoint"):
    from ..network.latent_model import rename_legacy_keys

    state_dict = rename_legacy_keys(state_dict)
    architecture = architecture or infer_architecture(state_dict)
    _check_sizes(state_dict, source)
    try:
        net = _architecture_class(architecture).from_state_dict(state_dict)
    except (RuntimeError, KeyError, IndexError) as exc:
        reason = mismatch_reason(exc) if isinstance(exc, RuntimeError) else f"no weight {exc}"
        raise ModelError(f"{source} does not fit architecture {architecture}: {reason}") from None
    return _prepare(net.float(), source), architecture


# --- loaders ----------------------------------------------------------------------------------

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


def zoo_cache_path(name: str, quality: int, metric: str = "mse") -> Path:
    """Where torch.hub keeps this zoo model's weights once downloaded."""
    import torch.hub

    from ..network.latent_model import zoo_weights_url

    url = zoo_weights_url(name, metric, quality)
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


DOWNLOAD_ENV = "SGACODEC_ALLOW_DOWNLOAD"  # "1": decoding may download the zoo weights a file names


def load_zoo(name: str, quality: int, metric: str = "mse", allow_download: bool = True) -> LoadedModel:
    """CompressAI's pretrained model through its own zoo (downloads once into torch.hub's cache,
    unless ``allow_download`` is False: then only the cache is read). torch.hub's messages go to
    stderr: stdout may carry a bitstream (-o -) or JSON records."""
    import contextlib
    import sys

    from ..network.latent_model import zoo_network

    if name not in ZOO_NAMES:
        raise ModelError(f"unknown model {name!r}; choose from {', '.join(ZOO_NAMES)} or 'default'")
    if metric not in METRICS:
        raise ModelError(f"unknown metric {metric!r}; choose mse or ms-ssim")
    try:
        cache = zoo_cache_path(name, quality, metric)
    except KeyError:
        raise ModelError(f"CompressAI publishes no pretrained {name} of quality {quality} ({metric})") from None
    if not allow_download and not cache.is_file():
        raise ModelError(f"the weights of the zoo model {name} q{quality} ({metric}) are not in the local "
                         f"cache ({cache}) and decoding does not download; allow it with --allow-download "
                         f"(or {DOWNLOAD_ENV}=1), or encode once with --model {name} --quality {quality}")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            net = zoo_network(name, quality, metric)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"{name} q{quality}: {first_sentence(exc)}") from None
    except OSError as exc:  # URLError and friends: no network
        raise ModelError(
            f"cannot download the pretrained weights of {name} q{quality} ({metric}): "
            f"{first_sentence(exc, 120)}; no network? pass a local file with --checkpoint FILE"
        ) from None
    sha = sha256_file(cache)[:8] if cache.is_file() else bytes(8)
    lmbda = ZOO_LAMBDAS[metric][quality - 1]
    return LoadedModel(_prepare(net, f"zoo model {name} q{quality}"), ModelId("zoo", name, metric, quality, sha),
                       lmbda)


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
        if model_id.name not in ZOO_NAMES or not 1 <= model_id.quality <= len(ZOO_LAMBDAS["mse"]):
            raise ModelError(f"this file names an unknown zoo model ({model_id.describe()})")
        allow = allow_download or os.environ.get(DOWNLOAD_ENV, "") == "1"
        loaded = load_zoo(model_id.name, model_id.quality, model_id.metric, allow_download=allow)
    if loaded.identity.weights_sha != model_id.weights_sha and any(model_id.weights_sha):
        raise ModelError(f"model mismatch: the file was coded with weights {model_id.weights_sha.hex()}, "
                         f"the loaded model has {loaded.identity.weights_sha.hex()}")
    return loaded


# --- families: the rate points of one model, for encoding to a target (targets.py) ----------

class ModelFamily:
    """The rate points among which a target's model is chosen, lowest rate (lambda) first, each
    loaded on first use: the embedded models, a zoo model's qualities, or one pinned model."""

    def __init__(self, names: list[str], loaders: list, identity: str, loaded: dict | None = None):
        self.names, self._loaders, self.identity = list(names), list(loaders), identity
        self._loaded: dict[int, LoadedModel] = dict(loaded or {})

    def __len__(self) -> int:
        return len(self._loaders)

    def __getitem__(self, index: int) -> LoadedModel:
        if index not in self._loaded:
            self._loaded[index] = self._loaders[index]()
        return self._loaded[index]

    @classmethod
    def single(cls, model: LoadedModel) -> "ModelFamily":
        return cls([model.describe()], [lambda: model], model.identity.weights_sha.hex(), {0: model})

    @classmethod
    def embedded(cls) -> "ModelFamily":
        entries = sorted(embedded_manifest()["models"], key=lambda m: m["lmbda"])
        if not entries:
            raise ModelError("this build ships no embedded model; use --model NAME or --checkpoint FILE")
        return cls([f"embedded {m['name']} q{m['quality']}" for m in entries],
                   [lambda q=m["quality"]: load_embedded(q) for m in entries],
                   "embedded:" + ",".join(m["sha256"][:16] for m in entries))

    @classmethod
    def zoo(cls, name: str, metric: str = "mse") -> "ModelFamily":
        qualities = range(1, len(ZOO_LAMBDAS[metric]) + 1)
        return cls([f"zoo {name} q{q}" for q in qualities],
                   [lambda q=q: load_zoo(name, q, metric) for q in qualities], f"zoo:{name}:{metric}")


def load_family(model: str = DEFAULT_MODEL, quality: int | None = None, metric: str = "mse",
                checkpoint=None, architecture: str | None = None) -> ModelFamily:
    """The models a target may choose from: the one asked for when pinned (a checkpoint or a
    quality), else every rate point of the embedded models or of the zoo model."""
    if checkpoint is not None or quality is not None:
        return ModelFamily.single(load_model(model, quality, metric, checkpoint, architecture))
    if model in (None, DEFAULT_MODEL):
        return ModelFamily.embedded()
    if model not in ZOO_NAMES or metric not in METRICS:
        raise ModelError(f"unknown model {model!r} or metric {metric!r}; choose from "
                         f"{', '.join(ZOO_NAMES)} or 'default', and {' or '.join(METRICS)}")
    return ModelFamily.zoo(model, metric)
