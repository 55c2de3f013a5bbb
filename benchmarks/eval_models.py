"""Kodak evaluation of the embedded models (or any checkpoints), no refinement, real bitstream bytes.

Every image is encoded with ``sgacodec.encode`` and ``RefineConfig(method="none")``: bpp is
8 * len(file) / pixels of the complete sgacodec file (header included) and PSNR is that of the
pixels the stock CompressAI decoder returns (the first ``--verify-decode`` images are decoded and
compared). The table is set beside CompressAI's published mbt2018-mean (MSE) Kodak curve: each
model's rate at equal PSNR against it (``sgacodec.evaluation.published``) and, for several models,
the BD-rate (``bjontegaard`` package, ``sgacodec.evaluation.bd``; ``pip install .[eval]``).
``--workers N`` spreads the images over N processes (one torch thread each).

    python benchmarks/eval_models.py                       # the embedded models (manifest)
    python benchmarks/eval_models.py a.safetensors b.pt    # any checkpoints
    python benchmarks/eval_models.py --update-manifest     # write the Kodak figures into it
    python benchmarks/eval_models.py --compare-fp32 run.pt # fp16 vs fp32 export, same images
    python benchmarks/eval_models.py w.safetensors --workers 16 --verify-decode 24 --json eval.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from sgacodec.evaluation.published import inside_published_range, published_curve, rate_vs_published
from sgacodec.models.zoo_table import LAMBDAS, ZOO

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"


def kodak_files(folder: Path, limit: int | None = None) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise SystemExit(f"no PNG images in {folder}")
    return files[:limit] if limit else files


# --- one process's share: the model is loaded once per process ---------------------------------
_MODEL = None


def _load(spec):
    """A model from its spec: ("embedded", quality) or ("checkpoint", path)."""
    from sgacodec.models.checkpoints import load_checkpoint
    from sgacodec.models.embedded import load_embedded

    kind, ref = spec
    return load_embedded(ref) if kind == "embedded" else load_checkpoint(ref)


def _start(spec, threads: int) -> None:
    global _MODEL
    import torch

    torch.set_num_threads(threads)
    _MODEL = _load(spec)


def _code(task) -> dict:
    """Encode one image (and decode it when asked): its bytes, bpp and PSNR."""
    from sgacodec import RefineConfig, decode, encode
    from sgacodec.files.images import read_image

    path, verify = task
    img = read_image(path)
    report = encode(_MODEL, [img], RefineConfig(method="none"))[0]
    if verify:  # the stock decoder really returns the pixels measured
        decoded = decode(report.data, _MODEL)
        assert decoded.exact and np.array_equal(decoded.rgb, report.recon), f"{path}: decoded pixels differ"
    return {"image": Path(path).name, "bytes": len(report.data), "bpp": report.bpp, "psnr": report.psnr,
            "decoded": bool(verify)}


def evaluate(spec, files, verify_decode: int = 1, workers: int = 1, threads: int = 1) -> dict:
    """Mean bpp / PSNR over the images (CompressAI convention: mean of per-image PSNR)."""
    start = time.monotonic()
    tasks = [(str(p), k < verify_decode) for k, p in enumerate(files)]
    if workers <= 1:
        _start(spec, threads)
        rows = [_code(t) for t in tasks]
    else:  # fresh processes (spawn): no OpenMP state inherited from this one
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start, initargs=(spec, threads)) as pool:
            rows = list(pool.map(_code, tasks))
    bpp, psnr = float(np.mean([r["bpp"] for r in rows])), float(np.mean([r["psnr"] for r in rows]))
    return {"bpp": bpp, "psnr": psnr, "images": len(rows), "decoded": sum(r["decoded"] for r in rows),
            "rate_vs_published_percent": rate_vs_published(bpp, psnr),
            "inside_published_range": inside_published_range(psnr),
            "seconds": time.monotonic() - start, "workers": max(workers, 1), "rows": rows}


def manifest_file(quality: int) -> str:
    from sgacodec.models.embedded import embedded_manifest

    return next(m["file"] for m in embedded_manifest()["models"] if m["quality"] == quality)


def bd_rate(points: list[tuple[float, float]], anchor=None, method: str = "akima") -> tuple[float, float]:
    """(BD-rate % of points against the published curve, PSNR overlap % of the points' range)."""
    from sgacodec.evaluation.bd import bd

    anchor = anchor or published_curve()
    da, dt = [p[1] for p in anchor], [p[1] for p in points]
    lo, hi = max(min(da), min(dt)), min(max(da), max(dt))
    overlap = 100.0 * max(0.0, hi - lo) / (max(dt) - min(dt)) if max(dt) > min(dt) else 0.0
    return bd(anchor, points, method)[0], overlap


def bd_psnr(points: list[tuple[float, float]], method: str = "akima") -> float:
    """BD-PSNR (dB at equal rate) of points against the published curve."""
    from sgacodec.evaluation.bd import bd

    return bd(published_curve(), points, method)[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="*", help="model files; default: the embedded models")
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--workers", type=int, default=1, help="processes sharing the images")
    ap.add_argument("--verify-decode", type=int, default=1, metavar="N",
                    help="decode the first N images of each model and compare the pixels")
    ap.add_argument("--json", type=Path, default=None,
                    help="write all figures here, with their provenance (device, versions, commit, date)")
    ap.add_argument("--meta", type=Path, default=None,
                    help="a JSON object merged into --json's (a training slice's description)")
    ap.add_argument("--update-manifest", action="store_true",
                    help="write the Kodak figures (and sha256) into sgacodec/models/weights/manifest.json")
    ap.add_argument("--quality", type=int, nargs="*", default=None,
                    help="embedded models: only these qualities are measured (others: manifest figures)")
    ap.add_argument("--compare-fp32", type=Path, default=None, metavar="CKPT",
                    help="export CKPT as fp16 and as fp32 and compare their Kodak figures")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from sgacodec.models.checkpoints import sha256_file
    from sgacodec.models.embedded import MANIFEST, embedded_manifest

    images = kodak_files(args.kodak, args.limit)
    run = dict(verify_decode=args.verify_decode, workers=args.workers, threads=args.threads)
    results = []
    if args.compare_fp32:
        from sgacodec.training.trainer import export_weights

        with tempfile.TemporaryDirectory() as tmp:
            for precision in ("fp32", "fp16"):
                path = Path(tmp) / f"model-{precision}.safetensors"
                export_weights(args.compare_fp32, path, fp16=precision == "fp16")
                res = evaluate(("checkpoint", path), images, **{**run, "verify_decode": len(images)})
                res.update(name=f"{args.compare_fp32.name} {precision}", size=path.stat().st_size)
                results.append(res)
                print(f"{precision}: {res['bpp']:.5f} bpp  {res['psnr']:.4f} dB  "
                      f"({path.stat().st_size / 2**20:.1f} MiB, {res['images']} images)", flush=True)
        a, b = results
        print(f"fp16 - fp32: {b['bpp'] - a['bpp']:+.5f} bpp, {b['psnr'] - a['psnr']:+.4f} dB; "
              f"identical files for {sum(x['bytes'] == y['bytes'] for x, y in zip(a['rows'], b['rows']))}"
              f" of {len(images)} images (by size)")
    else:
        if args.checkpoints:
            models = [(Path(c).name, None, ("checkpoint", Path(c))) for c in args.checkpoints]
        else:
            manifest = embedded_manifest()
            if not manifest["models"]:
                raise SystemExit("no embedded models; pass checkpoint files")
            models = [(m["name"], m["quality"], m) for m in manifest["models"]]
        for name, quality, model in models:
            if isinstance(model, dict):  # a manifest entry
                if args.quality is not None and quality not in args.quality:
                    if not model.get("kodak"):
                        raise SystemExit(f"{name} has no Kodak figures in the manifest yet")
                    res = {**model["kodak"], "name": name, "quality": quality, "lmbda": model["lmbda"],
                           "from_manifest": True}
                    results.append(res)
                    print(f"{name}: lambda {res['lmbda']} {res['bpp']:.4f} bpp {res['psnr']:.2f} dB "
                          "(from the manifest)", flush=True)
                    continue
                model = ("embedded", quality)
            res = evaluate(model, images, **run)
            path = model[1] if model[0] == "checkpoint" else MANIFEST.parent / manifest_file(quality)
            res.update(name=name, quality=quality, lmbda=_load(model).lmbda, file=str(path),
                       sha256=sha256_file(Path(path)).hex())
            results.append(res)
            print(f"{name}: lambda {res['lmbda']} {res['bpp']:.4f} bpp {res['psnr']:.2f} dB, "
                  f"{res['rate_vs_published_percent']:+.1f}% rate vs published mbt2018-mean at equal PSNR "
                  f"({res['images']} images, {res['decoded']} decoded, {res['seconds']:.0f} s)", flush=True)

        print()
        print("| model | lambda | Kodak bpp | Kodak PSNR dB | rate vs published at equal PSNR "
              "| published mbt2018-mean bpp / PSNR at this lambda |")
        print("|---|---|---|---|---|---|")
        published = {LAMBDAS["mse"][q - 1]: point for q, point in ZOO["mbt2018-mean"].published.items()}
        for r in results:
            pub = published.get(r["lmbda"])
            pub_txt = f"{pub[0]:.3f} / {pub[1]:.2f}" if pub else "-"
            rate = rate_vs_published(r["bpp"], r["psnr"])
            print(f"| {r['name']} | {r['lmbda']} | {r['bpp']:.4f} | {r['psnr']:.2f} | {rate:+.1f}% | {pub_txt} |")
        if len(results) >= 2:
            points = [(r["bpp"], r["psnr"]) for r in results]
            for method in ("akima", "pchip"):
                value, overlap = bd_rate(points, method=method)
                print(f"BD-rate vs published mbt2018-mean ({method}): {value:+.1f}% "
                      f"(PSNR overlap {overlap:.0f}% of our range)")
                print(f"BD-PSNR vs published mbt2018-mean ({method}): {bd_psnr(points, method):+.2f} dB")
        if args.update_manifest and not args.checkpoints:
            manifest = json.loads(MANIFEST.read_text())
            by_name = {r["name"]: r for r in results}
            for m in manifest["models"]:
                r = by_name[m["name"]]
                if r.get("from_manifest"):
                    continue
                m["sha256"] = sha256_file(MANIFEST.parent / m["file"]).hex()
                m["kodak"] = {"bpp": round(r["bpp"], 4), "psnr": round(r["psnr"], 2),
                              "images": r["images"], "refinement": "none",
                              "measured_on": "real bitstream bytes (sgacodec files, header included)"}
            if len(results) >= 2:
                value, overlap = bd_rate([(r["bpp"], r["psnr"]) for r in results])
                manifest["kodak_bd_rate_vs_published_mbt2018_mean"] = {
                    "percent": None if np.isnan(value) else round(value, 1),
                    "method": "akima (bjontegaard package)", "psnr_overlap_percent": round(overlap),
                    "bd_psnr_db": round(bd_psnr([(r["bpp"], r["psnr"]) for r in results]), 2)}
            MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
            print(f"updated {MANIFEST}")
    if args.json:
        from sgacodec.evaluation import Provenance

        out = {"provenance": {**vars(Provenance.current("cpu")), "workers": args.workers}, "models": results}
        if args.meta:
            out.update(json.loads(args.meta.read_text()))
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
