"""Kodak evaluation of the embedded models (or any checkpoints), no refinement, real bitstream bytes.

Every image is encoded with ``sgacodec.encode`` and ``RefineConfig(method="none")``: bpp is
8 * len(file) / pixels of the complete sgacodec file (header included) and PSNR is that of the
pixels the stock CompressAI decoder returns. The table is set beside CompressAI's published
mbt2018-mean (MSE) Kodak curve and the BD-rate against it is computed with the ``bjontegaard``
package (``sgacodec.evaluation.bd``; ``pip install .[eval]``).

    python benchmarks/eval_models.py                       # the embedded models (manifest)
    python benchmarks/eval_models.py a.safetensors b.pt    # any checkpoints
    python benchmarks/eval_models.py --update-manifest     # write the Kodak figures into it
    python benchmarks/eval_models.py --compare-fp32 run.pt # fp16 vs fp32 export, same images
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"
# CompressAI's published Kodak results for its zoo mbt2018-mean (MSE), no refinement (listed in
# docs/models.md too): quality -> (lambda, bpp, PSNR dB).
PUBLISHED = {
    1: (0.0018, 0.124, 27.70),
    2: (0.0035, 0.198, 29.36),
    3: (0.0067, 0.307, 31.13),
    4: (0.0130, 0.461, 32.95),
    5: (0.0250, 0.662, 34.97),
    6: (0.0483, 0.914, 36.91),
}


def kodak_images(folder: Path, limit: int | None = None):
    from sgacodec.imageio import read_image

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise SystemExit(f"no PNG images in {folder}")
    files = files[:limit] if limit else files
    return [(p.name, read_image(p)) for p in files]


def evaluate(model, images, verify_decode: int = 1) -> dict:
    """Mean bpp / PSNR over the images (CompressAI convention: mean of per-image PSNR)."""
    from sgacodec import RefineConfig, decode, encode

    rows = []
    start = time.monotonic()
    for k, (name, img) in enumerate(images):
        report = encode(model, [img], RefineConfig(method="none"))[0]
        if k < verify_decode:  # the stock decoder really returns the pixels measured
            decoded = decode(report.data, model)
            assert decoded.exact and np.array_equal(decoded.rgb, report.recon), f"{name}: decoded pixels differ"
        rows.append({"image": name, "bytes": len(report.data), "bpp": report.bpp, "psnr": report.psnr})
    return {"bpp": float(np.mean([r["bpp"] for r in rows])),
            "psnr": float(np.mean([r["psnr"] for r in rows])),
            "images": len(rows), "seconds": time.monotonic() - start, "rows": rows}


def published_curve() -> list[tuple[float, float]]:
    return [PUBLISHED[q][1:] for q in sorted(PUBLISHED)]


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
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="write all figures here")
    ap.add_argument("--update-manifest", action="store_true",
                    help="write the Kodak figures (and sha256) into sgacodec/weights/manifest.json")
    ap.add_argument("--quality", type=int, nargs="*", default=None,
                    help="embedded models: only these qualities are measured (others: manifest figures)")
    ap.add_argument("--compare-fp32", type=Path, default=None, metavar="CKPT",
                    help="export CKPT as fp16 and as fp32 and compare their Kodak figures")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from sgacodec.models import MANIFEST, embedded_manifest, load_checkpoint, load_embedded, sha256_file

    images = kodak_images(args.kodak, args.limit)
    results = []
    if args.compare_fp32:
        from sgacodec.train import export

        with tempfile.TemporaryDirectory() as tmp:
            for precision in ("fp32", "fp16"):
                path = Path(tmp) / f"model-{precision}.safetensors"
                export(args.compare_fp32, path, fp16=precision == "fp16")
                res = evaluate(load_checkpoint(path), images, verify_decode=len(images))
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
            models = [(Path(c).name, None, load_checkpoint(c)) for c in args.checkpoints]
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
                model = load_embedded(quality)
            res = evaluate(model, images)
            res.update(name=name, quality=quality, lmbda=model.lmbda)
            results.append(res)
            print(f"{name}: lambda {model.lmbda} {res['bpp']:.4f} bpp {res['psnr']:.2f} dB "
                  f"({res['seconds']:.0f} s)", flush=True)

        print()
        print("| model | lambda | Kodak bpp | Kodak PSNR dB | published mbt2018-mean bpp / PSNR at this lambda |")
        print("|---|---|---|---|---|")
        published = {v[0]: v[1:] for v in PUBLISHED.values()}
        for r in results:
            pub = published.get(r["lmbda"])
            pub_txt = f"{pub[0]:.3f} / {pub[1]:.2f}" if pub else "-"
            print(f"| {r['name']} | {r['lmbda']} | {r['bpp']:.4f} | {r['psnr']:.2f} | {pub_txt} |")
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
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
