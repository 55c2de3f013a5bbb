"""What a file holds, read from its container alone (no torch, no model, nothing decoded): the
``sgacodec info`` report, as webpinfo, jxlinfo and ``avifdec --info`` give theirs.

    describe(data)   # {"version": 3, "model": {...}, "width": ..., "tiles": {...}, "streams": {...}, ...}

A damaged or foreign file raises BitstreamError with a one-line reason (the container checks the
CRC-32 and every declared size before anything else).
"""

from __future__ import annotations

from ..network.grid import Grid
from . import container


def describe(data: bytes) -> dict:
    """A JSON-ready description of one sgacodec file (``data``: its bytes)."""
    header = container.unpack(data)
    grid = Grid(header.height, header.width, header.tile)
    y_sizes = [len(s) for s in header.y_strings]
    pixels = header.height * header.width
    model = header.model
    info = {
        "version": header.version,
        "model": {"kind": model.kind, "name": model.name, "quality": model.quality or None, "metric": model.metric,
                  "weights_sha256_prefix": model.weights_sha.hex()},
        "width": header.width, "height": header.height,
        "colour": "grayscale" if header.grayscale else "rgb",
        "tiles": {"size": header.tile, "rows": grid.shape[0], "columns": grid.shape[1], "count": len(grid)},
        "latents": {"z": list(header.z_shape), "y": list(header.y_shape)},
        "streams": {"z_bytes": len(header.z_string), "y_streams": len(y_sizes), "y_bytes": sum(y_sizes),
                    "y_bytes_per_stream": [min(y_sizes), max(y_sizes)]},
        "bytes": len(data),
        "bpp": 8 * len(data) / pixels,
        "metadata": {name: len(header.metadata[name]) for name in ("icc", "exif", "xmp")
                     if name in header.metadata},
        "alpha": len(header.metadata["alpha"]) if "alpha" in header.metadata else None,
        "skipped_chunks": [{"type": kind, "bytes": length} for kind, length in header.skipped],
        "integrity": "CRC-32 ok, sizes consistent",
    }
    if header.version < 3:
        info["tiles"] = {"size": 0, "rows": 1, "columns": 1, "count": 1}
    return info


def summary_lines(name: str, info: dict) -> list[str]:
    """The human report of ``describe``: a few lines per file."""
    model, tiles, streams = info["model"], info["tiles"], info["streams"]
    quality = f" q{model['quality']}" if model["quality"] else ""
    grid = (f"{tiles['rows']}x{tiles['columns']} tiles of {tiles['size']} px" if tiles["size"]
            else "one tile (the whole image)")
    metadata = ", ".join(f"{k.upper() if k != 'xmp' else 'XMP'} {v} B" for k, v in info["metadata"].items()) or "none"
    lines = [
        f"{name}: sgacodec file version {info['version']}, {info['width']}x{info['height']} {info['colour']}, "
        f"{info['bytes']} bytes, {info['bpp']:.4f} bpp",
        f"  model: {model['kind']} {model['name']}{quality} ({model['metric']}), "
        f"weights {model['weights_sha256_prefix']}",
        f"  {grid}; latents z {info['latents']['z'][0]}x{info['latents']['z'][1]}, "
        f"y {info['latents']['y'][0]}x{info['latents']['y'][1]}",
        f"  streams: z {streams['z_bytes']} B, y {streams['y_bytes']} B in {streams['y_streams']} stream(s)",
        f"  metadata: {metadata}; alpha: {'%d B' % info['alpha'] if info['alpha'] is not None else 'none'}",
    ]
    if info["skipped_chunks"]:
        lines.append("  optional chunks this build does not know (skipped): "
                     + ", ".join(f"{c['type']} ({c['bytes']} B)" for c in info["skipped_chunks"]))
    lines.append(f"  integrity: {info['integrity']}")
    return lines
