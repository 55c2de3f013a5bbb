"""Whole-process start-up, decode and encode costs of the sgacodec command, as shell pipelines see
them, against ``python -c "import torch"`` measured in the same run, and where each goes.

    python benchmarks/startup_speed.py --bin kodim01.bin --image kodim01.png [--bins DIR] [--runs 5]
        [--checkpoint CKPT] [--baseline OTHER_CHECKOUT]

Whole processes: every command runs --runs times, the commands interleaved round by round (a
shared machine's load then weighs on all of them alike); each row is the median CPU time (user +
sys, of the process and its children: the forked decoder included) and wall time, and the CPU
time as a multiple of ``python -c "import torch"``'s. The CPU time is the figure to read on a busy
machine, which inflates wall times far more.

Stages: a probe process (this script, ``--probe decode|encode``) does what ``sgacodec decode
FILE -o OUT.png`` and ``sgacodec encode IMAGE -o OUT.bin --method none`` do, step by step with the
library calls the commands make (the encode's, below BatchEncoder: ``codec.encode_batch`` with
nothing to refine), and reports each step's CPU time (median over --runs probes);
the interpreter's own start (``python -c pass``) comes before it. ``--baseline CHECKOUT`` also
runs the decode and encode commands on another source tree in the same rounds (before/after). For a decode, the forked
child's work is then repeated in the probe process, step by step, for its breakdown. For an
encode, the fixed cost is the whole process less the analysis transform and the coding work
(entropy coding and the reference decode: h_s and g_s).

``sgacodec`` is the console script installed beside --python (``.venv/bin/sgacodec``), as a shell
runs it; where there is none, ``python -m sgacodec``. The package is the one that interpreter
imports (installed, e.g. editable by scripts/setup, or PYTHONPATH): nothing here edits sys.path.
The coder-table cache (cache.py) is whatever the environment says (XDG_CACHE_HOME): warm after the
first run, which is what a pipeline decoding thousands of files sees; one row decodes with the
cache off (``SGACODEC_CACHE=0``: the tables computed in every process).
"""

from __future__ import annotations

import argparse
import json
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


def cpu_now() -> float:
    """CPU seconds (user + sys) of this process and its waited-for children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(cmd: list[str], env) -> tuple[float, float, int, bytes]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res.returncode, res.stdout


# --- the probe: one command's steps in this process -------------------------------------------

class Stages:
    def __init__(self):
        self.rows, self.last = [], cpu_now()

    def __call__(self, name: str) -> None:
        now = cpu_now()
        self.rows.append((name, now - self.last))
        self.last = now


def import_torch_and_compressai(stage: Stages):
    """The first two stages of every probe: torch, then CompressAI as sgacodec imports it."""
    import torch

    stage("import torch")
    from sgacodec.network.compressai_import import import_compressai

    import_compressai()
    stage("import CompressAI (models, entropy models)")
    return torch


def probe_decode(path: str, out: str, checkpoint=None) -> list:
    stage = Stages()
    torch = import_torch_and_compressai(stage)
    import sgacodec.cli  # noqa: F401
    from sgacodec.codec import container as bitstream
    from sgacodec.codec import encoder as codec
    from sgacodec.codec import isolate
    from sgacodec.files.images import encode_png, read_limited
    from sgacodec.models.loading import load_for_bitstream

    stage("import sgacodec (cli, codec, imageio, models)")
    data = read_limited(path, path, 1 << 30)
    bs = bitstream.unpack(data)
    model = load_for_bitstream(bs.model, checkpoint)
    stage("read the file, load the model")
    net = codec.coding_net(model, bs.version)
    stage("coding network (float64 copy, coder tables)")
    decoded = codec.decode(data, model)
    stage("decode: forked child (entropy decoding, h_s, g_s)")
    Path(out).write_bytes(encode_png(decoded.rgb))
    stage("PNG encoding and writing")
    torch.set_num_threads(1)
    with torch.no_grad():  # the child's work again, step by step (isolate.decompress_untrusted)
        eb, gc = net.entropy_bottleneck, net.gaussian_conditional
        n_z = eb.channels * bs.z_shape[0] * bs.z_shape[1]
        n_y = net.M * 16 * bs.z_shape[0] * bs.z_shape[1]
        z_hat = [eb.decompress([isolate.pad_string(bs.z_string, n_z, f)], bs.z_shape) for f in (0, 0x55)][0]
        params = net.h_s(z_hat)
        stage("  of the child: z decoding (twice), h_s")
        scales, means = params.chunk(2, 1) if params.size(1) == 2 * net.M else (params, None)
        indexes = gc.build_indexes(scales)
        y_hat = [gc.decompress([isolate.pad_string(bs.y_string, n_y, f)], indexes, means=means)
                 for f in (0, 0x55)][0]
        stage("  of the child: y decoding (twice)")
        net.g_s(y_hat).clamp_(0, 1)
        stage("  of the child: g_s")
    return stage.rows


def probe_encode(image: str, out: str, checkpoint=None) -> list:
    stage = Stages()
    torch = import_torch_and_compressai(stage)
    import sgacodec.cli  # noqa: F401
    import sgacodec.codec.batching  # noqa: F401
    from sgacodec.codec import encoder as codec
    from sgacodec.files.images import read_image
    from sgacodec.models.loading import load_model

    stage("import sgacodec (cli, codec, imageio, models, pipeline)")
    model = load_model(checkpoint=checkpoint)
    rgb = read_image(image)
    stage("read the image, load the model")
    codec.coding_net(model)
    stage("coding network (float64 copy, coder tables)")
    torch.set_num_threads(1)
    with torch.no_grad():
        y, z = codec.LatentModel(model.net).analysis(codec.pad(codec.to_tensor(rgb)))
    stage("analysis g_a, h_a (work)")
    [(data, _)] = codec.code_latents(model, y, z, rgb.shape[:2])
    stage("coding: entropy coding, h_s, g_s (work)")
    Path(out).write_bytes(data)
    stage("writing")
    return stage.rows


# --- the benchmark ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", help="One .bin file (e.g. kodim01 encoded with --method none); default: "
                                   "the first of --bins.")
    ap.add_argument("--image", help="One image to encode (e.g. kodim01.png); without it, no encode rows.")
    ap.add_argument("--bins", default=None, help="Also decode every .bin file of this folder in one call.")
    ap.add_argument("--checkpoint", default=None, help="The checkpoint the files were encoded with, "
                                                       "and to encode with (default: the embedded model).")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--baseline", metavar="CHECKOUT",
                    help="Also run the decode and encode commands with PYTHONPATH=CHECKOUT (another "
                         "sgacodec source tree, e.g. the previous commit's), in the same rounds.")
    ap.add_argument("--probe", choices=("decode", "encode"), help=argparse.SUPPRESS)  # the probe's job
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        rows = (probe_decode(args.bin, args.out, args.checkpoint) if args.probe == "decode"
                else probe_encode(args.image, args.out, args.checkpoint))
        print(json.dumps(rows))
        return

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    py = [args.python, "-W", "ignore"]
    sga = sgacodec_command(args.python)
    bins = sorted(Path(args.bins).glob("*.bin")) if args.bins else []
    args.bin = args.bin or (str(bins[0]) if bins else ap.error("give --bin or --bins"))
    ck = ["--checkpoint", args.checkpoint] if args.checkpoint else []
    print(f"sgacodec: {' '.join(sga)}; {args.runs} runs per row, interleaved; CPU = user + sys, median",
          flush=True)
    commands = {"decode": f"sgacodec decode {Path(args.bin).name}",
                "encode": f"sgacodec encode {Path(args.image or '-').name} --method none"}
    with tempfile.TemporaryDirectory() as tmp:
        here = str(Path(__file__).resolve())
        cases = {
            "python -c pass": (py + ["-c", "pass"], 0),
            'python -c "import torch"': (py + ["-c", "import torch"], 0),
            "sgacodec --help": (sga + ["--help"], 0),
            "sgacodec --version": (sga + ["--version"], 0),
            "sgacodec encode (usage error)": (sga + ["encode"], 2),
            commands["decode"]: (sga + ["decode", args.bin, "-o", f"{tmp}/d.png", "--force", *ck], 0),
            f"sgacodec decode {Path(args.bin).name}, SGACODEC_CACHE=0":
                (sga + ["decode", args.bin, "-o", f"{tmp}/d.png", "--force", *ck], 0, {"SGACODEC_CACHE": "0"}),
            "probe decode": (py + [here, "--probe", "decode", "--bin", args.bin, "--out", f"{tmp}/p.png", *ck], 0),
        }
        if args.image:
            cases[commands["encode"]] = (sga + ["encode", args.image, "-o", f"{tmp}/e.bin", "--force",
                                                "--method", "none", *ck], 0)
            cases["probe encode"] = (py + [here, "--probe", "encode", "--image", args.image,
                                           "--out", f"{tmp}/p.bin", *ck], 0)
        if bins:
            cases[f"sgacodec decode {len(bins)} files in one call"] = (
                sga + ["decode", *map(str, bins), "-o", f"{tmp}/all", "--force", *ck], 0)
        if args.baseline:
            compared = ("sgacodec decode", commands["encode"], "probe")
            for name in [n for n in cases if n.startswith(compared) and "SGACODEC_CACHE" not in n]:
                cmd, rc, *extra = cases[name]
                cases[f"{name} [baseline]"] = (cmd, rc, {**(extra[0] if extra else {}), "PYTHONPATH": args.baseline})
        runs = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, (cmd, rc, *extra) in cases.items():
                wall, cpu, code, out = timed(cmd, {**env, **(extra[0] if extra else {})})
                if code != rc:
                    raise SystemExit(f"{' '.join(cmd)} exited {code}")
                runs[name].append((wall, cpu, json.loads(out) if name.startswith("probe") else None))
    med = {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
           for name, rs in runs.items()}
    torch_cpu = med['python -c "import torch"'][1]
    print(f"\n{'whole process':<58} {'wall':>7} {'CPU':>7} {'x torch':>8}")
    for name in cases:
        if not name.startswith("probe"):
            wall, cpu = med[name]
            print(f"{name:<58} {wall:6.2f}s {cpu:6.2f}s {cpu / torch_cpu:7.2f}x")
    if bins:
        n, one = len(bins), med[commands["decode"]][1]
        every = med[f"sgacodec decode {len(bins)} files in one call"][1]
        print(f"{'  per file, all in one call':<58} {'':7} {every / n:6.2f}s {every / n / torch_cpu:7.2f}x")
        print(f"{'  marginal cost of each further file':<58} {'':7} {(every - one) / max(n - 1, 1):6.2f}s")
    start = med["python -c pass"][1]
    kinds = ("decode", "encode") if args.image else ("decode",)
    for kind, tree in [(k, t) for t in ("", " [baseline]")[: 1 + bool(args.baseline)] for k in kinds]:
        probes = [r[2] for r in runs[f"probe {kind}{tree}"]]
        whole = med[commands[kind] + tree][1]
        print(f"\nstages of `sgacodec {kind}`{tree}, CPU (median of {len(probes)} probes)")
        print(f"{'  interpreter start (python -c pass)':<58} {'':7} {start:6.2f}s {start / torch_cpu:7.2f}x")
        stages = {name: statistics.median(p[i][1] for p in probes) for i, (name, _) in enumerate(probes[0])}
        for name, cpu in stages.items():
            print(f"{'  ' + name:<58} {'':7} {cpu:6.2f}s {cpu / torch_cpu:7.2f}x")
        rest = whole - start - sum(cpu for name, cpu in stages.items() if not name.startswith("  "))
        print(f"{'  the rest (exit, CLI): whole process less the stages':<58} {'':7} {rest:6.2f}s "
              f"{rest / torch_cpu:7.2f}x")
        if kind == "encode":
            work = sum(cpu for name, cpu in stages.items() if name.endswith("(work)"))
            print(f"{'  fixed cost: whole process less the (work) rows':<58} {'':7} {whole - work:6.2f}s "
                  f"{(whole - work) / torch_cpu:7.2f}x")
    print(f"\nload average now: {os.getloadavg()}, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, "
          f"cores visible: {os.cpu_count()}")


if __name__ == "__main__":
    main()
