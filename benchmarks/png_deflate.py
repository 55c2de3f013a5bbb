"""PNG writing cost of a decode: Python's zlib against zlib-ng at the same levels, side by side.

    python benchmarks/png_deflate.py IMAGE [IMAGE ...] [--levels 1 6 9] [--runs 3]

Each image is written by sgacodec's streaming PNGWriter (filters as Pillow chooses them, one
thread, strips of 256 rows), once per deflate library and level, the runs interleaved; printed per
level: the summed size and the median CPU time of each library over all images, their ratios, and
that every PNG reads back to the image's pixels.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sgacodec.files import png  # noqa: E402


def write(img: np.ndarray, deflater, level: int) -> tuple[bytes, float]:
    png._deflater = lambda _level: deflater
    buf = io.BytesIO()
    start = time.process_time()
    with png.PNGWriter(buf, img.shape[1], img.shape[0], compress_level=level) as w:
        for r in range(0, img.shape[0], 256):
            w.write_rows(img[r:r + 256])
    return buf.getvalue(), time.process_time() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", type=Path, nargs="+")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 3, 6, 9])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    if png.zlib_ng is None:
        sys.exit("zlib-ng is not installed (pip install zlib-ng)")
    from sgacodec.evaluation.records import cpu_model, source_commit

    print(f"# python benchmarks/png_deflate.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {source_commit()}, "
          f"{platform.platform()}, CPU {cpu_model()} ({os.cpu_count()} cores), python "
          f"{platform.python_version()}, zlib {zlib.ZLIB_RUNTIME_VERSION}, numpy {np.__version__}")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in args.images]
    libraries = {"zlib": zlib, "zlib-ng": png.zlib_ng}
    print(f"# {len(images)} images, {sum(i.shape[0] * i.shape[1] for i in images) / 1e6:.1f} MP in all")
    print("level  zlib MB  zlib-ng MB  size ratio  zlib CPU s  zlib-ng CPU s  time ratio  pixels")
    for level in args.levels:
        size, cpu, same = {}, {k: [] for k in libraries}, True
        for _ in range(args.runs):
            for name, lib in libraries.items():
                total_size, total_cpu = 0, 0.0
                for img in images:
                    data, seconds = write(img, lib, level)
                    total_size, total_cpu = total_size + len(data), total_cpu + seconds
                    same &= bool(np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), img))
                size[name] = total_size
                cpu[name].append(total_cpu)
        t = {k: statistics.median(v) for k, v in cpu.items()}
        print(f"{level:5d}  {size['zlib'] / 1e6:7.2f}  {size['zlib-ng'] / 1e6:10.2f}  "
              f"{size['zlib-ng'] / size['zlib']:10.3f}  {t['zlib']:10.2f}  {t['zlib-ng']:13.2f}  "
              f"{t['zlib-ng'] / t['zlib']:10.2f}  {'identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
