"""The cache of derived tensors: used only when it holds exactly what would be built, rebuilt when
missing, stale, damaged, altered or malformed; the coder tables it holds are those computed."""

import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sgacodec.network import coding_net as float64
from sgacodec.network import table_cache as cache
from sgacodec.network.coding_net import coding_net


def counting(value):
    calls = []

    def build():
        calls.append(1)
        return {"t": torch.tensor(value, dtype=torch.int32)}

    return build, calls


def path_of(key, kind="test"):
    return cache.folder() / kind / f"{key}.safetensors"


def test_built_once_then_read(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    build, calls = counting([1, 2, 3])
    first = cache.tensors("test", "k1", build, lambda t: True)
    again = cache.tensors("test", "k1", build, lambda t: True)
    assert len(calls) == 1 and torch.equal(first["t"], again["t"])
    assert path_of("k1") == tmp_path / "sgacodec" / "test" / "k1.safetensors" and path_of("k1").is_file()
    assert not [p for p in path_of("k1").parent.iterdir() if p.suffix == ".part"]


def test_a_missing_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    build, calls = counting([4])
    cache.tensors("test", "k", build, lambda t: True)
    path_of("k").unlink()
    cache.tensors("test", "k", build, lambda t: True)
    assert len(calls) == 2 and path_of("k").is_file()


def test_a_file_built_for_another_key_is_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache.tensors("test", "old", counting([1])[0], lambda t: True)
    os.replace(path_of("old"), path_of("new"))  # e.g. copied from another install
    build, calls = counting([2])
    assert cache.tensors("test", "new", build, lambda t: True)["t"].tolist() == [2] and calls


@pytest.mark.parametrize("damage", ["edited", "truncated", "junk"])
def test_damaged_or_altered_content_is_rebuilt(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache.tensors("test", "k", counting([7, 8])[0], lambda t: True)
    path = path_of("k")
    if damage == "edited":  # new content, the old hash: what an edit that keeps the metadata leaves
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        save_file({"t": torch.tensor([7, 9], dtype=torch.int32)}, str(path), metadata=meta)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-3])
    else:
        path.write_bytes(b"not a cache file")
    build, calls = counting([7, 8])
    assert cache.tensors("test", "k", build, lambda t: True)["t"].tolist() == [7, 8] and calls
    assert cache.tensors("test", "k", build, lambda t: True)["t"].tolist() == [7, 8] and len(calls) == 1


def test_tensors_that_fail_the_check_are_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache.tensors("test", "k", counting([-1])[0], lambda t: True)  # written by a build since fixed
    build, calls = counting([1])
    assert cache.tensors("test", "k", build, lambda t: bool((t["t"] > 0).all()))["t"].tolist() == [1] and calls


def test_no_folder_no_caching(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    build, calls = counting([1])
    for _ in range(2):
        assert cache.tensors("test", "k", build, lambda t: True)["t"].tolist() == [1]
    assert len(calls) == 2
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("SGACODEC_CACHE", "0")
    cache.tensors("test", "k", build, lambda t: True)
    assert cache.folder() is None and not (tmp_path / "sgacodec").exists()


def test_keys_are_file_names():
    with pytest.raises(ValueError):
        cache.tensors("test", "../escape", counting([1])[0], lambda t: True)


# --- the coder tables ------------------------------------------------------------------------

def entropy_models(net):
    return {"entropy_bottleneck": net.entropy_bottleneck, "gaussian_conditional": net.gaussian_conditional}


def test_cached_coder_tables_are_the_computed_ones(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    models = entropy_models(coding_net(tiny_model.net, 2))
    computed = float64._compute_float64_tables(models)
    assert float64.valid_coder_tables(computed, models)
    built = float64.float64_coder_tables(models)  # a miss: computed and written
    read = float64.float64_coder_tables(models)  # a hit
    for tables in (built, read):
        assert set(tables) == set(computed) and all(torch.equal(tables[k], computed[k]) for k in computed)
    assert len(list((tmp_path / "sgacodec" / "coder-tables").iterdir())) == 1


def test_the_key_names_the_parameters_and_the_versions(tiny_model, monkeypatch):
    models = entropy_models(coding_net(tiny_model.net, 2))
    key = float64.coder_tables_key(models)
    assert float64.coder_tables_key(models) == key
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert float64.coder_tables_key(models) != key
    monkeypatch.undo()
    with torch.no_grad():
        models["entropy_bottleneck"].quantiles[0, 0, 1] += 1e-3
        try:
            assert float64.coder_tables_key(models) != key
        finally:
            models["entropy_bottleneck"].quantiles[0, 0, 1] -= 1e-3
    assert float64.coder_tables_key(models) == key


@pytest.mark.parametrize("malformed", ["increasing", "length", "rows", "dtype"])
def test_malformed_coder_tables_are_refused(tiny_model, malformed):
    """Tables with a valid hash (written by someone who recomputed it) are still checked before the
    rANS coder, which does not bounds-check, may index them."""
    models = entropy_models(coding_net(tiny_model.net, 2))
    tables = {k: v.clone() for k, v in float64._compute_float64_tables(models).items()}
    name = "gaussian_conditional"
    if malformed == "increasing":
        tables[f"{name}._quantized_cdf"][3, 1] = 0
    elif malformed == "length":
        tables[f"{name}._cdf_length"][0] = tables[f"{name}._quantized_cdf"].shape[1] + 5
    elif malformed == "rows":
        tables[f"{name}._quantized_cdf"] = tables[f"{name}._quantized_cdf"][:-1]
    else:
        tables[f"{name}._offset"] = tables[f"{name}._offset"].long()
    assert not float64.valid_coder_tables(tables, models)
