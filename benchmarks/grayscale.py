#!/usr/bin/env python3
"""What a grayscale picture costs (issue 31): the codec codes three equal channels (the stock
decoder outputs RGB), and the file marks the picture grayscale so that decode writes one channel.

    python benchmarks/grayscale.py --out docs/results/grayscale.json
    python benchmarks/grayscale.py --page docs/performance.md --out docs/results/grayscale.json

For every Kodak image, method none with the embedded default model, real bytes: the colour image,
and its grayscale version (Pillow's convert("L")) coded as three equal channels, with the PSNR
of the single channel decode writes (the luma of the decoded RGB, as Pillow computes it) and
how far the decoded RGB's channels stray from each other (what the model spends on chroma that
is not there shows up as rate the gray picture still pays).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"
BEGIN, END = "<!-- grayscale:begin -->", "<!-- grayscale:end -->"


def measure(args) -> list[dict]:
    import numpy as np
    import torch
    from PIL import Image

    from sgacodec import RefineConfig, encode, load_model
    from sgacodec.files.pictures import gray_of
    from sgacodec.metrics import psnr_from_mse

    torch.set_num_threads(1)
    model = load_model()
    rows = []
    for path in sorted(args.kodak.glob("*.png")):
        with Image.open(path) as im:
            colour = np.asarray(im.convert("RGB"))
            gray = np.asarray(im.convert("L"))
        rgb_of_gray = np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
        c, g = (encode(model, [x], RefineConfig(method="none"))[0] for x in (colour, rgb_of_gray))
        decoded = gray_of(g.recon)
        mse = float(np.mean((decoded.astype(np.float64) - gray) ** 2))
        spread = g.recon.astype(np.int16).max(axis=2) - g.recon.astype(np.int16).min(axis=2)
        rows.append({"image": path.name, "bpp_colour": c.bpp, "psnr_colour": c.psnr, "bpp_gray": g.bpp,
                     "psnr_gray_rgb": g.psnr, "psnr_gray_luma": psnr_from_mse(mse / 255**2),
                     "mean_channel_spread": float(spread.mean()), "max_channel_spread": int(spread.max())})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def provenance(argv) -> dict:
    import torch

    import sgacodec
    from sgacodec.evaluation.records import cpu_model, source_commit
    from sgacodec.network.compressai_import import installed_version

    return {"command": "python benchmarks/grayscale.py " + " ".join(argv),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": source_commit(),
            "machine": f"{platform.platform()}, CPU {cpu_model()} ({os.cpu_count()} cores)",
            "versions": {"torch": torch.__version__, "compressai": installed_version("compressai"),
                         "sgacodec": sgacodec.__version__}}


def page(results: dict) -> str:
    p, rows = results["provenance"], results["rows"]
    n = len(rows)
    mean = lambda key: sum(r[key] for r in rows) / n  # noqa: E731
    return "\n".join([
        BEGIN, "",
        f"Measured by `{p['command']}` on {p['date']} at commit {str(p['commit'])[:12]}: {p['machine']}; "
        f"torch {p['versions']['torch']}, CompressAI {p['versions']['compressai']}. The {n} Kodak images, "
        "method none, the embedded default model, real bytes.", "",
        "| | mean bpp | mean PSNR dB |", "|---|---|---|",
        f"| colour | {mean('bpp_colour'):.4f} | {mean('psnr_colour'):.2f} |",
        f"| grayscale, three equal channels (PSNR of the decoded luma) | {mean('bpp_gray'):.4f} | "
        f"{mean('psnr_gray_luma'):.2f} |", "",
        f"A grayscale picture costs {100 * mean('bpp_gray') / mean('bpp_colour'):.0f}% of its colour "
        f"original's rate (per image {min(r['bpp_gray'] / r['bpp_colour'] for r in rows):.2f} to "
        f"{max(r['bpp_gray'] / r['bpp_colour'] for r in rows):.2f}); the decoded RGB's channels differ by "
        f"{mean('mean_channel_spread'):.2f} levels on average (at most "
        f"{max(r['max_channel_spread'] for r in rows)}): the chroma the model reconstructs, and pays "
        "for, where there is none.", "", END])


def write_page(path: Path, results: dict) -> None:
    from sgacodec.evaluation.records import write_section

    write_section(path, page(results), BEGIN, END)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--out", type=Path, required=True, help="the results file (JSON)")
    ap.add_argument("--page", type=Path, default=None, help="rewrite this page's section from --out; measure nothing")
    args = ap.parse_args(argv)
    if args.page:
        write_page(args.page, json.loads(args.out.read_text()))
        return 0
    results = {"provenance": provenance(argv)}
    results["rows"] = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(page(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
