"""A file decodes to the pixels its encoder reported on another CPU, not just on the encoding one.

Another CPU is emulated in a child process by holding oneDNN, ATen's kernels and MKL to older
instruction sets (the encoder ran here with this machine's best), which changes the rounding of
float32 convolutions as a different machine does. In float32 that made most Kodak files fail to
decode (docs/format.md); file version 2 codes with h_s and g_s in float64.
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sgacodec import RefineConfig, encode, load_model

from .conftest import make_image

ROOT = Path(__file__).resolve().parent.parent
OTHER_CPU = {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default",
             "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}

GS_FLOAT32_HASH = """
import hashlib, torch
from sgacodec import load_model
torch.manual_seed(0)
net = load_model().net
with torch.no_grad():
    out = net.g_s(torch.randn(1, net.M, 8, 12))
print(hashlib.sha256(out.numpy().tobytes()).hexdigest())
"""


def python(args, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **(env_extra or {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 instruction sets")
def test_file_decodes_to_the_same_pixels_on_an_emulated_other_cpu(tmp_path):
    here, other = (python(["-c", GS_FLOAT32_HASH], env) for env in (None, OTHER_CPU))
    assert here.returncode == 0 and other.returncode == 0, here.stderr + other.stderr
    if here.stdout == other.stdout:
        pytest.skip("this CPU computes float32 convolutions alike with the older instruction sets")

    image = make_image(192, 320, seed=11)
    [report] = encode(load_model(), [image], RefineConfig(method="none"))
    (tmp_path / "img.bin").write_bytes(report.data)
    res = python(["-m", "sgacodec", "decode", str(tmp_path / "img.bin"), "-o", str(tmp_path / "img.png"),
                  "--strict", "--json"], OTHER_CPU)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["exact"] is True
    assert np.array_equal(np.asarray(Image.open(tmp_path / "img.png").convert("RGB")), report.recon)
