"""Encoding to a target, measured: accuracy, cost, and R-D against the shipped rate points.

For each image (a centre crop), this script

  1. encodes it with each shipped rate point (the embedded models q1..q3) at its training lambda,
     ``--iterations`` steps: the shipped R-D points, and the cost of a single encode;
  2. encodes it to each ``--bpp`` and ``--psnr`` target with ``targets.encode_to_target`` over the
     embedded family (the model chosen per image, lambda searched), ``--iterations`` steps.

Every measurement is one JSON line in ``--out``, whose first line holds the provenance (machine,
versions, commit, date); a stopped run continues where it was when run again (measurements already
in the file are skipped). ``--tables`` prints the tables from the file without computing anything
(scripts/make_results.py puts them on docs/results.md):

  - accuracy per target: files met and within tolerance, the miss, the search's refinements,
    iterations, and its cost as a multiple of a single encode of the same image with the chosen
    model (wall time and CPU time; the same iteration count);
  - R-D at equal rate: each target-bpp file against the shipped points' curve at the file's own
    real rate (PSNR interpolated linearly in log rate between the two neighbouring shipped points
    of that image; extrapolated from the nearest two outside them), and the nearest shipped point.

Example (the measurement cited in docs/method.md; about 2 CPU-hours on one core):

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/targets.py --images /work/shared/datasets/kodak \\
        --names kodim01 kodim02 kodim03 kodim04 kodim05 kodim06 --crop 256 --iterations 200 \\
        --bpp 0.15 0.3 0.5 0.8 --psnr 28 32 --out docs/results/targets.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch

from sgacodec.codec.batching import encode
from sgacodec.codec.targets import encode_to_target
from sgacodec.config import RefineConfig, Target
from sgacodec.evaluation.records import Provenance
from sgacodec.files.images import center_crop, read_image
from sgacodec.models.family import ModelFamily


def measure(args):
    out = Path(args.out)
    lines = [json.loads(ln) for ln in out.read_text().splitlines() if ln.strip()] if out.exists() else []
    done = {ln["key"] for ln in lines if "key" in ln}
    family = ModelFamily.embedded()
    config = RefineConfig(iterations=args.iterations)
    with open(out, "a") as f:
        if not lines:
            f.write(json.dumps({"provenance": asdict(Provenance.current("cpu")),
                                "command": "benchmarks/targets.py " + " ".join(args.argv)}) + "\n")

        def write(row):
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(json.dumps(row), flush=True)

        for name in args.names:
            image = center_crop(read_image(Path(args.images) / f"{name}.png"), args.crop)
            for i in range(len(family)):
                key = f"{name}/shipped/{i}"
                if key in done:
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                [report] = encode(family[i], [image], config)
                write({"key": key, "image": name, "kind": "shipped", "model": family[i].describe(),
                       "quality": family[i].identity.quality, "lmbda": report.lmbda, "bpp": report.bpp,
                       "bytes": len(report.data), "psnr": report.psnr, "iterations": report.iterations,
                       "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0})
            targets = [Target("bpp", v) for v in args.bpp] + [Target("psnr", v) for v in args.psnr]
            for target in targets:
                key = f"{name}/{target.kind}/{target.value:g}"
                if key in done:
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                result = encode_to_target(family, image, target, config)
                report = result.report
                write({"key": key, "image": name, "kind": "target", **result.record(), "bpp": report.bpp,
                       "bytes": len(report.data), "psnr": report.psnr, "wall": time.perf_counter() - t0,
                       "cpu": time.process_time() - c0})


def interpolate(points, rate):
    """PSNR at ``rate`` on the line (in log rate) through the two points nearest it in rate,
    ``points`` being [(bpp, psnr)] sorted by rate (between the neighbours, or extrapolated)."""
    if len(points) < 2:
        return math.nan
    i = max(1, min(len(points) - 1, sum(1 for r, _ in points if r < rate)))
    (r0, p0), (r1, p1) = points[i - 1], points[i]
    return p0 + (p1 - p0) * (math.log(rate) - math.log(r0)) / (math.log(r1) - math.log(r0))


def row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table_header(cells) -> str:
    return row(cells) + "\n|" + "---|" * len(cells)


def tables(path) -> list[str]:
    """The tables of a results file, as markdown lines."""
    out: list[str] = []
    say = out.append
    lines = [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]
    prov = next((ln for ln in lines if "provenance" in ln), None)
    if prov:
        p = prov["provenance"]
        say(f"Measured on {p['device']}, torch {p['torch']}, CompressAI {p['compressai']}, sgacodec "
            f"{p['sgacodec']} at commit {p['commit']}, {p['date']} ({p['threads']} thread(s)).")
        say("")
        say(f"Command: `{prov['command']}`")
        say("")
    shipped = {}
    for ln in lines:
        if ln.get("kind") == "shipped":
            shipped.setdefault(ln["image"], {})[ln["quality"]] = ln
    found = [ln for ln in lines if ln.get("kind") == "target"]
    say("Accuracy and cost per target (met: at or under a rate ceiling, at or over a PSNR floor; in range: "
        "the search did not report the target out of reach; miss: achieved against the target; cost: the "
        "search's time / a single encode of the image with the chosen model at the same iteration count):")
    say("")
    header = ("target", "files", "met", "in range", "within, of those in range", "miss % / dB (mean, worst)",
              "refinements", "iterations", "cost wall x", "cost cpu x", "models")
    say(table_header(header))
    for key in sorted({(ln["target"]["kind"], ln["target"]["value"]) for ln in found}):
        sel = [ln for ln in found if (ln["target"]["kind"], ln["target"]["value"]) == key]
        kind, value = key
        misses = [(ln["achieved"] / value - 1) * 100 if kind != "psnr" else ln["achieved"] - value for ln in sel]
        wall = [ln["wall"] / shipped[ln["image"]][ln["quality"]]["wall"] for ln in sel
                if ln["quality"] in shipped.get(ln["image"], {})]
        cpu = [ln["cpu"] / shipped[ln["image"]][ln["quality"]]["cpu"] for ln in sel
               if ln["quality"] in shipped.get(ln["image"], {})]
        worst = max(misses, key=abs)
        say(row([
            f"{value:g} {kind}", len(sel), sum(ln["met"] for ln in sel), sum(ln["reach"] == "in range" for ln in sel),
            sum(ln["within"] for ln in sel if ln["reach"] == "in range"),
            f"{statistics.mean(misses):+.2f}, {worst:+.2f}",
            f"{statistics.mean(ln['refinements'] for ln in sel):.1f}",
            f"{statistics.mean(ln['search_iterations'] for ln in sel):.0f}",
            f"{statistics.mean(wall):.2f} (max {max(wall):.2f})" if wall else "-",
            f"{statistics.mean(cpu):.2f} (max {max(cpu):.2f})" if cpu else "-",
            " ".join(f"q{q}:{sum(ln['quality'] == q for ln in sel)}" for q in sorted({ln['quality'] for ln in sel}))]))
    say("")
    say("Per file:")
    say("")
    say(table_header(("image", "target", "achieved", "PSNR dB", "status", "model", "lambda", "refinements",
                      "iterations", "cost cpu x")))
    for ln in found:
        t = ln["target"]
        ref = shipped.get(ln["image"], {}).get(ln["quality"])
        say(row([ln["image"], f"{t['value']:g} {t['kind']}", f"{ln['achieved']:.4f}", f"{ln['psnr']:.2f}",
                 ln["status"], ln["model"], f"{ln['lmbda']:.5f}", ln["refinements"], ln["search_iterations"],
                 f"{ln['cpu'] / ref['cpu']:.2f}" if ref else "-"]))
    say("")
    say("R-D at equal rate: target-bpp files (one model, lambda searched) against the shipped points "
        "(training lambda, same iterations) at the file's real rate; the shipped PSNR there is interpolated "
        "linearly in log rate between the image's two neighbouring shipped points (extrapolated outside "
        "them):")
    say("")
    say(table_header(("target", "files", "bpp", "PSNR dB", "shipped PSNR at that bpp", "dPSNR dB (mean, min, max)",
                      "nearest shipped point: bpp, PSNR")))
    for value in sorted({ln["target"]["value"] for ln in found if ln["target"]["kind"] == "bpp"}):
        sel = [ln for ln in found if ln["target"] == {"kind": "bpp", "value": value} and ln["image"] in shipped]
        if not sel:
            continue
        ref, near = [], []
        for ln in sel:
            pts = sorted((s["bpp"], s["psnr"]) for s in shipped[ln["image"]].values())
            ref.append(interpolate(pts, ln["bpp"]))
            near.append(min(pts, key=lambda p: abs(math.log(p[0] / ln["bpp"]))))
        deltas = [ln["psnr"] - r for ln, r in zip(sel, ref)]
        say(row([f"{value:g} bpp", len(sel), f"{statistics.mean(ln['bpp'] for ln in sel):.4f}",
                 f"{statistics.mean(ln['psnr'] for ln in sel):.2f}", f"{statistics.mean(ref):.2f}",
                 f"{statistics.mean(deltas):+.3f}, {min(deltas):+.3f}, {max(deltas):+.3f}",
                 f"{statistics.mean(p[0] for p in near):.4f}, {statistics.mean(p[1] for p in near):.2f}"]))
    return out


def main():
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="/work/shared/datasets/kodak")
    ap.add_argument("--names", nargs="+", default=[f"kodim{i:02d}" for i in range(1, 7)])
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--bpp", type=float, nargs="*", default=[0.15, 0.3, 0.5, 0.8])
    ap.add_argument("--psnr", type=float, nargs="*", default=[28.0, 32.0])
    ap.add_argument("--out", default="targets.jsonl")
    ap.add_argument("--tables", action="store_true", help="print the tables of --out only")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    torch.set_num_threads(1)
    if not args.tables:
        measure(args)
    print("\n".join(tables(args.out)))


if __name__ == "__main__":
    main()
