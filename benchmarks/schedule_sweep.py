"""Budget-aware schedule against the paper's: refinement gain per iteration budget.

For each method and iteration count T, refines the reduced profile (centre crops of Kodak images,
every model given) with ``RefineConfig(schedule=...)`` and prints the mean gain over the
(image, model) pairs, gain = (base - best) / base on the true (hard-rounded, estimated-bits) R-D
loss that ``refine`` returns, also as a share of the paper schedule's gain at --reference
iterations. The paper schedule does not depend on T, so one run of max(T) steps with its history
gives it at every T (the best of the first T steps); --paper-records reads those histories from an
evaluation records file (sgacodec evaluate's JSON lines) instead of refining again.

The same-size crops of one model are refined as one batch (each image keeps its own gradients and
Adam moments; the random draws differ from one-at-a-time runs, within the noise).

    OMP_NUM_THREADS=1 python benchmarks/schedule_sweep.py --iterations 25,50,100,200 \\
        --methods ssl,atanh --paper-records docs/results/reduced.jsonl --json sweep.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from sgacodec.codec.devices import device_model
from sgacodec.codec.pixels import pad, to_tensor
from sgacodec.config import RefineConfig
from sgacodec.evaluation.records import Provenance
from sgacodec.files.images import center_crop, read_image
from sgacodec.models.embedded import load_embedded
from sgacodec.refinement.loop import refine_latents as refine


def refine_pairs(models, crops, config, keep_history=False):
    """{(quality, image): (base, best, history losses)} for every model and crop."""
    out = {}
    for q, model in models.items():
        lm = device_model(model, torch.device("cpu"))
        x = pad(torch.cat([to_tensor(c) for c in crops.values()]))
        size = next(iter(crops.values())).shape[:2]
        res = refine(lm, x, size, model.lmbda, config, keep_history=keep_history)
        for j, name in enumerate(crops):
            hist = [h["loss"][j] for h in res.history]
            out[(q, name)] = (res.base.loss[j].item(), res.best.loss[j].item(), hist)
    return out


def paper_from_records(path, models, names, method, tau_max=1.0):
    """{(quality, image): history losses} of the longest paper-schedule run of each pair."""
    shas = {model.identity.weights_sha.hex()[:16]: q for q, model in models.items()}
    out: dict = {}
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        q = shas.get(r.get("model_sha", "")[:16])
        name = Path(r.get("image", "")).stem
        key = json.loads(r["key"])
        if (q is None or name not in names or r.get("label") != method or r.get("tau_max") != tau_max
                or not r.get("history") or r.get("lmbda_scale", 1.0) != 1.0 or key.get("seed", 0) != 0
                or key.get("lr", 0.005) != 0.005 or key.get("temp_rate", 1e-3) != 1e-3):
            continue
        if len(r["history"]["loss"]) > len(out.get((q, name), [])):
            out[(q, name)] = r["history"]["loss"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default="/work/shared/datasets/kodak")
    ap.add_argument("--names", default="kodim04,kodim15,kodim23",
                    help="Image files in --images, comma-separated (.png where no suffix is given).")
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--qualities", default="1,2,3", help="Embedded models to use.")
    ap.add_argument("--methods", default="ssl")
    ap.add_argument("--iterations", default="25,50,100,200,500")
    ap.add_argument("--reference", type=int, default=2000,
                    help="The paper schedule's run length the gains are compared with (0: none, "
                         "the mean gains alone; for comparing budget settings with one another).")
    ap.add_argument("--paper-records", default=None,
                    help="Take the paper schedule's histories from this records file.")
    ap.add_argument("--schedule", default="budget")
    ap.add_argument("--config", default="{}", help="More RefineConfig fields for --schedule, as JSON.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    names = args.names.split(",")
    crops = {Path(n).stem: center_crop(read_image(Path(args.images) / (n if Path(n).suffix else f"{n}.png")),
                                       args.crop) for n in names}
    names = list(crops)
    models = {int(q): load_embedded(int(q)) for q in args.qualities.split(",")}
    Ts = [int(t) for t in args.iterations.split(",")]
    extra = json.loads(args.config)
    results = {}
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        if not args.reference:
            paper, reference = {}, None
        else:
            if args.paper_records:
                paper = paper_from_records(args.paper_records, models, set(names), method)
            else:
                cfg = RefineConfig(method=method, iterations=max(Ts + [args.reference]), seed=args.seed)
                paper = {k: v[2] for k, v in refine_pairs(models, crops, cfg, keep_history=True).items()}
            missing = [k for k in ((q, n) for q in models for n in names)
                       if len(paper.get(k, [])) <= args.reference]
            if missing:
                raise SystemExit(f"no paper-schedule history of {args.reference} steps for {missing}")

        def paper_gain(T, paper=paper):
            return statistics.fmean((h[0] - min(h[: T + 1])) / h[0] for h in paper.values())

        if paper:
            reference = paper_gain(args.reference)
        rows = {"paper": {T: paper_gain(T) for T in Ts}} if paper else {}
        rows[args.schedule] = {}
        per_pair = {}
        for T in Ts:
            cfg = RefineConfig(method=method, iterations=T, seed=args.seed, schedule=args.schedule, **extra)
            pairs = refine_pairs(models, crops, cfg)
            per_pair[T] = {f"q{q}/{n}": (b - best) / b for (q, n), (b, best, _) in pairs.items()}
            rows[args.schedule][T] = statistics.fmean(per_pair[T].values())
            print(f"  {method} {args.schedule} T={T}: mean gain {rows[args.schedule][T]:.4f} "
                  f"({time.perf_counter() - t0:.0f} s so far)", flush=True)
        if reference is None:
            print(f"\n{method}: mean gain over {len(crops) * len(models)} (image, model) pairs")
            print("  schedule " + "".join(f"{'T=' + str(T):>9}" for T in Ts))
            print(f"  {args.schedule:>8} " + "".join(f"{100 * rows[args.schedule][T]:8.2f}%" for T in Ts))
        else:
            print(f"\n{method}: mean gain over {len(paper)} (image, model) pairs as a share of the paper "
                  f"schedule's at {args.reference} iterations ({reference:.4f})")
            print("  schedule " + "".join(f"{'T=' + str(T):>9}" for T in Ts))
            for name, row in rows.items():
                print(f"  {name:>8} " + "".join(f"{100 * row[T] / reference:8.1f}%" for T in Ts))
        results[method] = {"reference_gain": reference, "rows": rows, "config": extra, "per_pair": per_pair}
    if args.json:  # who measured it, and how
        results["provenance"] = asdict(Provenance.current("cpu"))
        results["command"] = "benchmarks/schedule_sweep.py " + " ".join(sys.argv[1:] if argv is None else argv)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
