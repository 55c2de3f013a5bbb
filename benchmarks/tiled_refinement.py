#!/usr/bin/env python3
"""Refinement in tiles against refinement of the whole image (issue 30): the gain of SGA+ over
no refinement, on real bytes, with the image refined in tiles and as one tile.

    python benchmarks/tiled_refinement.py --out docs/results/tiled_refinement.json --jobs 2
    python benchmarks/tiled_refinement.py --page docs/performance.md --out docs/results/tiled_refinement.json

The first ``--images`` CLIC 2025 validation images (sorted by name), their central ``--crop`` x
``--crop`` pixels (so that the whole image still fits), are encoded four ways with the embedded
default model: method none and SSL for ``--iterations`` steps, each with the default tile grid
(TILE_SIZE: the file in tiles, refined in tiles with ``refine_tiles=True``, as an image above
WHOLE_REFINE_MEGAPIXELS is by default) and with ``tile_size=0`` (one tile, refined whole).
Every figure is the coded file's: bpp from its bytes, PSNR of the decoded 8-bit image.

The gain of a refinement is its PSNR gain at equal rate against no refinement, from the local
slope of the R-D curve the loss optimises (bpp + lambda 255^2 MSE, MSE on the [0, 1] scale): at
its optimum a bit per pixel buys lambda 255^2 of MSE, a relative change of 1 / (lambda 255^2 MSE),
so

    gain_dB = (PSNR_ssl - PSNR_none) - (10 / ln 10) (bpp_ssl - bpp_none) / (lambda 255^2 MSE_none)

and the tiled run's difference at equal rate against the whole run's is the same formula between
the two refined files. The loss gain (bpp + lambda 255^2 MSE, the refined objective) is reported
beside. ``--jobs N`` runs N encodes at once, each with one torch thread; the results file is
rewritten after each encode, so a run that is cut short keeps what it measured (and the page says
how many of the images it covers). ``--resume`` continues such a run: it keeps the rows already in
``--out`` (same iterations, crop and tile size) and encodes only the missing ones; every row names
the commit that measured it, and the page lists the runs.

    python benchmarks/tiled_refinement.py --out docs/results/tiled_refinement.json --jobs 2 --resume
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from sgacodec.config import TILE_SIZE  # torch-free

ROOT = Path(__file__).resolve().parents[1]
CLIC = ROOT.parent / "shared" / "datasets" / "clic2025-val"
BEGIN, END = "<!-- tiled-refinement:begin -->", "<!-- tiled-refinement:end -->"


def crop(path: Path, side: int):
    from sgacodec import read_image

    image = read_image(path)
    h, w = image.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return image[top : top + side, left : left + side].copy()


def encode_one(path: str, side: int, method: str, tile: int, iterations: int) -> dict:
    """One encode in this worker process (one torch thread): its real-byte figures."""
    import numpy as np
    import torch

    from sgacodec import RefineConfig, encode, load_model
    from sgacodec.evaluation.records import source_commit

    torch.set_num_threads(1)
    image = crop(Path(path), side)
    config = RefineConfig(method=method, iterations=iterations if method != "none" else 0, tile_size=tile,
                          refine_tiles=bool(tile))  # in tiles even below WHOLE_REFINE_MEGAPIXELS
    begin = time.perf_counter()
    report = encode(load_model(), [image], config)[0]
    mse = float(np.mean((report.recon.astype(np.float64) - image.astype(np.float64)) ** 2))  # 8-bit scale
    return {"image": Path(path).name, "method": method, "tile": tile, "iterations": report.iterations,
            "bpp": report.bpp, "psnr": report.psnr, "mse": mse, "lmbda": report.lmbda,
            "bytes": len(report.data), "seconds": round(time.perf_counter() - begin, 1), "commit": source_commit()}


def unit_mse(r: dict) -> float:
    """A row's MSE on the [0, 1] scale of the loss (rows hold it on the 8-bit scale, 0-255^2)."""
    return r["mse"] / 255**2


def equal_rate_db(a: dict, b: dict) -> float:
    """a's PSNR advantage over b at b's rate, by the local R-D slope at b (see the docstring)."""
    slope = 10 / math.log(10) / (b["lmbda"] * 255**2 * unit_mse(b))
    return (a["psnr"] - b["psnr"]) - slope * (a["bpp"] - b["bpp"])


def loss(r: dict) -> float:
    """bpp + lambda 255^2 MSE: the loss the refinement minimises (metrics.rd_loss)."""
    from sgacodec.metrics import rd_loss

    return rd_loss(r["lmbda"], unit_mse(r), r["bpp"])


def summarise(rows: list[dict]) -> dict:
    by = {(r["image"], r["method"], r["tile"]): r for r in rows}
    images = sorted({r["image"] for r in rows})
    per_image = []
    for name in images:
        try:
            none_t, none_w = by[(name, "none", TILE_SIZE)], by[(name, "none", 0)]
            ssl_t, ssl_w = by[(name, "ssl", TILE_SIZE)], by[(name, "ssl", 0)]
        except KeyError:
            continue
        gain_t, gain_w = equal_rate_db(ssl_t, none_t), equal_rate_db(ssl_w, none_w)
        per_image.append({
            "image": name, "gain_db_tiled": gain_t, "gain_db_whole": gain_w,
            "gain_ratio": gain_t / gain_w if gain_w else None,
            "tiled_vs_whole_db_at_equal_rate": equal_rate_db(ssl_t, ssl_w),
            "loss_gain_tiled": loss(none_t) - loss(ssl_t), "loss_gain_whole": loss(none_w) - loss(ssl_w),
            "bpp": {"none_tiled": none_t["bpp"], "none_whole": none_w["bpp"], "ssl_tiled": ssl_t["bpp"],
                    "ssl_whole": ssl_w["bpp"]},
            "psnr": {"none_tiled": none_t["psnr"], "none_whole": none_w["psnr"], "ssl_tiled": ssl_t["psnr"],
                     "ssl_whole": ssl_w["psnr"]},
            "seconds": {"ssl_tiled": ssl_t["seconds"], "ssl_whole": ssl_w["seconds"]},
        })
    out = {"images": per_image}
    if per_image:
        mean_t = sum(p["gain_db_tiled"] for p in per_image) / len(per_image)
        mean_w = sum(p["gain_db_whole"] for p in per_image) / len(per_image)
        out["mean_gain_db_tiled"], out["mean_gain_db_whole"] = mean_t, mean_w
        out["mean_gain_ratio"] = mean_t / mean_w if mean_w else None
        out["worst_tiled_vs_whole_db"] = min(p["tiled_vs_whole_db_at_equal_rate"] for p in per_image)
    return out


def provenance(argv) -> dict:
    import torch

    import sgacodec
    from sgacodec.evaluation.records import cpu_model, source_commit
    from sgacodec.network.compressai_import import installed_version

    return {
        "command": "python benchmarks/tiled_refinement.py " + " ".join(argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": source_commit(),
        "machine": f"{platform.platform()}, CPU {cpu_model()} ({os.cpu_count()} cores), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GB",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "compressai": installed_version("compressai"), "sgacodec": sgacodec.__version__},
        "tile_size": TILE_SIZE,
    }


def page(results: dict) -> str:
    p, s = results["provenance"], results["summary"]
    lines = [BEGIN, "", f"Measured by `{p['command']}` on {p['date']} at commit {str(p['commit'])[:12]}: "
             f"{p['machine']}; torch {p['versions']['torch']}, CompressAI {p['versions']['compressai']}. "
             f"SSL, {results['iterations']} iterations, the embedded default model, {results['crop']} x "
             f"{results['crop']} central crops; refined in tiles of {p['tile_size']} (the default) or whole "
             "(`--tile-size 0`); gains against no refinement in PSNR at equal rate (real bytes).", "",
             "| image | gain, tiles dB | gain, whole dB | ratio | tiles vs whole at equal rate dB | "
             "bpp none -> ssl, tiles | bpp none -> ssl, whole | s, tiles | s, whole |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in s["images"]:
        b = r["bpp"]
        lines.append(f"| {r['image'][:12]} | {r['gain_db_tiled']:+.4f} | {r['gain_db_whole']:+.4f} | "
                     f"{r['gain_ratio']:.3f} | {r['tiled_vs_whole_db_at_equal_rate']:+.4f} | "
                     f"{b['none_tiled']:.4f} -> {b['ssl_tiled']:.4f} | {b['none_whole']:.4f} -> {b['ssl_whole']:.4f} | "
                     f"{r['seconds']['ssl_tiled']:.0f} | {r['seconds']['ssl_whole']:.0f} |")
    if s.get("images"):
        lines += ["", f"Mean gain: {s['mean_gain_db_tiled']:+.4f} dB in tiles, {s['mean_gain_db_whole']:+.4f} dB "
                      f"whole (ratio {s['mean_gain_ratio']:.3f}); the worst image in tiles against whole at "
                      f"equal rate: {s['worst_tiled_vs_whole_db']:+.4f} dB."]
    runs = results.get("earlier_runs", [])
    if runs:
        commits = sorted({str(r.get("commit", p["commit"]))[:12] for r in results["rows"]})
        lines += ["", f"Resumed run: the rows were measured by {len(runs) + 1} runs of the same settings (" +
                  "; ".join(f"`{q['command']}` on {q['date']} at commit {str(q['commit'])[:12]}"
                            for q in runs + [p]) + f"); the commits that measured rows: {', '.join(commits)}."]
    planned = results.get("images_planned", [])
    if len(s["images"]) < len(planned):
        lines += ["", f"**Partial run:** {len(s['images'])} of the {len(planned)} images it was started on "
                      "finished both refinements before the run was stopped; the others were not measured."]
    lines += ["", END]
    return "\n".join(lines)


def write_page(path: Path, results: dict) -> None:
    from sgacodec.evaluation.records import write_section

    write_section(path, page(results), BEGIN, END)


def resumable(earlier: dict, results: dict) -> dict:
    """The rows of an earlier results file that a run of ``results``' settings keeps (each named by
    the commit that measured it), and that file's runs; SystemExit if its settings differ."""
    mine = (results["iterations"], results["crop"], results["provenance"]["tile_size"])
    theirs = (earlier.get("iterations"), earlier.get("crop"), earlier["provenance"].get("tile_size"))
    if mine != theirs:
        raise SystemExit(f"--resume: {theirs} (iterations, crop, tile size) in the results file, not {mine}")
    commit = earlier["provenance"]["commit"]
    rows = [{**r, "commit": r.get("commit", commit)} for r in earlier["rows"]
            if r["image"] in results["images_planned"]]
    return {"rows": rows, "runs": earlier.get("earlier_runs", []) + [earlier["provenance"]]}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clic", type=Path, default=CLIC)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--crop", type=int, default=1024)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=1, help="encodes at once (one torch thread each)")
    ap.add_argument("--out", type=Path, required=True, help="the results file (JSON)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows already in --out (same settings) and encode only the missing ones")
    ap.add_argument("--page", type=Path, default=None,
                    help="rewrite this page's section (and --out's summary) from --out's rows; measure nothing")
    args = ap.parse_args(argv)
    if args.page:  # the summary is derived from the rows: computed again, kept in --out as well
        results = json.loads(args.out.read_text())
        results["summary"] = summarise(results["rows"])
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        write_page(args.page, results)
        return 0
    paths = sorted(args.clic.glob("*.png"))[: args.images]
    results = {"provenance": provenance(argv), "iterations": args.iterations, "crop": args.crop, "rows": []}
    results["images_planned"] = [p.name for p in paths]
    if args.resume and args.out.exists():
        earlier = resumable(json.loads(args.out.read_text()), results)
        results["rows"], results["earlier_runs"] = earlier["rows"], earlier["runs"]
    done = {(r["image"], r["method"], r["tile"]) for r in results["rows"]}
    # the cheap baselines first, then each image's two refinements side by side: a run cut short
    # keeps whole images
    jobs = [(str(p), args.crop, m, t, args.iterations) for m in ("none", "ssl") for p in paths for t in (TILE_SIZE, 0)
            if (p.name, m, t) not in done]
    kept = f" ({len(done)} rows kept from {args.out})" if done else ""
    print(f"{len(jobs)} encodes to run{kept}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(encode_one, *job) for job in jobs]
        for future in as_completed(futures):
            results["rows"].append(future.result())
            print(json.dumps(results["rows"][-1]), flush=True)
            results["summary"] = summarise(results["rows"])
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(page(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
