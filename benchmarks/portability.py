"""Do files decode to the encoder's pixels on another CPU? File version 1 (float32) against 2 and 3 (float64).

Every image is encoded here (method none, this machine's best instruction sets) into a version 1
file (h_s, g_s and the rANS tables in float32), a version 2 file (float64, the whole image) and a
version 3 file (float64 in tiles, what sgacodec writes). Each set of files is then decoded in
child processes that emulate other CPUs by holding oneDNN, ATen's kernels and MKL to older
instruction sets, and the decoded pixels are compared with those the encoder computed. Printed
per model, file version and emulated CPU: files that fail to decode, files that decode to other
pixels, and the number of differing values; and each version's mean bpp (real bytes) and PSNR,
to show that versions 2 and 3 code the same rate-distortion point.

    python benchmarks/portability.py --images ../shared/datasets/kodak --quality 1 2 3
    python benchmarks/portability.py --quality 2 --keep /tmp/kodak_q2   # also keep the files:
        /tmp/kodak_q2/q2/v1/*.bin, .../v2/*.bin and .../v3/*.bin (e.g. for benchmarks/startup_speed.py --bins)

``--synthesis`` also measures a cheaper arithmetic for g_s, the largest cost of a decode: whether a
format with g_s in float32 (h_s and the tables still float64) would decode to the encoder's pixels.
For each version 2 file, the encoder side (here) and each emulated CPU run g_s in float32 on the
same exactly decoded y^; printed: files and pixel values that differ from here, and the CPU time
of g_s in float32 and in float64 (the coding network's, what version 2 decodes with) per file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"
VERSIONS = (1, 2, 3)  # file versions written and decoded
EMULATED_CPUS = {
    "this CPU": {},
    "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "SSE4.1": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default",
               "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}


def exact_y_hat(net, data: bytes):
    """The y^ a version 2 file decodes to (entropy decoding with the coding network's h_s, float64)."""
    from sgacodec.codec.container import unpack

    bs = unpack(data)
    eb, gc = net.entropy_bottleneck, net.gaussian_conditional
    z_hat = eb.decompress([bs.z_string], bs.z_shape)
    scales, means = net.h_s(z_hat).chunk(2, 1)
    return gc.decompress([bs.y_strings[0]], gc.build_indexes(scales), means=means), bs


def synthesis_pixels(g_s, y_hat, bs) -> np.ndarray:
    from sgacodec.codec.pixels import to_uint8

    return to_uint8(g_s(y_hat).clamp(0, 1)[0, :, : bs.height, : bs.width])


def encode_all(images: list[Path], quality: int, out: Path, synthesis: bool = False) -> dict:
    """Every file version of every image into ``out``; returns mean bpp and PSNR per version. With
    ``synthesis``, also the pixels of each version 2 file's y^ through g_s in float32."""
    import torch

    from sgacodec import metrics
    from sgacodec.codec.encoder import code_latents
    from sgacodec.codec.pixels import pad, to_tensor
    from sgacodec.files.images import read_image
    from sgacodec.models.embedded import load_embedded
    from sgacodec.network.coding_net import coding_net
    from sgacodec.network.latent_model import LatentModel

    model = load_embedded(quality)
    lm = LatentModel(model.net)
    sums = {version: [0.0, 0.0] for version in VERSIONS}
    for path in images:
        rgb = read_image(path)
        with torch.no_grad():
            y, z = lm.analysis(pad(to_tensor(rgb)))
        for version in VERSIONS:
            [(data, recon)] = code_latents(model, y, z, rgb.shape[:2], version=version)
            folder = out / f"v{version}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{path.stem}.bin").write_bytes(data)
            np.save(folder / f"{path.stem}.npy", recon)
            if version == 2 and synthesis:  # the encoder side of a format with g_s in float32
                with torch.no_grad():
                    y_hat, bs = exact_y_hat(coding_net(model.net, 2), data)
                    np.save(folder / f"{path.stem}.f32.npy", synthesis_pixels(model.net.g_s, y_hat, bs))
            sums[version][0] += metrics.bpp(len(data), *rgb.shape[:2]) / len(images)
            sums[version][1] += metrics.psnr(rgb, recon) / len(images)
    return sums


def decode_all(folder: Path, synthesis: bool = False) -> dict:
    """Child process: decode every file in ``folder``/v*/; counts per file version (and with
    ``synthesis``, per g_s arithmetic on the version 2 files)."""
    import time

    import torch

    from sgacodec.codec.container import unpack
    from sgacodec.codec.decoder import decode
    from sgacodec.models.loading import load_for_bitstream
    from sgacodec.network.coding_net import coding_net

    counts = {}
    if synthesis:
        for path in sorted(folder.glob("v2/*.bin")):
            model = load_for_bitstream(unpack(path.read_bytes()).model)
            net = coding_net(model.net, 2)
            with torch.no_grad():
                y_hat, bs = exact_y_hat(net, path.read_bytes())
                for name, g_s, ref in (("g_s float32", model.net.g_s, ".f32.npy"), ("g_s float64", net.g_s, ".npy")):
                    c = counts.setdefault(name, {"files": 0, "fail": 0, "other_pixels": 0, "values": 0, "cpu": 0.0})
                    t0 = time.process_time()
                    rgb = synthesis_pixels(g_s, y_hat, bs)
                    c["cpu"] += time.process_time() - t0
                    n = int((rgb != np.load(path.parent / (path.stem + ref))).sum())
                    c["files"] += 1
                    c["other_pixels"] += n > 0
                    c["values"] += n
    for path in [] if synthesis else sorted(folder.glob("v*/*.bin")):
        version = path.parent.name[1:]
        c = counts.setdefault(version, {"files": 0, "fail": 0, "other_pixels": 0, "values": 0})
        c["files"] += 1
        try:
            rgb = decode(path.read_bytes(), verify=False).rgb
        except Exception:
            c["fail"] += 1
            continue
        n = int((rgb != np.load(path.with_suffix(".npy"))).sum())
        c["other_pixels"] += n > 0
        c["values"] += n
    return counts


def provenance() -> str:
    """What produced this output: the command, date, commit, machine and versions."""
    import platform
    import time

    import torch

    from sgacodec.evaluation.records import cpu_model, source_commit
    from sgacodec.network.compressai_import import installed_version

    return (f"command: python benchmarks/portability.py {' '.join(sys.argv[1:])}\n"
            f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\ncommit: {source_commit()}\n"
            f"machine: {platform.platform()}, {cpu_model()}, {os.cpu_count()} cores\n"
            f"versions: Python {platform.python_version()}, torch {torch.__version__}, "
            f"CompressAI {installed_version('compressai')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, default=KODAK)
    ap.add_argument("--quality", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--keep", type=Path, help="Keep the coded files in KEEP/q<quality>/v<version>/.")
    ap.add_argument("--synthesis", action="store_true",
                    help="Also measure g_s in float32 against float64 on the emulated CPUs.")
    ap.add_argument("--decode-folder", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = ap.parse_args()
    if args.decode_folder:
        print(json.dumps(decode_all(args.decode_folder, args.synthesis)))
        return
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() == ".png")
    print(provenance())
    print(f"{len(images)} images from {args.images}; decode with one thread, SGACODEC_ISOLATE=0")
    print(f"{'model':6} {'version':8} {'emulated CPU':13} {'fail':>5} {'other px':>9} {'values':>9}")
    for quality in args.quality:
        with tempfile.TemporaryDirectory() as scratch:
            tmp = str(args.keep / f"q{quality}") if args.keep else scratch
            sums = encode_all(images, quality, Path(tmp), args.synthesis)
            for cpu, env_extra in EMULATED_CPUS.items():
                env = dict(os.environ, OMP_NUM_THREADS="1", SGACODEC_ISOLATE="0", **env_extra)
                res = subprocess.run([sys.executable, __file__, "--decode-folder", tmp], env=env,
                                     capture_output=True, text=True, check=True)
                for version, c in sorted(json.loads(res.stdout.splitlines()[-1]).items()):
                    print(f"q{quality:<5} {version:8} {cpu:13} {c['fail']:>3}/{c['files']} "
                          f"{c['other_pixels']:>6}/{c['files']} {c['values']:>9}", flush=True)
                if args.synthesis:
                    res = subprocess.run([sys.executable, __file__, "--decode-folder", tmp, "--synthesis"],
                                         env=env, capture_output=True, text=True, check=True)
                    for name, c in sorted(json.loads(res.stdout.splitlines()[-1]).items()):
                        print(f"q{quality:<5} {name:11} {cpu:10} {'':>5} {c['other_pixels']:>6}/{c['files']} "
                              f"{c['values']:>9}   g_s CPU {c['cpu'] / c['files']:.2f} s/file", flush=True)
        for version, (bpp, psnr) in sums.items():
            print(f"q{quality:<5} v{version}: mean {bpp:.5f} bpp, {psnr:.4f} dB")


if __name__ == "__main__":
    main()
