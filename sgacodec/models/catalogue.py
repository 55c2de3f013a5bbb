"""The models that can be used, and what each gives (``sgacodec models``): the embedded ones with
their measured Kodak figures (the manifest's), and CompressAI's zoo with its published ones (the
zoo table's), each zoo model's weights found in torch.hub's cache or not."""

from __future__ import annotations

from .embedded import embedded_manifest
from .zoo_table import ZOO, lmbda


def catalogue(check_cache: bool = True) -> list[dict]:
    """One entry per usable model: kind, name, quality, lambda, Kodak bpp and PSNR (measured or
    published, no refinement), where it comes from, and how to use it."""
    manifest = embedded_manifest()
    out = []
    for m in sorted(manifest["models"], key=lambda m: m["quality"]):
        kodak = m.get("kodak", {})
        out.append({"kind": "embedded", "name": m["name"], "quality": m["quality"], "lmbda": m["lmbda"],
                    "kodak_bpp": kodak.get("bpp"), "kodak_psnr": kodak.get("psnr"), "figures": "measured",
                    "default": m["quality"] == manifest.get("default_quality"), "available": True,
                    "use": f"--quality {m['quality']}"})
    for name, zoo in ZOO.items():
        for quality, (bpp, psnr) in sorted(zoo.published.items()):
            cached = None
            if check_cache:
                from .zoo import zoo_cache_path

                try:
                    cached = zoo_cache_path(name, quality).is_file()
                except (KeyError, ImportError):
                    cached = False
            out.append({"kind": "zoo", "name": name, "quality": quality, "lmbda": lmbda("mse", quality),
                        "kodak_bpp": bpp, "kodak_psnr": psnr, "figures": "published by CompressAI",
                        "default": False, "available": cached, "context_model": zoo.context,
                        "use": f"--model {name} --quality {quality}" + ("" if cached else " (downloads once)")})
    return out
