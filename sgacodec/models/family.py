"""Rate points: the models among which encoding to a target chooses (codec/targets.py)."""

from __future__ import annotations

from ..config import DEFAULT_MODEL
from ..errors import ModelError
from .embedded import embedded_manifest, load_embedded
from .loaded import LoadedModel
from .loading import load_model
from .zoo import load_zoo
from .zoo_table import METRICS, ZOO, ZOO_NAMES


class ModelFamily:
    """The rate points among which a target's model is chosen, lowest rate (lambda) first, each
    loaded on first use: the embedded models, a zoo model's qualities, or one pinned model."""

    def __init__(self, names: list[str], loaders: list, identity: str, loaded: dict | None = None):
        self.names, self._loaders, self.identity = list(names), list(loaders), identity
        self._loaded: dict[int, LoadedModel] = dict(loaded or {})

    def __len__(self) -> int:
        return len(self._loaders)

    def __getitem__(self, index: int) -> LoadedModel:
        if index not in self._loaded:
            self._loaded[index] = self._loaders[index]()
        return self._loaded[index]

    @classmethod
    def single(cls, model: LoadedModel) -> "ModelFamily":
        return cls([model.describe()], [lambda: model], model.identity.weights_sha.hex(), {0: model})

    @classmethod
    def embedded(cls) -> "ModelFamily":
        entries = sorted(embedded_manifest()["models"], key=lambda m: m["lmbda"])
        if not entries:
            raise ModelError("this build ships no embedded model; use --model NAME or --checkpoint FILE")
        return cls([f"embedded {m['name']} q{m['quality']}" for m in entries],
                   [lambda q=m["quality"]: load_embedded(q) for m in entries],
                   "embedded:" + ",".join(m["sha256"][:16] for m in entries))

    @classmethod
    def zoo(cls, name: str, metric: str = "mse") -> "ModelFamily":
        qualities = range(1, ZOO[name].qualities + 1)
        return cls([f"zoo {name} q{q}" for q in qualities],
                   [lambda q=q: load_zoo(name, q, metric) for q in qualities], f"zoo:{name}:{metric}")


def load_family(model: str = DEFAULT_MODEL, quality: int | None = None, metric: str = "mse",
                checkpoint=None, architecture: str | None = None) -> ModelFamily:
    """The models a target may choose from: the one asked for when pinned (a checkpoint or a
    quality), else every rate point of the embedded models or of the zoo model."""
    if checkpoint is not None or quality is not None:
        return ModelFamily.single(load_model(model, quality, metric, checkpoint, architecture))
    if model in (None, DEFAULT_MODEL):
        return ModelFamily.embedded()
    if model not in ZOO_NAMES or metric not in METRICS:
        raise ModelError(f"unknown model {model!r} or metric {metric!r}; choose from "
                         f"{', '.join(ZOO_NAMES)} or 'default', and {' or '.join(METRICS)}")
    return ModelFamily.zoo(model, metric)
