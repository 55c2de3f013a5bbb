"""Model loading: local checkpoints (any hyperprior architecture), the zoo path, no code execution."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from sgacodec.codec import decode
from sgacodec.models import ModelError, infer_architecture, load_checkpoint, load_model, load_zoo, zoo_cache_path
from sgacodec.pipeline import encode
from sgacodec.refine import RefineConfig

from .support import invoke, make_image


def small_net(name):
    from compressai.zoo.image import model_architectures

    args = {"cheng2020-anchor": (16,), "cheng2020-attn": (16,)}.get(name, (16, 24))
    torch.manual_seed(0)
    return model_architectures[name](*args)


@pytest.mark.parametrize("name", ["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018",
                                  "cheng2020-anchor", "cheng2020-attn"])
def test_checkpoint_architecture_is_inferred_and_codes(tmp_path, name):
    path = tmp_path / "m.pth"
    torch.save(small_net(name).state_dict(), path)
    assert infer_architecture(torch.load(path, weights_only=True)) == name
    model = load_checkpoint(path, lmbda=0.01)
    assert model.identity.name == name and model.identity.kind == "checkpoint"
    image = make_image(40, 70)
    [report] = encode(model, [image], RefineConfig(iterations=3))
    rgb, _, _ = decode(report.data, model)
    assert np.array_equal(rgb, report.recon)


def test_safetensors_checkpoint_with_lambda(tmp_path, tiny_checkpoint):
    from safetensors.torch import save_file

    state = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"lmbda": "0.02"})
    model = load_checkpoint(path)
    assert model.lmbda == 0.02 and model.identity.name == "mbt2018-mean"


def test_pickle_payload_is_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Payload()}, f)
    with pytest.raises(ModelError, match="refusing or unable"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned-by-checkpoint").exists()


def test_junk_and_missing_checkpoints(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError):
        load_checkpoint(junk)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"a.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ModelError, match="not a CompressAI hyperprior"):
        load_checkpoint(wrong)


def test_zoo_loads_from_torch_hub_cache(tmp_path, monkeypatch):
    """The real zoo code path, with the weights placed where torch.hub's cache looks."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        from compressai.zoo.image import model_architectures

        torch.manual_seed(0)
        net = model_architectures["mbt2018-mean"](128, 192)
        cache = zoo_cache_path("mbt2018-mean", 1)
        cache.parent.mkdir(parents=True)
        torch.save(net.state_dict(), cache)
        model = load_model("mbt2018-mean", quality=1)
        assert model.lmbda == 0.0018 and model.identity.kind == "zoo" and model.identity.quality == 1
        assert any(model.identity.weights_sha)
        [report] = encode(model, [make_image(64, 64)], RefineConfig(method="none"))
        assert decode(report.data)[0].shape == (64, 64, 3)  # reloads the model the file names
    finally:
        torch.hub.set_dir(str(tmp_path / "unused"))


def test_zoo_without_network_says_so(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(torch.hub, "urlopen", offline)  # torch.hub imported it by name
    torch.hub.set_dir(str(tmp_path / "empty-hub"))
    with pytest.raises(ModelError, match="--checkpoint"):
        load_zoo("bmshj2018-hyperprior", 2)


def test_unknown_zoo_name():
    with pytest.raises(ModelError, match="unknown model"):
        load_model("jpeg-2000", quality=1)


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))



@pytest.mark.parametrize("how", ["zip", "legacy", "pickle", "beside-weights"])
def test_checkpoint_pickle_payloads_never_run(tmp_path, monkeypatch, tiny_checkpoint, how):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth.tar"
    if how == "zip":
        torch.save({"state_dict": Payload()}, path)
    elif how == "legacy":
        torch.save({"state_dict": Payload()}, path, _use_new_zipfile_serialization=False)
    elif how == "pickle":
        path.write_bytes(pickle.dumps(Payload()))
    else:  # a real state dict, and a payload in another key
        state = torch.load(tiny_checkpoint, weights_only=True)
        torch.save({**state, "extra": Payload()}, path)
    with pytest.raises(ModelError, match="refusing or unable"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned-by-checkpoint").exists()
    image = tmp_path / "img.png"
    Image.fromarray(make_image(20, 20)).save(image)
    res = invoke("encode", image, "-o", tmp_path / "o.bin", "--checkpoint", path, "--method", "none")
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "pwned-by-checkpoint").exists() and not (tmp_path / "o.bin").exists()



def test_checkpoints_that_hold_no_weights_are_refused(tmp_path):
    cases = {"ints.pth": {"state_dict": {"a": 1}}, "list.pth": [1, 2, 3],
             "bad-lambda.pth": {"state_dict": {"g_a.0.weight": torch.zeros(1)}, "lmbda": "x"}}
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(ModelError):
            load_checkpoint(tmp_path / name)
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 100)
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "bad.safetensors")

