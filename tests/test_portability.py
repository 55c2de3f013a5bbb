"""A file decodes to the pixels its encoder reported on another CPU, not just on the encoding one.

Another CPU is emulated in a child process by holding oneDNN, ATen's kernels and MKL to older
instruction sets (the encoder ran here with this machine's best), which changes the rounding of
float32 arithmetic as a different machine does. In float32 that made most Kodak files fail to
decode (docs/format.md); file version 2 codes with h_s, g_s and the rANS tables in float64.
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

from sgacodec import RefineConfig, encode
from sgacodec.models.embedded import load_embedded

from .support import make_image

ROOT = Path(__file__).resolve().parent.parent
OTHER_CPU = {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default",
             "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}

PROBE = """
import hashlib, json, torch
from sgacodec.codec.encoder import coding_net
from sgacodec.network.coding_net import with_float32_tables
from sgacodec.models.loading import load_embedded

def digest(*tensors):
    return hashlib.sha256(b"".join(t.detach().numpy().tobytes() for t in tensors)).hexdigest()

out = {}
for quality in (1, 2, 3):
    model = load_embedded(quality)
    torch.manual_seed(0)
    with torch.no_grad():
        out[f"q{quality} g_s float32"] = digest(model.net.g_s(torch.randn(1, model.net.M, 8, 12)))
    for name, net in (("float32", with_float32_tables(model.net)), ("coding", coding_net(model.net, 2))):
        for em in ("entropy_bottleneck", "gaussian_conditional"):
            m = getattr(net, em)
            tables = [m._quantized_cdf, m._offset, m._cdf_length] + [getattr(m, "scale_table", m._offset)]
            out[f"q{quality} {em} {name}"] = digest(*tables)
print(json.dumps(out))
"""

pytestmark = pytest.mark.slow  # real processes, emulated CPUs, hundreds of mutants


def python(args, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **(env_extra or {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def probes():
    """The probe's digests computed here and on the emulated other CPU."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86 instruction sets")
    runs = [python(["-c", PROBE], env) for env in (None, OTHER_CPU)]
    assert all(r.returncode == 0 for r in runs), "".join(r.stderr for r in runs)
    here, other = (json.loads(r.stdout.splitlines()[-1]) for r in runs)
    if all(here[k] == other[k] for k in here if "float32" in k):
        pytest.skip("this CPU computes float32 alike with the older instruction sets")
    return here, other


def test_coding_tables_are_the_same_on_an_emulated_other_cpu(probes):
    """The scale table and rANS tables (quantized CDFs) the coding network builds at load time do not
    depend on the CPU (those built in float32 do, on this development machine: the scale table,
    and the q3 EntropyBottleneck's tables)."""
    here, other = probes
    coding = [k for k in here if k.endswith(" coding")]
    assert len(coding) == 6 and all(here[k] == other[k] for k in coding)


def test_files_decode_to_the_same_pixels_on_an_emulated_other_cpu(probes, tmp_path):
    image = make_image(192, 320, seed=11)
    names, recons = [], []
    for quality in (1, 2, 3):
        [report] = encode(load_embedded(quality), [image], RefineConfig(method="none"))
        names.append(tmp_path / f"q{quality}.bin")
        names[-1].write_bytes(report.data)
        recons.append(report.recon)
    res = python(["-m", "sgacodec", "decode", *map(str, names), "-o", str(tmp_path / "out"),
                  "--strict", "--json"], OTHER_CPU)
    assert res.returncode == 0, res.stderr
    assert [json.loads(line)["exact"] for line in res.stdout.splitlines()] == [True] * 3
    for name, recon in zip(names, recons):
        decoded = np.asarray(Image.open(tmp_path / "out" / f"{name.stem}.png").convert("RGB"))
        assert np.array_equal(decoded, recon)
