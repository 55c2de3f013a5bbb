#!/usr/bin/env python3
"""Memory estimates against measured peaks (issue 29): every path that ``sgacodec.codec.memory``
estimates before it works, run as a whole process on photos of two sizes.

    python benchmarks/memory_estimates.py --out docs/results/memory_estimates.json
    python benchmarks/memory_estimates.py --page docs/reliability.md --out docs/results/memory_estimates.json

Paths: ``encode --method none`` and ``decode`` of tiled files (the default), the same with
``--tile-size 0`` (the whole image as one tile), and files of versions 2 and 1 (CompressAI's own
whole-image compress() and decompress(); written through the library, ``code_latents(...,
version=N)``, the process measured being that encode). The photos are made from a CLIC 2025
validation image (its 4:3 centre, resized with Lanczos). Each command's peak is measured as
benchmarks/large_photos.py measures it (``ru_maxrss`` of its largest process, and the sampled
peak of its process tree's summed PSS), and set beside the estimate the path makes
(``memory.estimate``, or for versions 1 and 2 the process plus ``memory.image_bytes``). The
measured peak is the larger of the two: each is at most the tree's true peak (the largest
process's own, or a sample, which can miss a short peak). The bound checked is the issue's:
the estimate within 1.5x of the measured peak, both ways.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from large_photos import SHARED, make_photos, provenance, run  # noqa: E402

SIZES = ((2048, 1536), (2880, 2160))
LEGACY_SIZE = SIZES[0]
BOUND = 1.5
BEGIN, END = "<!-- memory-estimates:begin -->", "<!-- memory-estimates:end -->"
LEGACY_ENCODE = """
import sys, numpy as np
from PIL import Image
from sgacodec.codec import tiled
from sgacodec.codec.encoder import code_latents
from sgacodec.models.embedded import load_embedded
from sgacodec.network.grid import Grid
from sgacodec.network.latent_model import LatentModel
source, out, version = sys.argv[1], sys.argv[2], int(sys.argv[3])
image = np.asarray(Image.open(source).convert("RGB"))
model = load_embedded()
y, z = tiled.analyse(model.net, image, Grid(*image.shape[:2], 512), LatentModel(model.net).has_means)
[(data, _)] = code_latents(model, y, z, image.shape[:2], version=version)
open(out, "wb").write(data)
"""


def estimate_mb(path: str, width: int, height: int, tile: int | None) -> int:
    """What ``path`` ('encode', 'decode'; tile None: a version 1 or 2 file) is estimated to need."""
    from sgacodec.codec import memory
    from sgacodec.network.grid import Grid

    if tile is None:
        needed = memory.PROCESS_BYTES + memory.image_bytes(128, height, width, per_pixel=memory.LEGACY_BYTES_PER_PIXEL)
    else:
        needed = memory.estimate(path, 128, Grid(height, width, tile))
    return round(needed / (1 << 20))


def row(what: str, width: int, height: int, tile: int | None, version: int, measured: dict) -> dict:
    est = estimate_mb(what, width, height, tile)
    peak = max(measured["maxrss_mb"], measured["tree_pss_peak_mb"])
    ratio = round(est / peak, 3) if peak else None
    return {"path": what, "width": width, "height": height, "tile": tile, "version": version,
            "estimate_mb": est, "maxrss_mb": measured["maxrss_mb"], "tree_pss_peak_mb": measured["tree_pss_peak_mb"],
            "measured_peak_mb": peak, "estimate_over_peak": ratio,
            "within_bound": measured["exit"] == 0 and ratio is not None and 1 / BOUND <= ratio <= BOUND,
            "wall_s": measured["wall_s"], "exit": measured["exit"], "command": measured["command"],
            "stderr": measured["stderr"][-500:]}


def measure(args, folder: Path) -> list[dict]:
    from sgacodec.config import TILE_SIZE

    sgacodec, rows = [sys.executable, "-m", "sgacodec"], []
    for width, height in SIZES:
        [photo] = make_photos(args.source, folder, [(width, height)])
        for tile in (TILE_SIZE, 0):
            coded, decoded = folder / f"{photo.stem}-{tile}.bin", folder / f"{photo.stem}-{tile}.png"
            enc = run(sgacodec + ["encode", str(photo), "-o", str(coded), "--method", "none", "--force",
                                  "--tile-size", str(tile)])
            rows.append(row("encode", width, height, tile, 3, enc))
            dec = run(sgacodec + ["decode", str(coded), "-o", str(decoded), "--force"])
            rows.append(row("decode", width, height, tile, 3, dec))
            print(json.dumps(rows[-2]), json.dumps(rows[-1]), sep="\n", flush=True)
        if (width, height) == LEGACY_SIZE:
            for version in (2, 1):
                coded = folder / f"{photo.stem}-v{version}.bin"
                enc = run([sys.executable, "-c", LEGACY_ENCODE, str(photo), str(coded), str(version)])
                rows.append(row("encode", width, height, None, version, enc))
                dec = run(sgacodec + ["decode", str(coded), "-o", str(folder / "legacy.png"), "--force"])
                rows.append(row("decode", width, height, None, version, dec))
                print(json.dumps(rows[-2]), json.dumps(rows[-1]), sep="\n", flush=True)
    return rows


def page(results: dict) -> str:
    p = results["provenance"]
    lines = [BEGIN, "",
             f"Written by `{p['command']}` at commit {p['commit'][:7]} on {p['date']} "
             f"({p['machine']}; torch {p['versions']['torch']}, CompressAI {p['versions']['compressai']}). "
             "Peaks of whole processes: `ru_maxrss` (the largest process) and the sampled peak of the "
             "process tree's summed PSS, the measured peak the larger of the two; the estimate is what "
             "the path computes before it works.", "",
             "| path | photo | tile | file version | estimate | peak RSS | tree PSS | estimate / peak | within 1.5x |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        tile = "-" if r["tile"] is None else r["tile"]
        lines.append(f"| {r['path']} | {r['width']}x{r['height']} | {tile} | {r['version']} | {r['estimate_mb']} MB | "
                     f"{r['maxrss_mb']} MB | {r['tree_pss_peak_mb']} MB | {r['estimate_over_peak']} | "
                     f"{'yes' if r['within_bound'] else '**no**'} |")
    ok = sum(r["within_bound"] for r in results["rows"])
    lines += ["", f"{ok} of {len(results['rows'])} paths within 1.5x of the measured peak.", "", END]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=SHARED / "clic2025-val" / "100a02c269c5948392f283b2aa3bb4da.png")
    ap.add_argument("--out", type=Path, required=True, help="the results file (JSON)")
    ap.add_argument("--page", type=Path, default=None, help="rewrite this page's section from --out; measure nothing")
    args = ap.parse_args(argv)
    if args.page:
        from sgacodec.evaluation.records import write_section

        write_section(args.page, page(json.loads(args.out.read_text())), BEGIN, END)
        return 0
    prov = provenance(argv)
    prov["command"] = "python benchmarks/memory_estimates.py " + " ".join(argv)
    del prov["tile_size"]
    with tempfile.TemporaryDirectory() as tmp:
        results = {"provenance": prov, "rows": measure(args, Path(tmp))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(page(results))
    return 0 if all(r["within_bound"] for r in results["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
