#!/usr/bin/env python3
"""Fuzz the sgacodec decoder with mutated bitstreams and print the counts by outcome.

    OMP_NUM_THREADS=1 python scripts/fuzz_bitstreams.py -n 10000 --cli 100 --cli-batch 300

Seed files are crops of docs/example.png encoded with a model (``--checkpoint``, default: the
embedded default model) into version 3 files, most in several tiles. Each mutant is one of:

- raw mutants (CRC left as it is): truncation, bit flips, byte overwrites, insertions, deletions,
  wrong magic or version, junk appended, random bytes, empty file;
- structure-aware mutants (CRC recomputed, so they get past the checksum): model kind, name,
  metric, quality and weights hash; image size (same latent grid, other grid, huge, with as
  many streams as its grid needs); tile size; colour; reconstruction hash; the y stream count and
  lengths; chunk lengths, order, duplicates and missing chunks; unknown optional and required
  chunks; metadata chunks (ICC, EXIF, XMP, alpha) with random content; the z and y entropy-coded
  streams (bit flips, truncation, extension, random, zeros, empty, tiles swapped, taken from
  another file).

Every mutant goes through the library decode path as the CLI runs it (unpack, model for the
header, codec.decode). A sample also goes through the real CLI, one process per mutant (``--cli``)
and one process for a batch of mutants (``--cli-batch``). Outcomes:

    decoded-identical   decoded, pixels equal to the seed file's decode
    refused             a sgacodec error with a one-line message (CLI: exit 1, one stderr line,
                        no output file, no temporary file left)
    wrong-output        decoded to other pixels (a silent wrong output)
    traceback           any other exception (CLI: a traceback or several lines, or another exit)
    hang                no answer within --timeout seconds
    crash               the process died (signal)

Exit status 1 when any mutant ends in wrong-output, traceback, hang or crash. With ``--out FILE``
the summary is also written to FILE (created, with its folder) with what produced it: the command,
the date, the commit, the model, the seed files, the machine and the versions; docs/reliability.md
cites such files (docs/fuzz/) instead of typed figures.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from sgacodec.codec import container as B
from sgacodec.config import ZOO_NAMES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "example.png"

BAD = ("wrong-output", "traceback", "hang", "crash")


# --- mutants ------------------------------------------------------------------------------------

def raw_pack(bs: B.Bitstream, **over) -> bytes:
    """Like container.pack (version 3), but any field may be forced to raw bytes or out-of-range
    values: the HEAD fields by name, ``y_count``/``y_lengths`` (YSTR's declared count and lengths),
    ``lengths`` (a chunk type -> its declared length), ``chunks`` (the list of (type, payload) to
    write, after the fields above are made), ``crc``."""
    name, model = over.get("name", bs.model.name.encode()), bs.model
    head = b"".join((
        struct.pack(">BB", over.get("kind", B.MODEL_KINDS.index(model.kind)), over.get("name_len", len(name) & 0xFF)),
        name, struct.pack(">BB", over.get("metric", B.METRICS.index(model.metric)), over.get("quality", model.quality)),
        over.get("weights_sha", bs.model.weights_sha),
        struct.pack(">II", over.get("height", bs.height), over.get("width", bs.width)),
        struct.pack(">HB", over.get("tile", bs.tile), over.get("colour", int(bs.grayscale))),
        over.get("recon_hash", bs.recon_hash), over.get("head_extra", b"")))
    streams = list(over.get("y_strings", bs.y_strings))
    lengths = over.get("y_lengths", [len(s) for s in streams])
    count = over.get("y_count", len(streams))
    ystr = (B.varint(count) if count >= 0 else b"\xff" * 6) + b"".join(B.varint(n) for n in lengths) \
        + b"".join(streams)
    names = {v: k for k, v in B.METADATA.items()}
    chunks = [(b"HEAD", head), (b"ZSTR", over.get("z_string", bs.z_string)), (b"YSTR", ystr)]
    chunks += [(names[key], value) for key, value in bs.metadata.items()]
    chunks = over.get("chunks", lambda c: c)(chunks)
    declared = over.get("lengths", {})
    body = MAGIC_V3 + b"".join(kind + struct.pack(">I", declared.get(kind, len(payload))) + payload
                               for kind, payload in chunks)
    return body + struct.pack(">I", over.get("crc", zlib.crc32(body)))


MAGIC_V3 = B.MAGIC + bytes([3])


def mutate_bytes(rng: random.Random, s: bytes) -> bytes:
    """A random damage to an entropy-coded string."""
    s = bytearray(s)
    op = rng.randrange(9)
    if op == 0 and s:
        for _ in range(rng.randint(1, 4)):
            s[rng.randrange(len(s))] ^= 1 << rng.randrange(8)
    elif op == 1:
        s = s[: rng.randrange(len(s) + 1)]
    elif op == 2:
        s += rng.randbytes(rng.choice((1, 4, 16, 1000)))
    elif op == 3:
        s = bytearray(rng.randbytes(rng.choice((1, 3, 8, 64, len(s) or 1, 4096))))
    elif op == 4:
        s = bytearray(len(s)) if rng.random() < 0.5 else bytearray(b"\xff" * len(s))
    elif op == 5:
        s = bytearray()
    elif op == 6 and s:
        i = rng.randrange(len(s))
        s[i : i + rng.randint(1, 8)] = rng.randbytes(rng.randint(1, 8))
    elif op == 7:
        s = bytearray(b"\xff" * rng.choice((1, 8, 9, 100)))
    else:
        s = bytearray(b"\x00" * rng.choice((1, 7, 8, 9, 100)))
    return bytes(s)


def mutant(rng: random.Random, seeds: list[bytes]) -> tuple[str, int, bytes]:
    """(mutator name, index of the seed, mutated bytes)."""
    k = rng.randrange(len(seeds))
    data = seeds[k]
    bs = B.unpack(data)
    family = rng.random()
    if family < 0.35:  # raw damage, CRC not recomputed
        op = rng.choice(("truncate", "flip", "flips", "overwrite", "insert", "delete", "magic",
                         "version", "append", "random", "empty", "crc"))
        d = bytearray(data)
        if op == "truncate":
            d = d[: rng.randrange(len(d))]
        elif op == "flip":
            d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
        elif op == "flips":
            for _ in range(rng.randint(2, 30)):
                d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
        elif op == "overwrite":
            i = rng.randrange(len(d))
            d[i : i + 4] = rng.randbytes(4)
        elif op == "insert":
            i = rng.randrange(len(d))
            d[i:i] = rng.randbytes(rng.randint(1, 64))
        elif op == "delete":
            i = rng.randrange(len(d))
            del d[i : i + rng.randint(1, 64)]
        elif op == "magic":
            d[:4] = rng.choice((b"PNG\x89", b"sgac", b"SGAD", rng.randbytes(4)))
        elif op == "version":
            d[4] = rng.choice((0, 1, 2, 4, 255))
        elif op == "append":
            d += rng.randbytes(rng.randint(1, 100))
        elif op == "random":
            d = bytearray(rng.randbytes(rng.randint(1, 2000)))
            if rng.random() < 0.5:
                d[:5] = B.MAGIC + bytes([B.VERSION])
        elif op == "empty":
            d = bytearray()
        else:
            d[-4:] = rng.randbytes(4)
        return "raw-" + op, k, bytes(d)

    # structure-aware: recomputed CRC
    op = rng.choice(("kind", "name", "name_len", "metric", "quality", "weights_sha", "size_same_grid",
                     "size_other_grid", "size_huge", "tile", "colour", "recon_hash", "y_count", "y_lengths",
                     "chunk_length", "z_string", "y_string", "all_y", "swap_tiles", "other_file_y", "other_file_z",
                     "drop_chunk", "duplicate_chunk", "chunk_order", "unknown_optional", "unknown_required",
                     "metadata", "head_extra", "combo"))
    over = {}
    tiles = len(bs.y_strings)
    if op == "kind":
        over["kind"] = rng.choice((0, 1, 2, 3, 255))
    elif op == "name":
        over["name"] = rng.choice((b"", b"x", b"\xff\xfe", "mbt2018-mean\u00e9".encode(), b"a" * 255,
                                   *(a.encode() for a in ZOO_NAMES), rng.randbytes(rng.randint(1, 40))))
    elif op == "name_len":
        over["name_len"] = rng.randrange(256)
    elif op == "metric":
        over["metric"] = rng.choice((0, 1, 2, 255))
    elif op == "quality":
        over["quality"] = rng.choice((0, 1, 3, 8, 9, 255))
    elif op == "weights_sha":
        over["weights_sha"] = rng.choice((bytes(8), rng.randbytes(8)))
    elif op == "size_same_grid":  # same latent grid, other crop
        z_shape, _ = B.expected_shapes(bs.height, bs.width)
        over["height"] = rng.randint(max(1, 64 * z_shape[0] - 63), 64 * z_shape[0])
        over["width"] = rng.randint(max(1, 64 * z_shape[1] - 63), 64 * z_shape[1])
    elif op in ("size_other_grid", "size_huge"):
        if op == "size_other_grid":
            h, w = rng.randint(1, 700), rng.randint(1, 700)
        else:
            h, w = rng.choice((B.MAX_SIDE + 1, B.MAX_SIDE, 1 << 15, 1 << 31, (1 << 32) - 1)), rng.randint(1, 1 << 15)
            if rng.random() < 0.5:
                h, w = w, h
        over["height"], over["width"] = h, w
        if rng.random() < 0.7 and h * w <= B.MAX_PIXELS:  # as many streams as the grid needs
            count = B.tile_count(h, w, bs.tile)
            if count <= 1 << 16:
                over["y_strings"] = [mutate_bytes(rng, bs.y_strings[0]) if rng.random() < 0.5 else bs.y_strings[0]
                                     for _ in range(count)]
    elif op == "tile":
        over["tile"] = rng.choice((0, 64, 128, 192, 256, 512, 65472, 100, 65535, 1))
    elif op == "colour":
        over["colour"] = rng.choice((1, 2, 255))
    elif op == "recon_hash":
        h = bytearray(bs.recon_hash)
        h[rng.randrange(8)] ^= 1 << rng.randrange(8)
        over["recon_hash"] = bytes(h)
    elif op == "y_count":
        over["y_count"] = rng.choice((0, 1, tiles - 1, tiles + 1, (1 << 32) - 1, 1 << 31, rng.randrange(1 << 32), -1))
    elif op == "y_lengths":
        lengths = [len(s) for s in bs.y_strings]
        i = rng.randrange(tiles)
        lengths[i] = rng.choice((0, max(0, lengths[i] - 1), lengths[i] + 1, (1 << 32) - 1))
        over["y_lengths"] = lengths
    elif op == "chunk_length":
        over["lengths"] = {rng.choice((b"HEAD", b"ZSTR", b"YSTR")): rng.choice((0, 1, 7, (1 << 32) - 1, 1 << 31))}
    elif op == "z_string":
        over["z_string"] = mutate_bytes(rng, bs.z_string)
    elif op == "y_string":
        streams = list(bs.y_strings)
        i = rng.randrange(tiles)
        streams[i] = mutate_bytes(rng, streams[i])
        over["y_strings"] = streams
    elif op == "all_y":
        over["y_strings"] = [mutate_bytes(rng, s) for s in bs.y_strings]
    elif op == "swap_tiles":
        streams = list(bs.y_strings)
        rng.shuffle(streams)
        over["y_strings"] = streams
    elif op in ("other_file_y", "other_file_z"):
        other = B.unpack(seeds[rng.randrange(len(seeds))])
        if op == "other_file_y":
            over["y_strings"] = other.y_strings
        else:
            over["z_string"] = other.z_string
    elif op == "drop_chunk":
        kind = rng.choice((b"HEAD", b"ZSTR", b"YSTR"))
        over["chunks"] = lambda c: [x for x in c if x[0] != kind]
    elif op == "duplicate_chunk":
        over["chunks"] = lambda c: c + [c[rng.randrange(len(c))]]
    elif op == "chunk_order":
        over["chunks"] = lambda c: rng.sample(c, len(c))
    elif op == "unknown_optional":  # a reader skips it: the same pixels
        over["chunks"] = lambda c: c[:1] + [(b"zfut", rng.randbytes(rng.randint(0, 100)))] + c[1:]
    elif op == "unknown_required":
        over["chunks"] = lambda c: c + [(b"FUTR", rng.randbytes(rng.randint(0, 100)))]
    elif op == "metadata":  # metadata chunks carry bytes; alph must be a PNG of the image's size
        kind = rng.choice(tuple(B.METADATA))
        payload = rng.choice((rng.randbytes(rng.randint(0, 300)), b"", b"\x89PNG\r\n\x1a\n" + rng.randbytes(40)))
        over["chunks"] = lambda c: c + [(kind, payload)]
    elif op == "head_extra":
        over["head_extra"] = rng.randbytes(rng.randint(1, 8))
    else:  # combo: a consistent bigger size and damaged streams
        h, w = rng.randint(64, 1024), rng.randint(64, 1024)
        over["height"], over["width"] = h, w
        over["z_string"] = mutate_bytes(rng, bs.z_string)
        over["y_strings"] = [mutate_bytes(rng, bs.y_strings[0]) for _ in range(B.tile_count(h, w, bs.tile))]
    return "struct-" + op, k, raw_pack(bs, **over)


# --- running one mutant -------------------------------------------------------------------------

class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout()


def library_decoder(checkpoint):
    """decode(data) -> RGB, the CLI's decode path: unpack, the header's model (cached), decode.

    Strict: a reconstruction-hash mismatch is an error here (by default it is a warning, for
    files decoded on another machine), so a mutant that decodes to other pixels is refused."""
    from sgacodec.codec.decoder import decode
    from sgacodec.models.loading import load_for_bitstream

    models = {}

    def run(data):
        header = B.unpack(data)
        if header.model not in models:
            models[header.model] = load_for_bitstream(header.model, checkpoint)
        return decode(data, models[header.model], strict=True).rgb

    return run


def expected_errors():
    from sgacodec.errors import SgacodecError

    return (SgacodecError,)


def classify_library(decode, data, reference, timeout) -> tuple[str, str]:
    """(outcome, detail) of decoding ``data`` in this process."""
    import numpy as np

    errors = expected_errors()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(timeout))
    try:
        rgb = decode(data)
    except Timeout:
        return "hang", f"no result in {timeout} s"
    except errors as exc:
        message = str(exc)
        if not message or "\n" in message:
            return "traceback", f"{type(exc).__name__} with a message of {message.count(chr(10)) + 1} lines"
        return "refused", f"{type(exc).__name__}: {message}"
    except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
        return "traceback", f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if reference is not None and rgb.shape == reference.shape and np.array_equal(rgb, reference):
        return "decoded-identical", ""
    return "wrong-output", f"decoded to {rgb.shape} pixels that differ from the seed's"


REASONS = (  # what refused a mutant, by the first words of its message
    ("the container (magic, version, CRC, sizes, lengths)", ("BitstreamError",)),
    ("the model the header names", ("ModelError",)),
    ("entropy-coded data running past its end", ("ends before its data",)),
    ("the decoder crashing, contained in the child process", ("decoder crashed",)),
    ("the decoder's time limit", ("longer than",)),
    ("the reconstruction hash", ("reconstruction hash mismatch",)),
)


def reason(detail: str) -> str:
    for name, needles in REASONS:
        if any(n in detail for n in needles):
            return name
    return "other: " + detail.split(":")[0]


def _cli_command(*args, checkpoint=None):
    more = ["--checkpoint", str(checkpoint)] if checkpoint else []
    return [sys.executable, "-m", "sgacodec", *map(str, args), *more]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


def expected_output(data: bytes, reference):
    """The pixels a CLI decode of ``data`` must write (PNG layout: [H, W] or [H, W, C]): the seed's
    reconstruction in the mutant's own mode, for a header may legitimately say grayscale or carry
    alpha (files/pictures.decoded_picture); None where the mutant cannot decode at all."""
    from sgacodec.errors import SgacodecError
    from sgacodec.files.pictures import decoded_picture

    try:
        return decoded_picture(reference, B.unpack(data)).output()
    except (SgacodecError, ValueError):
        return None


def same_output(written: Path, expected) -> bool:
    import numpy as np
    from PIL import Image

    with Image.open(written) as im:
        pixels = np.asarray(im)
    return expected is not None and pixels.shape == expected.shape and np.array_equal(pixels, expected)


def classify_cli(data, reference, checkpoint, workdir: Path, timeout) -> tuple[str, str]:
    """(outcome, detail) of ``sgacodec decode mutant.bin -o out.png`` in a fresh process."""

    src, dst = workdir / "mutant.bin", workdir / "out" / "mutant.png"
    dst.parent.mkdir(exist_ok=True)
    for p in dst.parent.iterdir():
        p.unlink()
    src.write_bytes(data)
    try:
        res = subprocess.run(_cli_command("decode", src, "-o", dst, "--strict", checkpoint=checkpoint),
                             capture_output=True, timeout=timeout, env=_env())
    except subprocess.TimeoutExpired:
        return "hang", f"no exit in {timeout} s"
    err = res.stderr.decode("utf-8", "replace").strip()
    if res.returncode < 0:
        return "crash", f"signal {-res.returncode}"
    if _leftovers(dst.parent):
        return "traceback", f"left a temporary file: {_leftovers(dst.parent)}"
    if res.returncode == 0:
        if reference is not None and same_output(dst, expected_output(data, reference)):
            return "decoded-identical", ""
        return "wrong-output", "the CLI wrote other pixels"
    lines = err.splitlines()
    if res.returncode == 1 and len(lines) == 1 and lines[0].startswith("sgacodec: error:") \
            and "Traceback" not in err and not dst.exists():
        return "refused", lines[0]
    return "traceback", f"exit {res.returncode}, {len(lines)} stderr lines: {err[-300:]}"


def check_cli_batch(items, references, checkpoint, workdir: Path, timeout) -> tuple[str, str]:
    """One ``sgacodec decode m0.bin m1.bin ... -o dir/`` over many mutants: every bad file is
    listed, every good one is written with the right pixels, the exit status is 1 if any failed."""

    folder, out = workdir / "batch", workdir / "batch-out"
    folder.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    paths = []
    for i, (_, _k, data) in enumerate(items):
        p = folder / f"m{i:05d}.bin"
        p.write_bytes(data)
        paths.append(p)
    try:
        res = subprocess.run(_cli_command("decode", *paths, "-o", out, "--strict", checkpoint=checkpoint),
                             capture_output=True, timeout=timeout, env=_env())
    except subprocess.TimeoutExpired:
        return "hang", f"batch of {len(items)}: no exit in {timeout} s"
    if res.returncode < 0:
        return "crash", f"batch: signal {-res.returncode}"
    err = res.stderr.decode("utf-8", "replace")
    if "Traceback" in err:
        return "traceback", "batch: a traceback on stderr"
    if _leftovers(out):
        return "traceback", f"batch: temporary files left: {_leftovers(out)}"
    failed = 0
    for p, (_, k, data) in zip(paths, items):
        written = out / (p.stem + ".png")
        if written.exists():
            if not same_output(written, expected_output(data, references[k])):
                return "wrong-output", f"batch: {p.name} decoded to other pixels"
        else:
            failed += 1
            if p.name not in err:
                return "traceback", f"batch: {p.name} failed without being named on stderr"
    if (res.returncode != 0) != (failed > 0) or res.returncode not in (0, 1):
        return "traceback", f"batch: exit {res.returncode} with {failed} failures"
    return "ok", f"batch of {len(items)} mutants in one process: {failed} refused, " \
                 f"{len(items) - failed} decoded, exit {res.returncode}"


def classify_info(data: bytes, workdir: Path, timeout) -> tuple[str, str]:
    """(outcome, detail) of ``sgacodec info FILE`` in a fresh process: 'described' (exit 0, a
    description on stdout, nothing on stderr) when the container parses, 'refused' (exit 1, one
    stderr line, nothing on stdout) when it does not; anything else, or a verdict that disagrees
    with the library's parse, is a traceback."""
    path = workdir / "info.bin"
    path.write_bytes(data)
    try:
        res = subprocess.run(_cli_command("info", path), capture_output=True, timeout=timeout, env=_env())
    except subprocess.TimeoutExpired:
        return "hang", f"no exit in {timeout} s"
    if res.returncode < 0:
        return "crash", f"signal {-res.returncode}"
    try:
        B.unpack(data)
        parses = True
    except Exception:  # noqa: BLE001 - any refusal of the parser
        parses = False
    err, out = res.stderr.decode("utf-8", "replace"), res.stdout.decode("utf-8", "replace")
    lines = err.strip().splitlines()
    if res.returncode == 0 and parses and out.strip() and not err.strip():
        return "described", out.strip().splitlines()[0]
    if res.returncode == 1 and not parses and len(lines) == 1 and not out.strip() and "Traceback" not in err:
        return "refused", lines[0]
    return "traceback", f"exit {res.returncode}, parses {parses}, {len(lines)} stderr lines: {err[-300:]}"


def process_seconds(command: list[str], runs: int) -> float:
    """The median wall time of a whole process (``command``) over ``runs`` runs."""
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        subprocess.run(command, capture_output=True, env=_env())
        times.append(time.perf_counter() - begin)
    return sorted(times)[len(times) // 2]


def info_section(items, workdir: Path, timeout) -> tuple[list[str], list]:
    """``sgacodec info`` on the golden files and on ``items`` (mutants), one process each; its
    whole-process time against ``python -c pass``."""
    golden = sorted((ROOT / "tests" / "golden").glob("*.bin"))
    counts, bad, refused = collections.Counter(), [], collections.Counter()
    golden_ok = 0
    for path in golden:
        outcome, detail = classify_info(path.read_bytes(), workdir, timeout)
        golden_ok += outcome == "described"
        if outcome != "described":
            bad.append(("info", path.name, detail, path.read_bytes()))
    for name, _k, data in items:
        outcome, detail = classify_info(data, workdir, timeout)
        counts[outcome] += 1
        if outcome == "refused":
            refused[reason(detail)] += 1
        if outcome in BAD:
            bad.append(("info", name, detail, data))
    info = process_seconds(_cli_command("info", golden[-1]), 7)
    bare = process_seconds([sys.executable, "-c", "pass"], 7)
    lines = [f"sgacodec info, one process per file: golden files {golden_ok} of {len(golden)} described "
             f"({', '.join(p.name for p in golden)}); {len(items)} mutants: "
             + ", ".join(f"{o} {counts[o]}" for o in ("described", "refused", *BAD)),
             "  refused by: " + "; ".join(f"{n} {c}" for n, c in refused.most_common()),
             f"  whole-process time (median of 7): sgacodec info {info:.3f} s, python -c pass {bare:.3f} s "
             f"({info / bare:.1f}x)"]
    return lines, bad


# --- setup --------------------------------------------------------------------------------------

def make_seeds(model, sizes=((70, 100), (1, 1), (64, 128), (130, 65), (150, 200))) -> list[bytes]:
    """One file per size: a crop of docs/example.png, unrefined or after 3 STE steps, in tiles of 64
    pixels (several y streams; the first, one tile)."""
    from sgacodec.codec.batching import encode
    from sgacodec.config import RefineConfig
    from sgacodec.files.images import read_image

    example = read_image(EXAMPLE)
    seeds = []
    for i, (h, w) in enumerate(sizes):
        method = "none" if i % 2 else "ste"
        crop = example[17 * i : 17 * i + h, 23 * i : 23 * i + w].copy()
        [report] = encode(model, [crop], RefineConfig(method=method, iterations=3, tile_size=256 if i == 0 else 64))
        seeds.append(report.data)
    return seeds


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(argv, model, seeds, args) -> list[str]:
    """What produced a run's figures: command, date, commit, model, seeds, machine, versions."""
    import datetime
    import platform

    import compressai
    import numpy
    import torch

    import sgacodec

    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    commit = _git("rev-parse", "HEAD") or "unknown"
    dirty = " (with uncommitted changes)" if _git("status", "--porcelain", "--untracked-files=no") else ""
    command = " ".join(["python", "scripts/fuzz_bitstreams.py", *(sys.argv[1:] if argv is None else argv)])
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "SGACODEC_ISOLATE") if k in os.environ)
    seed_files = ", ".join(f"{B.unpack(s).width}x{B.unpack(s).height} ({len(s)} B)" for s in seeds)
    return [
        f"command: {env + ' ' if env else ''}{command}",
        f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"commit: {commit}{dirty}",
        f"model: {model.describe()} (weights {model.identity.weights_sha.hex()})",
        f"seed files: {seed_files}; mutants from random.Random({args.seed}); hang after {args.timeout:g} s",
        f"machine: {platform.platform()}, {cpu or platform.processor()}, {os.cpu_count()} cores",
        f"versions: Python {platform.python_version()}, torch {torch.__version__}, CompressAI "
        f"{compressai.__version__}, numpy {numpy.__version__}, sgacodec {sgacodec.__version__}",
    ]


def write_results(path, lines: list[str]) -> None:
    from sgacodec.files.outputs import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, ("\n".join(lines) + "\n").encode())
    print(f"summary written to {path}", file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10000, help="mutants through the library path")
    parser.add_argument("--cli", type=int, default=50, help="of which this many also through the CLI, one process each")
    parser.add_argument("--cli-batch", type=int, default=200, help="mutants decoded by one CLI process")
    parser.add_argument("--info", type=int, default=200, help="mutants given to sgacodec info, one process each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None,
                        help="model to encode the seeds with (default: the embedded default model)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a mutant counts as a hang")
    parser.add_argument("--save", default=None, help="folder to keep the mutants with a bad outcome")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--out", default=None,
                        help="also write the summary, with its provenance, to this file (e.g. docs/fuzz/fuzz-DATE.txt)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from sgacodec.models.loading import load_model

    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    model = load_model(checkpoint=checkpoint)
    seeds = make_seeds(model)
    decode = library_decoder(checkpoint)
    references = [decode(s) for s in seeds]
    rng = random.Random(args.seed)
    counts = collections.Counter()
    by_mutator = collections.defaultdict(collections.Counter)
    bad = []
    begin = time.monotonic()
    cli_every = max(1, args.n // args.cli) if args.cli else 0
    cli_counts = collections.Counter()
    reasons = collections.Counter()
    batch = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for i in range(args.n):
            name, k, data = mutant(rng, seeds)
            outcome, detail = classify_library(decode, data, references[k], args.timeout)
            counts[outcome] += 1
            by_mutator[name][outcome] += 1
            if outcome == "refused":
                reasons[reason(detail)] += 1
            if outcome in BAD:
                bad.append(("library", name, detail, data))
            if args.verbose:
                print(f"{i:6d} {name:26s} {outcome:18s} {detail[:100]}", flush=True)
            if cli_every and i % cli_every == 0 and sum(cli_counts.values()) < args.cli:
                outcome, detail = classify_cli(data, references[k], checkpoint, workdir, args.timeout)
                cli_counts[outcome] += 1
                if outcome in BAD:
                    bad.append(("cli", name, detail, data))
            if len(batch) < max(args.cli_batch, args.info):
                batch.append((name, k, data))
            if (i + 1) % 1000 == 0:
                print(f"{i + 1} mutants, {time.monotonic() - begin:.0f} s: {dict(counts)}", file=sys.stderr,
                      flush=True)
        batch_result = ("skipped", "")
        info_lines, info_bad = info_section(batch[: args.info], workdir, args.timeout) if args.info else ([], [])
        bad += info_bad
        batch = batch[: args.cli_batch]
        if batch:
            batch_result = check_cli_batch(batch, references, checkpoint, workdir, args.timeout * 4)
            if batch_result[0] in BAD:
                bad.append(("cli-batch", "batch", batch_result[1], b""))
    seconds = time.monotonic() - begin

    outcomes = ("decoded-identical", "refused", *BAD)
    lines = [f"sgacodec bitstream fuzz: {args.n} mutants of {len(seeds)} seed files, seed {args.seed}, "
             f"{seconds:.0f} s",
             "library decode path:  " + ", ".join(f"{o} {counts[o]}" for o in outcomes)]
    if args.cli:
        lines.append(f"CLI, one process each ({sum(cli_counts.values())}):  "
                     + ", ".join(f"{o} {cli_counts[o]}" for o in outcomes))
    lines.append(f"CLI, one process for a batch of {len(batch)}: {batch_result[0]} ({batch_result[1]})")
    lines += info_lines
    lines.append("refused by (library path):")
    lines += [f"  {count:6d}  {name}" for name, count in reasons.most_common()]
    lines.append("by mutator (library path):")
    for name in sorted(by_mutator):
        c = by_mutator[name]
        lines.append(f"  {name:26s} " + ", ".join(f"{o} {c[o]}" for o in outcomes if c[o]))
    if bad:
        lines.append(f"BAD OUTCOMES ({len(bad)}):")
        lines += [f"  [{where}] {name}: {detail[:200]}" for where, name, detail, _data in bad[:50]]
    print("\n".join(lines))
    if args.out:
        write_results(args.out, provenance(argv, model, seeds, args) + [""] + lines)
    if bad:
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            for j, (where, name, _, data) in enumerate(bad):
                (Path(args.save) / f"{j:04d}-{where}-{name}.bin").write_bytes(data)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
