"""CompressAI's zoo, as sgacodec reads it: architecture classes, weight URLs, pretrained networks
and the key renaming of older checkpoints (``compressai.zoo`` internals, checked against the
versions in ``compressai_import.COMPRESSAI_CHECKED``). The zoo's names, qualities, lambdas and
published figures are sgacodec's own table: ``models/zoo_table.py``.
"""

from __future__ import annotations

from .compressai_import import import_compressai


def architecture_class(name: str):
    """The CompressAI model class of a zoo architecture name (KeyError when unknown)."""
    import_compressai()
    from compressai.zoo.image import model_architectures

    return model_architectures[name]


def zoo_weights_url(name: str, metric: str, quality: int) -> str:
    """The URL CompressAI downloads this zoo model's weights from (KeyError when it has none)."""
    import_compressai()
    from compressai.zoo.image import model_urls

    return model_urls[name][metric][quality]


def zoo_network(name: str, quality: int, metric: str):
    """CompressAI's pretrained zoo model (downloads into torch.hub's cache when not there)."""
    import_compressai()
    from compressai.zoo import image_models

    return image_models[name](quality=quality, metric=metric, pretrained=True, progress=False)


def rename_legacy_keys(state_dict: dict) -> dict:
    """CompressAI's own conversion of older checkpoints' key names (compressai.zoo.pretrained)."""
    import_compressai()
    from compressai.zoo.pretrained import load_pretrained

    return load_pretrained(dict(state_dict))
