"""_compressai.py: CompressAI's models without its unused subpackages, for the versions checked;
the plain import for any other version or layout; and a decode that imports neither torchvision
nor torch_geometric. Each case runs in a fresh process (it is about what gets imported)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from sgacodec.network import compressai_import as _compressai

from .support import ROOT

REPORT = """
import json, sys
from sgacodec.network import compressai_import as _compressai
models = _compressai.import_compressai()
import compressai
print(json.dumps({"how": _compressai.how_imported(), "models": models.__name__,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in
                                   ("compressai", "torchvision", "torch_geometric", "scipy", "pandas"))}))
"""


def run(code: str, path_first=None, env_extra=None) -> subprocess.CompletedProcess:
    paths = [str(path_first)] if path_first else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths + [str(ROOT)]), "OMP_NUM_THREADS": "1",
           **(env_extra or {})}
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)


def fake_compressai(root, version: str, init_imports: bool = True):
    """A package laid out like CompressAI (an __init__ importing every subpackage, a registry
    importing transforms), whose unused subpackages record that they were imported."""
    pkg = root / "compressai"
    files = {
        "__init__.py": ("from compressai import (\n    datasets,\n    models,\n    registry,\n)\n" if init_imports
                        else "") + "from .version import __version__\n\ndef get_entropy_coder():\n    return 'ans'\n",
        "version.py": f"__version__ = {version!r}\n",
        "datasets/__init__.py": "import sys\nsys.modules['compressai'].heavy = True\n",
        "registry/__init__.py": "from .torch import register_model\nfrom .transforms import TRANSFORMS\n",
        "registry/torch.py": "def register_model(name):\n    return lambda cls: cls\n",
        "registry/transforms.py": "TRANSFORMS = {'loaded': True}\n",
        "entropy_models/__init__.py": "import scipy.stats\n",
        "models/__init__.py": ("from compressai.entropy_models import *\n"
                               "from compressai.registry import register_model\n"),
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    meta = root / f"compressai-{version}.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: compressai\nVersion: {version}\n")
    return root


def test_a_checked_layout_imports_only_what_is_used(tmp_path):
    root = fake_compressai(tmp_path, _compressai.COMPRESSAI_CHECKED[-1])
    res = run(REPORT + textwrap.dedent("""
        assert compressai.get_entropy_coder() == "ans" and compressai.__version__
        assert "compressai.datasets" not in sys.modules and not hasattr(sys.modules["compressai"], "heavy")
        assert "compressai.registry.transforms" not in sys.modules
        assert compressai.registry.TRANSFORMS == {"loaded": True}  # imported when asked for
        assert compressai.datasets and compressai.heavy
        with __import__("pytest").raises(AttributeError):
            compressai.no_such_thing
        """), root)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.splitlines()[0])
    assert report["how"] == "partial" and "scipy.stats" not in report["loaded"]
    assert "compressai.datasets" not in report["loaded"]


def test_an_unchecked_version_takes_the_plain_import(tmp_path):
    root = fake_compressai(tmp_path, "99.0.0")
    res = run(REPORT + "assert compressai.heavy\n", root)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.splitlines()[0])
    assert report["how"] == "full" and "compressai.datasets" in report["loaded"]


def test_another_layout_takes_the_plain_import(tmp_path):
    """A checked version number whose __init__ lacks the statement to leave out: nothing half
    imported is kept; the plain import runs."""
    root = fake_compressai(tmp_path, _compressai.COMPRESSAI_CHECKED[-1], init_imports=False)
    res = run(REPORT, root)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[0])["how"] == "full"


def test_an_already_imported_compressai_is_used_as_it_is():
    res = run("import compressai.models\n" + REPORT)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[0])["how"] == "full"


def test_a_decode_imports_neither_torchvision_nor_torch_geometric(coded, tiny_checkpoint, tmp_path):
    """The real CompressAI: decoding a file (twice, in two processes, so the second reads the
    coder tables from the cache) imports none of the unused subpackages, nor scipy.stats."""
    if _compressai.installed_version() not in _compressai.COMPRESSAI_CHECKED:
        pytest.skip("an unchecked CompressAI version takes the plain import")
    (tmp_path / "a.bin").write_bytes(coded.data)
    code = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from sgacodec import decode, load_checkpoint
        rgb = decode(Path({str(tmp_path / "a.bin")!r}).read_bytes(), load_checkpoint({str(tiny_checkpoint)!r}),
                     strict=True).rgb
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torchvision", "torch_geometric",
              "pandas", "scipy", "compressai"))))
        """)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first, second = (run(code, env_extra=env) for _ in range(2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    for res in (first, second):
        loaded = json.loads(res.stdout.splitlines()[-1])
        assert not [m for m in loaded if m.split(".")[0] in ("torchvision", "torch_geometric", "pandas")]
        assert "compressai.datasets" not in loaded and "compressai.models" in loaded
    assert "scipy.stats" in json.loads(first.stdout.splitlines()[-1])  # update() computed the tables
    assert "scipy.stats" not in json.loads(second.stdout.splitlines()[-1])  # read from the cache
