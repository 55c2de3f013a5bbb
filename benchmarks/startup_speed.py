"""Whole-process start-up and decode times of the sgacodec command, as shell pipelines see them.

Each figure is the median of --runs fresh processes: wall time, and the CPU time (user + sys) of
the process and its children, which a busy shared machine inflates far less than wall time.

    python benchmarks/startup_speed.py --bins DIR_WITH_24_KODAK_BINS [--checkpoint CKPT]

Measured: `sgacodec --help`; a usage error; `import sgacodec.cli`; `python -c "import torch"`;
`import compressai.models`; `sgacodec decode` of one file; `sgacodec decode` of all the files in
one call (per file as well). The .bin files come from `sgacodec encode kodak/*.png -o DIR --method
none` (any model: decode time does not depend on training, only on the architecture and image size).

`sgacodec` is the console script installed beside --python (``.venv/bin/sgacodec``), as a shell
runs it; where there is none, ``python -m sgacodec``. The package is the one that interpreter
imports (installed, e.g. editable by scripts/setup): nothing here edits sys.path.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sgacodec_command(python: str) -> list[str]:
    """The installed console script beside ``python``, else ``python -m sgacodec``."""
    script = Path(python).parent / "sgacodec"
    return [str(script)] if script.is_file() and os.access(script, os.X_OK) else [python, "-m", "sgacodec"]


def timed(cmd: list[str], env) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res.returncode


def median_of(cmd, env, runs, expect_rc=(0,)):
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu, rc = timed(cmd, env)
        if rc not in expect_rc:
            raise SystemExit(f"{' '.join(cmd)} exited {rc}")
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bins", required=True, help="Folder of .bin files (e.g. the 24 Kodak images).")
    ap.add_argument("--checkpoint", default=None, help="The checkpoint the files were encoded with.")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    py = [args.python, "-W", "ignore"]
    sga = sgacodec_command(args.python)
    bins = sorted(Path(args.bins).glob("*.bin"))
    if not bins:
        raise SystemExit(f"no .bin files in {args.bins}")
    print(f"sgacodec: {' '.join(sga)}", flush=True)
    ck = ["--checkpoint", args.checkpoint] if args.checkpoint else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("python -c pass (interpreter)", py + ["-c", "pass"], (0,)),
            ("sgacodec --help", sga + ["--help"], (0,)),
            ("sgacodec encode (usage error)", sga + ["encode"], (2,)),
            ("import sgacodec.cli", py + ["-c", "import sgacodec.cli"], (0,)),
            ("import torch", py + ["-c", "import torch"], (0,)),
            ("import torch, compressai.models", py + ["-c", "import torch, compressai.models"], (0,)),
            (f"sgacodec decode 1 file ({bins[0].name})",
             sga + ["decode", str(bins[0]), "-o", f"{tmp}/one.png", "--force", *ck], (0,)),
            (f"sgacodec decode {len(bins)} files in one call",
             sga + ["decode", *map(str, bins), "-o", f"{tmp}/all", "--force", *ck], (0,)),
        ]
        for name, cmd, rc in cases:
            wall, cpu = median_of(cmd, env, args.runs, rc)
            rows.append((name, wall, cpu))
            print(f"{name:<45} wall {wall:6.2f} s   cpu {cpu:6.2f} s", flush=True)
    n = len(bins)
    _, wall_all, cpu_all = rows[-1]
    _, wall_one, cpu_one = rows[-2]
    print(f"{'per file, all in one call':<45} wall {wall_all / n:6.2f} s   cpu {cpu_all / n:6.2f} s")
    print(f"{'marginal per extra file':<45} wall {(wall_all - wall_one) / max(n - 1, 1):6.2f} s   "
          f"cpu {(cpu_all - cpu_one) / max(n - 1, 1):6.2f} s")
    print(f"load average now: {os.getloadavg()}, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, "
          f"cores visible: {os.cpu_count()}")


if __name__ == "__main__":
    main()
