"""Model loading: local checkpoints (any hyperprior architecture), the zoo path, no code execution."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from sgacodec.codec.batching import encode
from sgacodec.codec.decoder import decode
from sgacodec.config import RefineConfig
from sgacodec.errors import ModelError
from sgacodec.models.checkpoints import infer_architecture, load_checkpoint
from sgacodec.models.loading import load_model
from sgacodec.models.zoo import load_zoo, zoo_cache_path

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
    with pytest.raises(ModelError, match="refusing or unable") as refused:
        load_checkpoint(path)
    assert "weights_only" not in str(refused.value)  # never PyTorch's advice to turn it off
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



def broken_checkpoint(tmp_path, tiny_checkpoint, change):
    state = torch.load(tiny_checkpoint, weights_only=True)
    change(state["state_dict"])
    path = tmp_path / "broken.pth.tar"
    torch.save(state, path)
    return path


def last_weight(state_dict, part):
    return [k for k in state_dict if k.startswith(part + ".") and k.endswith("weight")][-1]


@pytest.mark.parametrize("part", ["h_s", "g_a", "entropy_bottleneck"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, tiny_checkpoint, part, value):
    """A NaN in g_a made encode spin in CompressAI's rANS encoder, beyond Ctrl-C's reach."""
    def poison(sd):
        key = "entropy_bottleneck.quantiles" if part == "entropy_bottleneck" else last_weight(sd, part)
        sd[key].view(-1)[:5] = value

    path = broken_checkpoint(tmp_path, tiny_checkpoint, poison)
    with pytest.raises(ModelError, match="NaN or infinite") as refused:
        load_checkpoint(path)
    assert len(str(refused.value).splitlines()) == 1
    image = tmp_path / "img.png"
    Image.fromarray(make_image(20, 20)).save(image)
    res = invoke("encode", image, "-o", tmp_path / "o.bin", "--checkpoint", path, "--method", "none")
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1 and "NaN" in res.output


def test_absurd_quantiles_are_refused_before_the_coder_tables_are_built(tmp_path, tiny_checkpoint, monkeypatch):
    """Quantiles of +-1e7 made update() ask for gigabytes (the rANS tables are sized from them)."""
    from compressai.entropy_models import EntropyBottleneck

    def absurd(sd):
        sd["entropy_bottleneck.quantiles"][:, 0, 0] = -2e5  # 400,001 symbols per channel
        sd["entropy_bottleneck.quantiles"][:, 0, 2] = 2e5

    path = broken_checkpoint(tmp_path, tiny_checkpoint, absurd)
    updates = []
    monkeypatch.setattr(EntropyBottleneck, "update", lambda self, *a, **k: updates.append(1))
    with pytest.raises(ModelError, match=r"quantiles span 4000\d\d values"):
        load_checkpoint(path)
    assert not updates


def test_weights_of_the_wrong_shape_are_refused_with_one_full_line(tmp_path, tiny_checkpoint):
    def reshape(sd):
        key = last_weight(sd, "h_s")
        sd[key] = torch.zeros(sd[key].shape[0], sd[key].shape[1] + 1, *sd[key].shape[2:])

    with pytest.raises(ModelError) as refused:
        load_checkpoint(broken_checkpoint(tmp_path, tiny_checkpoint, reshape))
    message = str(refused.value)
    assert "h_s.4.weight has shape [48, 37, 3, 3], the architecture needs [48, 36, 3, 3]" in message, message
    with pytest.raises(ModelError, match="missing weight"):
        load_checkpoint(broken_checkpoint(tmp_path, tiny_checkpoint, lambda sd: sd.pop("h_s.2.weight")))
    # channel counts no CompressAI model has are refused before the model is built (N x N weights)
    def huge(sd):
        sd["g_a.0.weight"] = torch.zeros(5000, 3, 5, 5)

    with pytest.raises(ModelError, match="more channels than any CompressAI model"):
        load_checkpoint(broken_checkpoint(tmp_path, tiny_checkpoint, huge))


def test_checkpoint_errors_are_one_whole_line_without_pytorchs_advice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": Payload()}, evil)
    cut = tmp_path / "cut.pth"
    buf = __import__("io").BytesIO()
    torch.save({"w": torch.zeros(1000)}, buf)
    cut.write_bytes(buf.getvalue()[:2000])
    for path, why in ((evil, "pickled objects other than tensors"), (cut, "damaged or truncated")):
        with pytest.raises(ModelError) as refused:
            load_checkpoint(path)
        message = str(refused.value)
        assert why in message and "weights_only" not in message and "\n" not in message, message
        assert not message.rstrip().endswith((":", ",")), message


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """torch.hub with an empty cache and a 'network' that serves a small mbt2018-mean: downloads
    lists the URLs fetched. torch.hub's own code runs (its messages included)."""
    from compressai.zoo.image import model_architectures

    torch.hub.set_dir(str(tmp_path / "hub"))
    torch.manual_seed(0)
    state = model_architectures["mbt2018-mean"](16, 24).state_dict()
    downloads = []

    def download(url, dst, hash_prefix=None, progress=True):
        downloads.append(url)
        torch.save(state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    yield downloads
    torch.hub.set_dir(str(tmp_path / "unused"))


def test_torch_hub_messages_never_reach_stdout(fake_hub, capfd):
    """torch.hub prints 'Downloading: ...' on stdout, where -o - writes a bitstream and --json records."""
    load_zoo("mbt2018-mean", 1)
    out, err = capfd.readouterr()
    assert fake_hub and out == "" and "Downloading" in err


def test_decoding_never_downloads_unless_allowed(fake_hub, monkeypatch):
    model = load_zoo("mbt2018-mean", 1)
    [report] = encode(model, [make_image(32, 32)], RefineConfig(method="none"))
    zoo_cache_path("mbt2018-mean", 1).unlink()
    fake_hub.clear()
    with pytest.raises(ModelError, match="not in the local cache .* --allow-download"):
        decode(report.data)
    assert not fake_hub
    assert np.array_equal(decode(report.data, allow_download=True).rgb, report.recon) and fake_hub
    zoo_cache_path("mbt2018-mean", 1).unlink()
    monkeypatch.setenv("SGACODEC_ALLOW_DOWNLOAD", "1")
    assert np.array_equal(decode(report.data).rgb, report.recon)
