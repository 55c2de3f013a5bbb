"""Whole-process speed of ``sgacodec decode`` and ``sgacodec encode --method none`` on large
photos, this source tree against another checkout, interleaved run by run (before/after).

    python benchmarks/coding_speed.py --baseline /path/to/other/checkout --bin photo.bin \\
        --image photo.png [--runs 3] [--out results.txt]

Each round runs, for each tree in turn, the decode of --bin to a PNG and the encode of --image
with ``--method none``, as child processes with ``PYTHONPATH`` set to the tree (the same
interpreter and packages); printed per command and tree: the median wall time, CPU time (user +
sys, the forked coding child included) and peak RSS (the largest process), and this tree's
medians over the baseline's. The outputs of the two trees are compared: the decoded pixels, and
the encoded bytes.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def run(tree: Path, args: list[str]) -> dict:
    """One sgacodec process on ``tree``'s sources: wall s, CPU s and peak RSS MB of that process
    and its children (``wait4``: its own rusage, the forked coding child included)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "sgacodec", *args], env=env, cwd=tree,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode:
            err.seek(0)
            sys.exit(f"{tree}: sgacodec {' '.join(args)} failed: {err.read().decode()[-500:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def describe(tree: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(tree), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out = "?"
    return f"{tree} ({out})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="the other checkout (its source tree)")
    ap.add_argument("--bin", type=Path, required=True, help="a file to decode (written by either tree)")
    ap.add_argument("--image", type=Path, required=True, help="an image to encode with --method none")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    trees = {"this tree": ROOT, "baseline": args.baseline.resolve()}
    lines = [f"# python benchmarks/coding_speed.py {' '.join(sys.argv[1:] if argv is None else argv)}",
             f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.platform()}, "
             f"{os.cpu_count()} cores; python {platform.python_version()}",
             *(f"# {name}: {describe(tree)}" for name, tree in trees.items())]
    print("\n".join(lines), flush=True)
    results = {(name, cmd): [] for name in trees for cmd in ("decode", "encode")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in range(args.runs):
            for name, tree in trees.items():
                key = name.replace(" ", "-")
                results[name, "decode"].append(run(tree, ["decode", str(args.bin.resolve()), "-o",
                                                          str(tmp / f"{key}.png"), "--force"]))
                results[name, "encode"].append(run(tree, ["encode", str(args.image.resolve()), "-o",
                                                          str(tmp / f"{key}.bin"), "--method", "none", "--force"]))
                print(f"round {r + 1}, {name}: " + ", ".join(
                    f"{cmd} {results[name, cmd][-1]['wall']:.1f} s" for cmd in ("decode", "encode")), flush=True)
        same_pixels = np.array_equal(*(np.asarray(Image.open(tmp / f"{n}.png")) for n in ("this-tree", "baseline")))
        same_bytes = (tmp / "this-tree.bin").read_bytes() == (tmp / "baseline.bin").read_bytes()
    table = ["command  tree       wall s  CPU s  peak RSS MB", *(
        f"{cmd:7s}  {name:9s}  {statistics.median(r['wall'] for r in rs):6.1f}  "
        f"{statistics.median(r['cpu'] for r in rs):5.1f}  {statistics.median(r['rss'] for r in rs):11.0f}"
        for (name, cmd), rs in sorted(results.items(), key=lambda kv: kv[0][1]))]
    for cmd in ("decode", "encode"):
        ratio = {k: statistics.median(r[k] for r in results["this tree", cmd])
                 / statistics.median(r[k] for r in results["baseline", cmd]) for k in ("wall", "cpu", "rss")}
        table.append(f"{cmd}: this tree / baseline: wall {ratio['wall']:.3f}, CPU {ratio['cpu']:.3f}, "
                     f"peak RSS {ratio['rss']:.3f}")
    table.append(f"decoded pixels identical: {same_pixels}; encoded bytes identical: {same_bytes}")
    print("\n".join(table))
    if args.out:
        args.out.write_text("\n".join(lines + table) + "\n")


if __name__ == "__main__":
    main()
