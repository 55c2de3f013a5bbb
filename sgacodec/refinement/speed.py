"""The refinement loop's speed options (docs/performance.md), none of which changes what a file
decodes to (the bitstream is always coded on the CPU by the coding network):

- ``compile``: the relaxed and the true loss through ``torch.compile`` (default: on CUDA only,
  ``compile_mode``); any compiler failure falls back to eager for good, with one warning
  (``CompiledSteps``);
- ``precision``: fp32, TF32 (PyTorch's default for CUDA convolutions; ``precision_scope``) or bf16
  autocast of the relaxed pass's transforms only (``autocast``);
- ``channels_last``: the device copy of the network in NHWC (loop.frozen).
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from ..config import COMPILE_MODES, RefineConfig, environ


def autocast(x: torch.Tensor, precision: str):
    """bf16 autocast for the transforms (g_s, h_s) only; a no-op otherwise."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, dtype=torch.bfloat16)


_compile_failed = False  # set once torch.compile has failed in this process: eager from then on


def compile_mode(config: RefineConfig, device: torch.device) -> str | None:
    """The torch.compile mode refinement will use on ``device`` (None: eager)."""
    mode = config.compile
    if mode == "auto":  # SGACODEC_COMPILE overrides the automatic choice (e.g. off, reduce-overhead)
        mode = environ("SGACODEC_COMPILE") or ("default" if device.type == "cuda" else "off")
        if mode not in COMPILE_MODES or mode == "auto":
            raise ValueError(f"SGACODEC_COMPILE: choose from {', '.join(COMPILE_MODES[1:])}")
    if mode == "off" or _compile_failed:
        return None
    return mode


@contextlib.contextmanager
def precision_scope(device: torch.device, precision: str):
    """TF32 on or off for CUDA convolutions and matmuls while refining (restored afterwards)."""
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    allow = precision != "fp32"
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


class CompiledSteps:
    """The two loss functions of a step, ``relaxed`` (a scalar to backpropagate) and ``true`` (a
    tuple of per-image terms), compiled when ``mode`` is a torch.compile mode; the first
    compiler failure reverts to eager for good."""

    def __init__(self, mode: str | None, relaxed, true):
        self.mode = mode
        self.eager = relaxed, true
        self.relaxed, self.true = relaxed, true
        if mode is not None:
            self.relaxed = torch.compile(relaxed, mode=mode, dynamic=False)
            self.true = torch.compile(true, mode=mode, dynamic=False)
        self.checked = {"relaxed": mode is None, "true": mode is None}

    def _fail(self, exc: Exception):
        global _compile_failed
        _compile_failed = True
        warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); "
                      "refining in eager mode", RuntimeWarning, stacklevel=3)
        self.relaxed, self.true = self.eager
        self.checked = {"relaxed": True, "true": True}

    def backward(self, optimiser, *args):
        optimiser.zero_grad(set_to_none=True)
        if self.checked["relaxed"]:
            self.relaxed(*args).backward()
            return
        try:
            self.relaxed(*args).backward()
            self.checked["relaxed"] = True
        except torch.cuda.OutOfMemoryError:
            raise  # not a compiler problem: the caller splits the batch
        except Exception as exc:  # any compiler error: fall back, stay correct
            self._fail(exc)
            optimiser.zero_grad(set_to_none=True)
            self.relaxed(*args).backward()

    def evaluate(self, *args) -> tuple:
        if not self.checked["true"]:
            try:
                out = self.true(*args)
                self.checked["true"] = True
                return out
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as exc:  # any compiler error, as above
                self._fail(exc)
        return self.true(*args)


