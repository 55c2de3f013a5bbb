"""CompressAI's pretrained models, loaded through its own zoo: downloaded once into torch.hub's
cache (never by a decode unless allowed), weights checked as every model's are."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError, first_sentence
from .checkpoints import prepare, sha256_file
from .loaded import LoadedModel, ModelId
from .zoo_table import METRICS, ZOO_NAMES, has_quality, lmbda


def zoo_cache_path(name: str, quality: int, metric: str = "mse") -> Path:
    """Where torch.hub keeps this zoo model's weights once downloaded."""
    import torch.hub

    from ..network.compressai_zoo import zoo_weights_url

    url = zoo_weights_url(name, metric, quality)
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_zoo(name: str, quality: int, metric: str = "mse", allow_download: bool = True) -> LoadedModel:
    """CompressAI's pretrained model through its own zoo (downloads once into torch.hub's cache,
    unless ``allow_download`` is False: then only the cache is read). torch.hub's messages go to
    stderr: stdout may carry a bitstream (-o -) or JSON records."""
    import contextlib
    import sys

    from ..network.compressai_zoo import zoo_network

    if name not in ZOO_NAMES:
        raise ModelError(f"unknown model {name!r}; choose from {', '.join(ZOO_NAMES)} or 'default'")
    if metric not in METRICS:
        raise ModelError(f"unknown metric {metric!r}; choose mse or ms-ssim")
    if not has_quality(name, quality):
        raise ModelError(f"CompressAI publishes no pretrained {name} of quality {quality} ({metric})")
    try:
        cache = zoo_cache_path(name, quality, metric)
    except KeyError:
        raise ModelError(f"CompressAI publishes no pretrained {name} of quality {quality} ({metric})") from None
    if not allow_download and not cache.is_file():
        raise ModelError(f"the weights of the zoo model {name} q{quality} ({metric}) are not in the local "
                         f"cache ({cache}) and decoding does not download; allow it with --allow-download "
                         f"(or SGACODEC_ALLOW_DOWNLOAD=1), or encode once with --model {name} --quality {quality}")
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
    return LoadedModel(prepare(net, f"zoo model {name} q{quality}"), ModelId("zoo", name, metric, quality, sha),
                       lmbda(metric, quality))
