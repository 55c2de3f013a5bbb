"""Does a change to the coding network's arithmetic keep existing files decoding exactly?

    python benchmarks/decoder_change.py --baseline /path/to/checkout/before/the/change \\
        [--images ../shared/datasets/kodak] [--out report.txt]

Every image is encoded (``--method none``, default settings) by the baseline tree and by this
tree; then each tree decodes the other's files. Printed: how many encodings are byte-identical,
and for each direction how many files decode to exactly the encoder's pixels (the file's hash
checks) and to the same pixels as the encoding tree's own decode. Each tree runs in one child
process with ``PYTHONPATH`` set to it (the same interpreter and packages), through the library API.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"


def child(job: dict) -> None:
    """In a tree's own process: encode the images, or decode files; print one JSON line each."""
    import hashlib

    import sgacodec

    if job["do"] == "encode":
        model = sgacodec.load_model()
        for image in job["images"]:
            [report] = sgacodec.encode(model, [sgacodec.read_image(image)], sgacodec.RefineConfig(method="none"))
            out = Path(job["folder"]) / (Path(image).stem + ".bin")
            out.write_bytes(report.data)
            print(json.dumps({"file": out.name}), flush=True)
    else:
        for path in job["files"]:
            decoded = sgacodec.decode(Path(path).read_bytes())
            print(json.dumps({"file": Path(path).name, "exact": decoded.exact,
                              "pixels": hashlib.sha256(decoded.rgb.tobytes()).hexdigest()}), flush=True)


def run(tree: Path, job: dict) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)],
                          env=env, cwd=tree, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{tree}: {done.stderr[-800:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--images", type=Path, default=KODAK)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    if args.baseline is None:
        ap.error("--baseline is required")
    images = sorted(str(p) for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    trees = {"this tree": ROOT, "baseline": args.baseline.resolve()}
    the = {"this tree": "this tree", "baseline": "the baseline"}
    commits = {n: subprocess.run(["git", "-C", str(t), "describe", "--always", "--dirty", "--abbrev=12"],
                                 capture_output=True, text=True).stdout.strip() for n, t in trees.items()}
    lines = [f"# python benchmarks/decoder_change.py {' '.join(sys.argv[1:] if argv is None else argv)}",
             f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.platform()}; "
             + "; ".join(f"{n}: {trees[n]} ({commits[n]})" for n in trees),
             f"# {len(images)} images from {args.images}, --method none, default settings"]
    with tempfile.TemporaryDirectory() as tmp:
        folders = {n: Path(tmp) / n.replace(" ", "-") for n in trees}
        for name, tree in trees.items():
            folders[name].mkdir()
            run(tree, {"do": "encode", "images": images, "folder": str(folders[name])})
        files = {n: sorted(folders[n].glob("*.bin")) for n in trees}
        same = sum(a.read_bytes() == b.read_bytes() for a, b in zip(files["this tree"], files["baseline"]))
        lines.append(f"encodings byte-identical: {same}/{len(images)}")
        own = {n: {r["file"]: r for r in run(trees[n], {"do": "decode", "files": [str(f) for f in files[n]]})}
               for n in trees}
        for writer, reader in (("baseline", "this tree"), ("this tree", "baseline")):
            got = run(trees[reader], {"do": "decode", "files": [str(f) for f in files[writer]]})
            exact = sum(r["exact"] is True for r in got)
            same_px = sum(r["pixels"] == own[writer][r["file"]]["pixels"] for r in got)
            lines.append(f"files of {the[writer]} decoded by {the[reader]}: exact (hash) {exact}/{len(got)}, "
                         f"pixels as {the[writer]}'s own decode {same_px}/{len(got)}")
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
