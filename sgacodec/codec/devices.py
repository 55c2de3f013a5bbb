"""Where refinement runs: the device a user names, and the network's copy on it (made once per
model, device and memory layout)."""

from __future__ import annotations

import copy
import weakref

import torch

from ..errors import DeviceError
from ..models.loaded import LoadedModel
from ..network.latent_model import LatentModel


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' (CUDA when available, else the CPU), 'cpu', 'cuda' or 'cuda:N'."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name} requested but CUDA is not available")
    return device


def device_model(model: LoadedModel, device: torch.device, channels_last: bool | None = None) -> LatentModel:
    """The network for refinement: the CPU model itself, or a copy on the device (in channels_last
    there, unless ``channels_last`` is False; refinement.loop.frozen leaves the model as it found it)."""
    if device.type == "cpu":
        return LatentModel(model.net)
    net = copy.deepcopy(model.net).to(device)
    if channels_last is not False:
        net = net.to(memory_format=torch.channels_last)
    return LatentModel(net)


class DeviceNetworks:
    """The models' networks on devices, each made once (``device_model``) and kept while this
    object lives: an encoder's batches, and a target's search over several rate points, share
    them."""

    def __init__(self):
        self._made: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()

    def get(self, model: LoadedModel, device: torch.device, channels_last: bool | None = None) -> LatentModel:
        per_model = self._made.setdefault(model.net, {})
        key = (str(device), channels_last)
        if key not in per_model:
            per_model[key] = device_model(model, device, channels_last)
        return per_model[key]
