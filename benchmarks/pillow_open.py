#!/usr/bin/env python3
"""What ``Image.open`` of an sgacodec file costs through the Pillow plugin, against ``load()``
(issue 31): opening reads the header only (size, mode, ICC/EXIF/XMP in ``info``), loading decodes.

    python benchmarks/pillow_open.py --out docs/results/pillow_open.json
    python benchmarks/pillow_open.py --page docs/performance.md --out docs/results/pillow_open.json

The first ``--images`` Kodak images are coded with method none and the embedded default model;
each file is then opened ``--opens`` times (a fresh ``Image.open`` and its size, mode and info
each time) and opened and loaded ``--loads`` times, in this one process after one untimed load
(the model's load is not the plugin's cost). Medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"
BEGIN, END = "<!-- pillow-open:begin -->", "<!-- pillow-open:end -->"


def timed(fn, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - begin)
    return statistics.median(seconds)


def measure(args) -> list[dict]:
    import torch
    from PIL import Image

    import sgacodec
    from sgacodec import RefineConfig, encode, load_model, read_image

    torch.set_num_threads(args.threads)
    sgacodec.register_pillow()
    model = load_model()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(args.kodak.glob("*.png"))[: args.images]:
            [report] = encode(model, [read_image(path)], RefineConfig(method="none"))
            coded = Path(tmp) / (path.stem + ".bin")
            coded.write_bytes(report.data)

            def open_only(coded=coded):
                with Image.open(coded) as im:
                    return im.size, im.mode, dict(im.info)

            def open_and_load(coded=coded):
                with Image.open(coded) as im:
                    im.load()

            open_and_load()  # untimed: the model's first load
            row = {"image": path.name, "bytes": len(report.data), "size": list(report.recon.shape[1::-1]),
                   "open_s": timed(open_only, args.opens), "load_s": timed(open_and_load, args.loads)}
            row["ratio"] = row["load_s"] / row["open_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def provenance(argv, threads: int) -> dict:
    import PIL
    import torch

    from sgacodec.evaluation.records import cpu_model, source_commit

    return {"command": "python benchmarks/pillow_open.py " + " ".join(argv),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": source_commit(),
            "machine": f"{platform.platform()}, CPU {cpu_model()} ({os.cpu_count()} cores), torch threads {threads}, "
            f"load average {os.getloadavg()[0]:.1f} at the start",
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "pillow": PIL.__version__}}


def page(results: dict) -> str:
    p, rows = results["provenance"], results["rows"]
    lines = [BEGIN, "", f"Measured by `{p['command']}` on {p['date']} at commit {str(p['commit'])[:12]}: "
             f"{p['machine']}; Pillow {p['versions']['pillow']}, torch {p['versions']['torch']}. Medians of "
             f"{results['opens']} opens and {results['loads']} loads per file, in one process.", "",
             "| file | bytes | size | `Image.open` ms | `Image.open` + `load()` s | load / open |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['bytes']} | {r['size'][0]}x{r['size'][1]} | {1000 * r['open_s']:.2f} | "
                     f"{r['load_s']:.2f} | {r['ratio']:.0f}x |")
    lines += ["", END]
    return "\n".join(lines)


def write_page(path: Path, results: dict) -> None:
    from sgacodec.evaluation.records import write_section

    write_section(path, page(results), BEGIN, END)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--opens", type=int, default=50)
    ap.add_argument("--loads", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="the results file (JSON)")
    ap.add_argument("--page", type=Path, default=None, help="rewrite this page's section from --out; measure nothing")
    args = ap.parse_args(argv)
    if args.page:
        write_page(args.page, json.loads(args.out.read_text()))
        return 0
    results = {"provenance": provenance(argv, args.threads), "opens": args.opens, "loads": args.loads}
    results["rows"] = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(page(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
