"""Throughput of ``sgacodec encode --ray`` on this machine: images/s with 1 and 2 (``--workers``) CPU
workers side by side in one run, and the same images encoded in this process without Ray.

    OMP_NUM_THREADS=1 python benchmarks/ray_throughput.py --images /work/shared/datasets/kodak \\
        --n 8 --crop 256 --iterations 10 --workers 1 2

The inputs are centre crops of the first --n images, written as PNG files (workers read files).
Every worker is a CPU worker with one torch thread (as the local run); a local Ray with as many CPUs
as the most workers asked is started for the run. Per run: the wall time including the workers'
start (each is a fresh process that imports torch and CompressAI and fetches the model), the time
from workers ready to the last output (``encode``), and images/s over that time; whether the files
equal the local run's; the load average around the run (``os.getloadavg``, as ``uptime`` prints).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="folder of images (e.g. Kodak)")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--method", default="ssl")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1, help="rounds of (local, each worker count)")
    parser.add_argument("--checkpoint", default=None, help="default: the embedded default model")
    args = parser.parse_args()

    import ray
    import torch

    from sgacodec.cluster.encoding import RayEncoder
    from sgacodec.codec.batching import BatchEncoder
    from sgacodec.config import RefineConfig
    from sgacodec.files.images import center_crop, encode_png, expand_inputs, read_image
    from sgacodec.files.outputs import atomic_write, plan_outputs
    from sgacodec.models.loading import load_model

    torch.set_num_threads(1)
    model = load_model(checkpoint=args.checkpoint)
    config = RefineConfig(method=args.method, iterations=args.iterations, seed=0)
    tmp = Path(tempfile.mkdtemp(prefix="ray_throughput."))
    (tmp / "in").mkdir()
    for src in expand_inputs([args.images])[: args.n]:
        (tmp / "in" / f"{Path(src).stem}.png").write_bytes(encode_png(center_crop(read_image(src), args.crop)))
    paths = expand_inputs([str(tmp / "in")])
    print(f"model {model.describe()}, {len(paths)} images {args.crop}x{args.crop} (centre crops), "
          f"{args.method} {args.iterations} iterations, seed 0, one torch thread per worker; "
          f"{os.cpu_count()} CPUs; torch {torch.__version__}, ray {ray.__version__}")

    def local(out: Path) -> dict:
        outputs = plan_outputs(paths, str(out), ".bin")
        t0 = time.perf_counter()
        for outcome in BatchEncoder(model, config, "cpu", 1).encode_sources(paths, read_image):
            atomic_write(outputs[outcome.index], outcome.report.data)
        seconds = time.perf_counter() - t0
        return {"wall": seconds, "encode": seconds}

    def on_ray(out: Path, workers: int) -> dict:
        outputs = plan_outputs(paths, str(out), ".bin")
        ready = []

        @contextlib.contextmanager
        def progress(description, total):  # entered once the workers have started
            ready.append(time.perf_counter())
            yield None

        t0 = time.perf_counter()
        outcomes = list(RayEncoder(model, config, "cpu", workers=workers, worker_cpus=1)
                        .encode_files(paths, outputs, force=True, progress=progress))
        end = time.perf_counter()
        failed = [o.error for o in outcomes if o.error]
        assert not failed, failed
        return {"wall": end - t0, "encode": end - ready[0]}

    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        for r in range(args.repeats):
            for workers in [0] + args.workers:
                out = tmp / f"out-{r}-{workers}"
                load_before = os.getloadavg()[0]
                got = local(out) if workers == 0 else on_ray(out, workers)
                same = all((out / p.name).read_bytes() == p.read_bytes() for p in (tmp / f"out-{r}-0").iterdir())
                rows.append((r, workers, got, same, load_before, os.getloadavg()[0]))
    finally:
        ray.shutdown()

    print("\n| round | run | wall s (incl. worker start) | encode s | images/s | same bytes as local | load avg "
          "(1 min) before / after |")
    print("|---|---|---|---|---|---|---|")
    for r, workers, got, same, before, after in rows:
        name = "local, no Ray" if workers == 0 else f"Ray, {workers} CPU worker(s)"
        print(f"| {r + 1} | {name} | {got['wall']:.1f} | {got['encode']:.1f} | {len(paths) / got['encode']:.3f} | "
              f"{'yes' if same else 'NO'} | {before:.2f} / {after:.2f} |")


if __name__ == "__main__":
    main()
