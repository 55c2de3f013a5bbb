"""A loaded model and the identity a file records for it (container.py writes ``ModelId``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError


@dataclass(frozen=True)
class ModelId:
    kind: str  # zoo | embedded | checkpoint
    name: str  # zoo name, embedded model name, or architecture of a checkpoint
    metric: str = "mse"
    quality: int = 0  # 0 when not applicable
    weights_sha: bytes = bytes(8)  # first 8 bytes of the weights' sha256

    def describe(self) -> str:
        q = f" q{self.quality}" if self.quality else ""
        return f"{self.kind} {self.name}{q} ({self.metric}, weights {self.weights_sha.hex()})"


@dataclass
class LoadedModel:
    net: object  # a compressai ScaleHyperprior subclass, CPU, float32, eval; no coder tables
    # (the coding network builds its own: network/coding_net.py)
    identity: ModelId
    lmbda: float | None  # training lambda, when known

    def resolve_lmbda(self, lmbda: float | None = None, scale: float = 1.0) -> float:
        """The inference lambda: ``lmbda`` when given, else ``scale`` x the training lambda."""
        if lmbda is not None:
            return float(lmbda)
        if self.lmbda is None:
            raise ModelError("the model's training lambda is unknown; pass --lmbda")
        return self.lmbda * scale

    def describe(self) -> str:
        """'embedded msh-q2 q2': kind, name and quality, for tables and records."""
        ident = self.identity
        return f"{ident.kind} {ident.name}" + (f" q{ident.quality}" if ident.quality else "")
