"""Training slices on a GPU machine (issue 13, docs/models.md "Training slices"): what travels to
the machine, and the description each slice leaves with its weights.

A device command receives at most 64 MiB of working tree: the repository, less the files the slice
does not need, plus the carried folder ``.slice/`` (git-ignored) that ``pack`` fills.

Here, before the device command (then the ``run`` call that ``pack`` prints):

    python scripts/slice.py pack --index K [--quality 2]
        fills .slice/ with the CompressAI and pytorch-msssim wheels, the 24 Kodak images, the
        validation images and the K-th training subset (a fixed shuffle of the pool, cut into
        windows that fill the room left: slice K+1 continues where slice K stopped), moves the
        tracked files the slice does not need (the other models' weights, the R-D records) to
        runs/slice-stash/, and prints the size of what travels.
    python scripts/slice.py restore
        puts the stashed files back (after the device command, whatever happened).

On the device, scripts/train_slice.sh calls:

    python scripts/slice.py describe ...    the slice's training.json (steps, data, command, machine)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (a worktree in a folder of worktrees: ../../shared)
SHARED = next((p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if p.is_dir()),
              ROOT.parent / "shared")
LIMIT = 64 * 2**20  # what one device command may carry (tracked + untracked-not-ignored + carried)
MARGIN = 2**20
SOURCES = ("bsds500", "urban100", "sun80", "cid22")  # the training pool; never kodak or clic
VALIDATION = ("beach_sun_bgtlposotyokcsdg.jpg", "desert_sand_sun_bgwdwaeuakbmuxeg.jpg",
              "monastery_outdoor_sun_bipqeqxnyqywgnqw.jpg", "valley_sun_biwcvdiwnfimbtls.jpg")  # sun80
STASH_ALWAYS = ("docs/results/full.jsonl", "docs/results/reduced.jsonl")  # R-D records, not needed there
IMAGE = re.compile(r"\.(png|jpe?g|webp|bmp|ppm|tiff?)$", re.IGNORECASE)


def git(root: Path, *args) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def travelling_files(root: Path) -> list[Path]:
    """The files a device command sends: tracked ones present in the tree, and untracked ones git
    does not ignore (carried folders are counted apart)."""
    names = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    return [root / n for n in dict.fromkeys(names) if n and (root / n).is_file()]


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def pool_images(pool: Path) -> tuple[list[Path], list[Path]]:
    """(training images, validation images) of the pool, in a stable order."""
    train, val = [], []
    for source in SOURCES:
        for path in sorted((pool / source).iterdir()):
            if IMAGE.search(path.name):
                (val if source == "sun80" and path.name in VALIDATION else train).append(path)
    return train, val


def subset(files: list[Path], index: int, room: int, seed: int = 0) -> list[Path]:
    """Slice ``index``'s training images: a window of a fixed shuffle of ``files`` that fills
    ``room`` bytes; consecutive indices take consecutive windows (cyclically)."""
    import random

    order = list(files)
    random.Random(seed).shuffle(order)
    mean = sum(p.stat().st_size for p in order) / len(order)
    per_slice = max(1, int(room // mean))
    start = (index * per_slice) % len(order)
    chosen, used = [], 0
    for k in range(len(order)):
        path = order[(start + k) % len(order)]
        if used + path.stat().st_size > room:
            if chosen:
                break
            continue
        chosen.append(path)
        used += path.stat().st_size
    return chosen


def stash_paths(root: Path, quality: int) -> list[str]:
    """The tracked files the slice of ``quality`` does not need on the device."""
    manifest = json.loads((root / "sgacodec" / "models" / "weights" / "manifest.json").read_text())
    others = [f"sgacodec/models/weights/{m['file']}" for m in manifest["models"] if m["quality"] != quality]
    return [p for p in (*others, *STASH_ALWAYS) if (root / p).is_file()]


def source_commit(root: Path) -> str | None:
    """HEAD, '+dirty' when sgacodec/ has uncommitted changes to tracked files."""
    try:
        commit = git(root, "rev-parse", "HEAD").strip()
        dirty = git(root, "status", "--porcelain", "--untracked-files=no", "--", "sgacodec")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def restore(root: Path) -> list[str]:
    stash = root / "runs" / "slice-stash"
    listing = stash / "stash.json"
    if not listing.is_file():
        return []
    moved = json.loads(listing.read_text())
    for rel in moved:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(stash / rel), str(root / rel))
    listing.unlink()
    shutil.rmtree(stash)  # only empty folders are left
    return moved


def pack(root: Path, index: int, quality: int = 2, pool: Path = SHARED / "datasets" / "train",
         kodak: Path = SHARED / "datasets" / "kodak", wheels: Path = SHARED / "device-wheels",
         limit: int = LIMIT, margin: int = MARGIN, seed: int = 0) -> dict:
    """Fill root/.slice and stash what the slice does not need; returns the sizes (bytes)."""
    if any(part in str(pool.resolve()).lower() for part in ("kodak", "clic")):
        raise SystemExit(f"{pool}: never train on Kodak or CLIC")
    restore(root)  # a pack left stashed by an interrupted session comes back first
    commit = source_commit(root)  # before the stash, which the status would count as changes
    out = root / ".slice"
    if out.exists():
        shutil.rmtree(out)
    for sub in ("whl", "kodak", "train", "val"):
        (out / sub).mkdir(parents=True)
    for whl in sorted(wheels.glob("*.whl")):
        shutil.copy(whl, out / "whl")
    for png in sorted(kodak.glob("*.png")):
        shutil.copy(png, out / "kodak")
    train, val = pool_images(pool)
    for path in val:
        shutil.copy(path, out / "val" / f"{path.parent.name}_{path.name}")
    stash = root / "runs" / "slice-stash"
    moved = stash_paths(root, quality)
    for rel in moved:
        (stash / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(root / rel), str(stash / rel))
    if moved:
        (stash / "stash.json").write_text(json.dumps(moved, indent=1) + "\n")
    tree = sum(p.stat().st_size for p in travelling_files(root))
    fixed = folder_size(out) + 4096  # meta.json, written below
    room = limit - margin - tree - fixed
    if room <= 0:
        restore(root)
        raise SystemExit(f"no room for training images: the tree is {tree / 2**20:.1f} MiB")
    chosen = subset(train, index, room, seed)
    for path in chosen:
        shutil.copy(path, out / "train" / f"{path.parent.name}_{path.name}")
    counts = {s: sum(p.parent.name == s for p in chosen) for s in SOURCES}
    meta = {"index": index, "seed": seed, "quality": quality, "commit": commit,
            "train_images": len(chosen), "train_bytes": sum(p.stat().st_size for p in chosen),
            "pool_images": len(train), "by_source": counts, "validation": [p.name for p in val],
            "packed": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    sizes = {"tree": tree, "carried": folder_size(out), "stashed": moved, **meta}
    sizes["total"] = sizes["tree"] + sizes["carried"]
    return sizes


def last_match(pattern: str, text: str):
    found = re.findall(pattern, text)
    return found[-1] if found else None


def describe(args) -> dict:
    """The slice's training description (device side), from the pack's meta, the manifest, the
    exported weights' metadata and the training log."""
    import compressai
    import torch
    from safetensors import safe_open

    from sgacodec.evaluation.records import device_name
    from sgacodec.models.checkpoints import sha256_file

    slice_meta = json.loads((args.slice / "meta.json").read_text()) if (args.slice / "meta.json").is_file() else {}
    manifest = json.loads((ROOT / "sgacodec" / "models" / "weights" / "manifest.json").read_text())
    entry = next((m for m in manifest["models"] if m["quality"] == args.quality), {})
    init_sha = sha256_file(args.init).hex()
    base_steps = entry.get("steps", 0) if init_sha == entry.get("sha256") else None
    with safe_open(str(args.weights), framework="pt") as f:
        meta = f.metadata() or {}
    steps = int(meta.get("step", 0))
    log = args.log.read_text() if args.log.is_file() else ""
    val = last_match(r"step (\d+): val bpp ([\d.]+) psnr ([\d.]+) loss ([\d.]+)", log)
    speed = last_match(r"\(([\d.]+) steps/s, (\d+) images/s\)", log)
    if args.commit is None and slice_meta.get("commit") is None:
        args.commit = source_commit(ROOT)  # a rehearsal here (a GPU machine gets no .git)
    return {"training": {
        "quality": args.quality, "name": entry.get("name"), "file": args.weights.name,
        "sha256": sha256_file(args.weights).hex(), "lmbda": float(meta.get("lmbda", "nan")),
        "init": str(args.init), "init_sha256": init_sha, "base_steps": base_steps, "steps": steps,
        "cumulative_steps": None if base_steps is None else base_steps + steps,
        "done": meta.get("done") == "True", "budget_s": args.budget, "seconds": args.seconds,
        "steps_per_s": float(speed[0]) if speed else None, "images_per_s": int(speed[1]) if speed else None,
        "val": dict(zip(("step", "bpp", "psnr", "loss"), (int(val[0]), *map(float, val[1:])))) if val else None,
        "command": args.command, "device": device_name(args.device), "torch": torch.__version__,
        "compressai": compressai.__version__, "commit": args.commit or slice_meta.get("commit"),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {k: slice_meta[k] for k in ("index", "seed", "train_images", "train_bytes", "pool_images",
                                            "by_source", "validation") if k in slice_meta},
    }}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pack", help="fill .slice/ and stash what the slice does not need (here)")
    p.add_argument("--index", type=int, required=True, help="which training subset (0, 1, 2, ...)")
    p.add_argument("--quality", type=int, default=2)
    p.add_argument("--pool", type=Path, default=SHARED / "datasets" / "train")
    p.add_argument("--kodak", type=Path, default=SHARED / "datasets" / "kodak")
    p.add_argument("--wheels", type=Path, default=SHARED / "device-wheels")
    p.add_argument("--seed", type=int, default=0, help="of the fixed shuffle the subsets are windows of")
    sub.add_parser("restore", help="put the stashed files back (here)")
    d = sub.add_parser("describe", help="write the slice's training.json (on the device)")
    for name in ("slice", "init", "weights", "log"):
        d.add_argument(f"--{name}", type=Path, required=True)
    d.add_argument("--quality", type=int, required=True)
    d.add_argument("--device", default="cuda")
    d.add_argument("--budget", type=float, default=None)
    d.add_argument("--seconds", type=float, default=None)
    d.add_argument("--command", default="")
    d.add_argument("--commit", default=None)
    d.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.what == "pack":
        sizes = pack(ROOT, args.index, args.quality, args.pool, args.kodak, args.wheels, seed=args.seed)
        mib = 2**20
        print(f"stashed to runs/slice-stash/: {', '.join(sizes['stashed']) or 'nothing'}")
        print(f"training subset {args.index}: {sizes['train_images']} of {sizes['pool_images']} images "
              f"({sizes['train_bytes'] / mib:.1f} MiB; {sizes['by_source']})")
        print(f"travels: tree {sizes['tree'] / mib:.1f} MiB + .slice {sizes['carried'] / mib:.1f} MiB = "
              f"{sizes['total'] / mib:.1f} MiB of {LIMIT / mib:.0f} MiB")
        print(f'device run: command "scripts/train_slice.sh {args.quality}", carry [".slice"], timeout_s 600')
        print("afterwards, always: python scripts/slice.py restore")
    elif args.what == "restore":
        moved = restore(ROOT)
        print(f"restored {len(moved)} files" + (f": {', '.join(moved)}" if moved else ""))
    else:
        args.out.write_text(json.dumps(describe(args), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
