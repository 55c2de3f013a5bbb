#!/usr/bin/env python3
"""Large photos (issue 29): time and peak memory of whole ``sgacodec`` processes on a 12 MP and a
48 MP photo, a region decode, and the R-D cost of tiles against ``--tile-size 0``.

    python benchmarks/large_photos.py --out docs/results/large_photos.json
    python benchmarks/large_photos.py --page docs/performance.md --out docs/results/large_photos.json

The photos are made here from a CLIC 2025 validation image (``--source``): its 4:3 centre,
resized with Lanczos to 4000x3000 and 8000x6000, saved as PNG in a temporary folder. Each command
runs as its own process; its peak memory is measured two ways: ``ru_maxrss`` from wait4 (what
/usr/bin/time -v reports: the largest single process of the command, the forked coding child
included), and the peak of the summed proportional set size (PSS, shared pages split between
processes) of the whole process tree, sampled every 200 ms or more
(SAMPLE_INTERVAL_S). The memory each path estimates
(sgacodec.codec.memory) is recorded beside. ``--tile-size 0`` runs where its estimate fits. The
12 MP photo's tiled encode and decode, whose times have bounds, run TIMED_RUNS times, alternated.

The R-D part encodes every image of ``--clic`` and ``--kodak`` with method none, tiled (the
default) and with ``--tile-size 0``, in this process through the library (real bytes, PSNR of
the decoded 8-bit image), and reports the mean bpp difference and the worst image.

``--page FILE`` rewrites the section between the markers ``<!-- large-photos:begin -->`` and
``<!-- large-photos:end -->`` of FILE from the results file (nothing is measured then).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sgacodec.config import TILE_SIZE  # torch-free

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
SIZES = ((4000, 3000), (8000, 6000))
REGION = (3000, 2000, 512, 512)  # x, y, w, h in the 48 MP photo
REGION_RUNS = 3  # the region decode's time is the median of these runs
TIMED_RUNS = 3  # the 12 MP photo's tiled encode and decode (the timed bounds): the median of these runs
BEGIN, END = "<!-- large-photos:begin -->", "<!-- large-photos:end -->"


def make_photos(source: Path, folder: Path, sizes=SIZES) -> list[Path]:
    """``folder``/photo-WxH.png for each (W, H) of ``sizes``: the 4:3 centre of ``source``
    resized with Lanczos."""
    from PIL import Image

    with Image.open(source) as im:
        im = im.convert("RGB")
        w, h = im.size
        cw = min(w, h * 4 // 3)
        ch = cw * 3 // 4
        box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
        paths = []
        for width, height in sizes:
            path = folder / f"photo-{width}x{height}.png"
            im.resize((width, height), Image.LANCZOS, box=box).save(path, compress_level=1)
            paths.append(path)
    return paths


def _tree(pid: int) -> list[int]:
    """pid and its descendants (from /proc/PID/task/TID/children: cheap, no scan of /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return out


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) << 10
    except OSError:
        pass
    return 0


# The tree's PSS is sampled every SAMPLE_INTERVAL_S, or SAMPLE_COST_FACTOR times what the last
# sample took if longer (at most ~2% of a core). Sampled every 0.1 s, the benchmark's own process
# took 6 CPU minutes in a 19-minute run (19% of a core in top) from the 2-core runs it timed.
# ru_maxrss (the largest process's peak) is exact whatever the sampling.
SAMPLE_INTERVAL_S, SAMPLE_COST_FACTOR = 0.2, 50


def run(command: list[str]) -> dict:
    """Run a command; its wall and CPU seconds, ru_maxrss and sampled tree PSS peak, exit code."""
    env = dict(os.environ, SGACODEC_MEMORY_LIMIT="off")  # as a user runs it: torch's own thread count
    begin = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak, stop = [0], threading.Event()

    def sample():  # reading smaps_rollup walks the page tables: paced to cost at most ~2% of a core
        while not stop.is_set():
            began = time.perf_counter()
            peak[0] = max(peak[0], sum(_pss(p) for p in _tree(proc.pid)))
            stop.wait(max(SAMPLE_INTERVAL_S, SAMPLE_COST_FACTOR * (time.perf_counter() - began)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    sampler.join()
    return {"command": " ".join(Path(c).name if c.endswith(".png") or c.endswith(".bin") else c for c in command),
            "exit": proc.returncode, "wall_s": round(time.perf_counter() - begin, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "maxrss_mb": round(usage.ru_maxrss / 1024),
            "tree_pss_peak_mb": round(peak[0] / (1 << 20)), "stdout": out.decode()[-4000:],
            "stderr": err.decode()[-2000:]}


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time, with every run's wall time beside it and the largest peak
    memory of them all (so that repeating a command never hides a peak)."""
    middle = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    return {**middle, "runs_wall_s": [r["wall_s"] for r in runs],
            "exit": next((r["exit"] for r in runs if r["exit"]), 0),  # a failed run is never hidden
            "maxrss_mb": max(r["maxrss_mb"] for r in runs),
            "tree_pss_peak_mb": max(r["tree_pss_peak_mb"] for r in runs)}


def estimates(width: int, height: int, tile: int) -> dict:
    from sgacodec.codec import memory
    from sgacodec.network.grid import Grid

    grid = Grid(height, width, tile)
    return {path: round(memory.estimate(path, 128, grid) / (1 << 20)) for path in ("encode", "decode", "refine")}


def large(args, folder: Path) -> list[dict]:
    sgacodec = [sys.executable, "-m", "sgacodec"]
    results = []
    from sgacodec.codec import memory

    for path in make_photos(args.source, folder):
        width, height = (int(v) for v in path.stem.split("-")[1].split("x"))
        for tile in (None, 0):
            est = estimates(width, height, TILE_SIZE if tile is None else tile)
            if tile == 0 and max(est["encode"], est["decode"]) << 20 > (memory.available_bytes() or 0):
                results.append({"photo": f"{width}x{height}", "tile": 0,
                                "skipped": f"estimated {est['encode']} MB to encode, {est['decode']} MB to decode, "
                                f"more than this machine has ({(memory.available_bytes() or 0) >> 20} MB available)"})
                continue
            more = [] if tile is None else ["--tile-size", str(tile)]
            coded, decoded = folder / f"{path.stem}-{tile}.bin", folder / f"{path.stem}-{tile}.png"
            encodes, decodes = [], []  # alternated, so that a slow spell of this shared host falls on both
            for _ in range(TIMED_RUNS if tile is None and width == SIZES[0][0] else 1):
                encodes.append(run(sgacodec + ["encode", str(path), "-o", str(coded), "--method", "none",
                                               "--force", *more]))
                decodes.append(run(sgacodec + ["decode", str(coded), "-o", str(decoded), "--force"]))
            enc, dec = (median_run(r) if len(r) > 1 else r[0] for r in (encodes, decodes))
            entry = {"photo": f"{width}x{height}", "megapixels": round(width * height / 1e6, 1),
                     "tile": TILE_SIZE if tile is None else tile, "encode": enc, "decode": dec, "estimate_mb": est,
                     "bytes": coded.stat().st_size if coded.exists() else None}
            if tile is None and width == SIZES[-1][0]:
                region = median_run([run(sgacodec + ["decode", str(coded), "-o", str(folder / "region.png"),
                                                     "--force", "--region", ",".join(map(str, REGION))])
                                     for _ in range(REGION_RUNS)])
                entry["region"] = {**region, "region": REGION,  # a few seconds, of which start-up is most
                                   "share_of_full_decode": round(region["wall_s"] / dec["wall_s"], 4),
                                   "identical": same_region(decoded, folder / "region.png") and region["exit"] == 0}
            if tile is None and width == SIZES[0][0] and args.refine_iterations:
                entry.update(refinement(sgacodec, path, folder, args.refine_iterations))
            results.append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k not in ("encode", "decode", "region")}), entry
                  .get("encode", {}).get("wall_s"), entry.get("decode", {}).get("wall_s"), flush=True)
    return results


def refinement(sgacodec: list[str], path: Path, folder: Path, iterations: int) -> dict:
    """The 12 MP photo encoded with default settings (what a CPU does then), and refined for
    ``iterations`` steps: time, memory, and the gain against no refinement, from --json records."""
    out = {}
    for name, more in (("default", []), ("refine", ["--iterations", str(iterations)])):
        r = run(sgacodec + ["encode", str(path), "-o", str(folder / f"{name}.bin"), "--force", "--json", *more])
        try:
            record = json.loads(r["stdout"].strip().splitlines()[-1])
        except (ValueError, IndexError):
            record = {}
        keep = ("bpp", "psnr", "base_bpp", "base_psnr", "iterations", "seconds", "bytes")
        out[name] = {**r, "record": {k: record.get(k) for k in keep}}
    return out


def _refine_line(run_: dict) -> str:
    """The refine row's outcome: from its --json record, or (a record not kept, as in runs before
    the stdout tail grew) the summary line the CLI printed on stderr."""
    r, asked = run_["record"], run_["command"].split("--iterations")[-1].split()[0]
    if r.get("bpp") is not None:
        return (f"With `--iterations {asked}` (the `refine` row): {r.get('seconds') or 0:.0f} s refining, "
                f"{r['base_bpp']:.4f} -> {r['bpp']:.4f} bpp, {r['base_psnr']:.3f} -> {r['psnr']:.3f} dB.")
    said = [line.split(": ", 1)[-1] for line in run_["stderr"].splitlines() if " bpp, " in line]
    return f"With `--iterations {asked}` (the `refine` row), the CLI reported: {said[-1] if said else 'nothing'}."


def same_region(full: Path, region: Path) -> bool:
    import numpy as np
    from PIL import Image

    x, y, w, h = REGION
    with Image.open(full) as a, Image.open(region) as b:
        return bool(np.array_equal(np.asarray(a)[y : y + h, x : x + w], np.asarray(b)))


def rate_distortion(args) -> dict:
    """Method none, tiled against one tile, on every image of the two sets (library, real bytes)."""
    import torch

    from sgacodec import RefineConfig, encode, load_model, read_image

    torch.set_num_threads(1)
    model = load_model()
    rows = []
    for folder in (args.clic, args.kodak):
        for path in sorted(Path(folder).glob("*.png")):
            image = read_image(path)
            tiled, whole = (encode(model, [image], RefineConfig(method="none", tile_size=t))[0] for t in (TILE_SIZE, 0))
            rows.append({"set": Path(folder).name, "image": path.name, "width": image.shape[1],
                         "height": image.shape[0], "bpp_tiled": tiled.bpp, "bpp_whole": whole.bpp,
                         "psnr_tiled": tiled.psnr, "psnr_whole": whole.psnr,
                         "rate_increase_percent": 100 * (tiled.bpp / whole.bpp - 1),
                         "psnr_difference_db": tiled.psnr - whole.psnr})
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for name in sorted({r["set"] for r in rows}) + ["all"]:
        sel = [r for r in rows if name in ("all", r["set"])]
        worst = max(sel, key=lambda r: r["rate_increase_percent"])
        summary[name] = {"images": len(sel),
                         "mean_bpp_tiled": sum(r["bpp_tiled"] for r in sel) / len(sel),
                         "mean_bpp_whole": sum(r["bpp_whole"] for r in sel) / len(sel),
                         "mean_psnr_tiled": sum(r["psnr_tiled"] for r in sel) / len(sel),
                         "mean_psnr_whole": sum(r["psnr_whole"] for r in sel) / len(sel),
                         "worst_rate_increase": {"image": worst["image"],
                                                 "percent": worst["rate_increase_percent"]},
                         "max_abs_psnr_difference_db": max(abs(r["psnr_difference_db"]) for r in sel)}
        s = summary[name]
        s["mean_rate_increase_percent"] = 100 * (s["mean_bpp_tiled"] / s["mean_bpp_whole"] - 1)
        s["mean_psnr_difference_db"] = s["mean_psnr_tiled"] - s["mean_psnr_whole"]
    return {"rows": rows, "summary": summary}


def provenance(argv) -> dict:
    import torch

    import sgacodec
    from sgacodec.evaluation.records import cpu_model, source_commit
    from sgacodec.network.compressai_import import installed_version

    return {"command": "python benchmarks/large_photos.py " + " ".join(argv),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": source_commit(),
            "machine": f"{platform.platform()}, CPU {cpu_model()} ({os.cpu_count()} cores), "
                       f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GB",
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "compressai": installed_version("compressai"), "sgacodec": sgacodec.__version__},
            "threads": os.environ.get("OMP_NUM_THREADS", ""), "tile_size": TILE_SIZE}


def host_speed() -> float:
    """GFLOP/s of a fixed float64 workload on one thread (the median of 7 products of two
    768 x 768 matrices), timed at the start and the end of a run: this shared machine's speed
    varies by a quarter from hour to hour, and runs on different days compare through it."""
    import statistics

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.rand(768, 768, dtype=torch.float64), torch.rand(768, 768, dtype=torch.float64)
        times = []
        for _ in range(7):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        return round(2 * 768 ** 3 / statistics.median(times) / 1e9, 2)
    finally:
        torch.set_num_threads(threads)


def page(results: dict) -> str:
    """The docs section, from the results file."""
    p = results["provenance"]
    lines = [BEGIN, "", f"Measured by `{p['command']}` on {p['date']} at commit {str(p['commit'])[:12]}: "
             f"{p['machine']}; torch {p['versions']['torch']}, CompressAI {p['versions']['compressai']}. "
             "Whole processes; peak memory as /usr/bin/time reports it (the largest process: the coding "
             "child included) and as the sampled peak of the process tree's summed PSS. A command run "
             "several times shows its median run's wall and CPU time, every run's wall time, and the "
             "largest peak memory of its runs."
             + (f" The host's float64 speed (`host_speed`, one thread): {p['host_gflops']['start']} GFLOP/s at "
                f"the start, {p['host_gflops']['end']} at the end." if "host_gflops" in p else ""), "",
             "| photo | tile | command | wall s | CPU s | peak RSS MB | tree PSS peak MB | estimate MB |",
             "|---|---|---|---|---|---|---|---|"]
    for e in results.get("large", []):
        if "skipped" in e:
            lines.append(f"| {e['photo']} | {e['tile']} | encode, decode | - | - | - | - | not run: {e['skipped']} |")
            continue
        for what in ("encode", "decode", "region", "default", "refine"):
            if what in e:
                r = e[what]
                est = e["estimate_mb"].get({"region": "decode", "default": "refine"}.get(what, what), "")
                wall = (f"{r['wall_s']} (median of {', '.join(map(str, r['runs_wall_s']))})"
                        if what != "region" and len(r.get("runs_wall_s", [])) > 1 else r["wall_s"])
                lines.append(f"| {e['photo']} | {e['tile']} | {what} | {wall} | {r['cpu_s']} | "
                             f"{r['maxrss_mb']} | {r['tree_pss_peak_mb']} | {est if what != 'region' else '-'} |")
    for e in results.get("large", []):
        if "region" in e:
            r = e["region"]
            runs = (f" (the median of {len(r['runs_wall_s'])} runs: {', '.join(map(str, r['runs_wall_s']))} s)"
                    if "runs_wall_s" in r else "")
            lines += ["", f"Region {r['region']} of the {e['photo']} file: {r['wall_s']} s{runs}, "
                          f"{100 * r['share_of_full_decode']:.1f}% of its full decode, pixels identical to the "
                          f"full decode's: {r['identical']}."]
    for e in results.get("large", []):
        if "refine" in e:
            d, r = e["default"]["record"], e["refine"]["record"]
            notes = [line for line in e["default"]["stderr"].splitlines() if "refin" in line]
            lines += ["", f"`sgacodec encode` of the {e['photo']} photo with default settings on this CPU "
                          f"refined {d.get('iterations')} steps ({d.get('bpp') or 0:.4f} bpp, "
                          f"{d.get('psnr') or 0:.2f} dB); its note: \"{notes[0].strip() if notes else ''}\"",
                      "", _refine_line(e["refine"])]
    rd = results.get("rate_distortion")
    if rd:
        source = rd.get("provenance", p)
        lines += ["", f"Tiles ({source.get('tile_size', TILE_SIZE)} px) against one tile "
                      f"(`--tile-size 0`), method none, real bytes (measured by `{source['command']}` on "
                      f"{source['date']} at commit {str(source['commit'])[:12]}):", "",
                  "| set | images | mean bpp, tiled | mean bpp, one tile | mean rate | mean PSNR difference dB "
                  "| worst image (rate) | largest PSNR difference dB |", "|---|---|---|---|---|---|---|---|"]
        for name, s in rd["summary"].items():
            w = s["worst_rate_increase"]
            lines.append(f"| {name} | {s['images']} | {s['mean_bpp_tiled']:.4f} | {s['mean_bpp_whole']:.4f} | "
                         f"{s['mean_rate_increase_percent']:+.3f}% | {s['mean_psnr_difference_db']:+.5f} | "
                         f"{w['image']} ({w['percent']:+.2f}%) | {s['max_abs_psnr_difference_db']:.5f} |")
    lines += ["", END]
    return "\n".join(lines)


def write_page(path: Path, results: dict) -> None:
    from sgacodec.evaluation.records import write_section

    write_section(path, page(results), BEGIN, END)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=SHARED / "clic2025-val" / "100a02c269c5948392f283b2aa3bb4da.png")
    ap.add_argument("--clic", type=Path, default=SHARED / "clic2025-val")
    ap.add_argument("--kodak", type=Path, default=SHARED / "kodak")
    ap.add_argument("--out", type=Path, required=True, help="the results file (JSON)")
    ap.add_argument("--skip", choices=("large", "rd"), action="append", default=[])
    ap.add_argument("--rd-from", type=Path, default=None,
                    help="take the R-D part from an earlier results file (with its provenance) instead of measuring")
    ap.add_argument("--refine-iterations", type=int, default=4,
                    help="steps of the 12 MP refinement run (0: skip it)")
    ap.add_argument("--page", type=Path, default=None, help="rewrite this page's section from --out; measure nothing")
    args = ap.parse_args(argv)
    if args.page:
        write_page(args.page, json.loads(args.out.read_text()))
        return 0
    results = {"provenance": {**provenance(argv), "host_gflops": {"start": host_speed()}}}
    if "large" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            results["large"] = large(args, Path(tmp))
    if args.rd_from:  # the R-D part of an earlier run, with that run's provenance
        earlier = json.loads(args.rd_from.read_text())
        rd = earlier["rate_distortion"]  # the run that measured it: its own, when it was carried too
        results["rate_distortion"] = {**rd, "provenance": rd.get("provenance", earlier["provenance"])}
    elif "rd" not in args.skip:
        results["rate_distortion"] = rate_distortion(args)
    results["provenance"]["host_gflops"]["end"] = host_speed()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(page(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
