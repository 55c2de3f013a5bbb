"""The coding network: what both sides of a file compute (docs/method.md, "Entropy coding"; the
file format, docs/format.md), one per model and format version (``coding_net``).

Versions 2 and 3: a copy of the model whose hyper-synthesis h_s and synthesis g_s run in float64
(``InFloat64``, with their convolutions by minimal filtering, winograd.py, and g_s's GDN layers
as matrix products, ``MatmulGDN``), with the GaussianConditional's scale table and both
entropy models' rANS tables computed in float64 (cached, table_cache.py), so that every CPU
computes the same scale indexes and pixels. Version 1: the model itself with CompressAI's own
float32 tables (``with_float32_tables``).
"""

from __future__ import annotations

import copy
import hashlib
import math
import weakref

import torch

from . import table_cache, winograd
from .compressai_import import installed_version


class InFloat64(torch.nn.Module):
    """``module`` (converted in place) computed in float64, its output returned in the input's dtype.

    Two CPUs (other instruction set, other oneDNN kernel) sum a float32 convolution in different
    orders and differ by ~1e-7 relative; an h_s scale that lands on a scale-table boundary then
    picks another index and the decoder desynchronises, and a g_s output near k + 1/2 rounds to
    another pixel value. In float64 the differences are ~1e-16, too small to reach a boundary in
    practice (docs/format.md gives the measurement).
    """

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.double()).to(x.dtype)


class MatmulGDN(torch.nn.Module):
    """CompressAI's GDN or inverse GDN ``gdn`` (sharing its parameters) computed with its 1x1
    convolution as one matrix product per band of a few rows (``PIXELS``, so that the squares and
    the norms stay in cache): the same float64 operations as GDN.forward
    (``x * sqrt(beta + gamma x^2)``, rsqrt for GDN) with less memory traffic, which float64 on the
    CPU is bound by (docs/performance.md)."""

    PIXELS = 1024  # pixels per pass

    def __init__(self, gdn: torch.nn.Module):
        super().__init__()
        self.gdn = gdn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gdn = self.gdn
        beta, gamma = gdn.beta_reparam(gdn.beta), gdn.gamma_reparam(gdn.gamma)
        channels, height, width = x.shape[1:]
        out = x.new_empty(x.shape)
        rows = max(1, self.PIXELS // max(width, 1))  # a few rows at a time: the pass stays in cache
        square = x.new_empty(channels, rows * width)
        norm = x.new_empty(channels, rows * width)
        for b in range(x.size(0)):
            for r0 in range(0, height, rows):
                n = min(rows, height - r0) * width
                crop, sq, nm = x[b, :, r0 : r0 + rows], square[:, :n], norm[:, :n]
                torch.mul(crop, crop, out=sq.view(crop.shape))
                torch.addmm(beta[:, None], gamma, sq, out=nm)
                nm.sqrt_() if gdn.inverse else nm.rsqrt_()
                torch.mul(nm.view(crop.shape), crop, out=out[b, :, r0 : r0 + rows])
        return out


def gdn_by_matmul(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with each CompressAI GDN inside it (not its subclasses) replaced, in place, by
    a MatmulGDN sharing its parameters; ``module`` itself when it is one."""
    from compressai.layers import GDN

    if type(module) is GDN:
        return MatmulGDN(module)
    for name, child in list(module.named_children()):
        setattr(module, name, gdn_by_matmul(child))
    return module


def float64_coding_net(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` for file format version 2, computing in float64 whatever CompressAI
    computes at load time or while coding, so that every CPU gets the same numbers:

    - h_s and g_s run in float64 (``InFloat64``; their 5 x 5 transposed and 3 x 3 convolutions
      by minimal filtering, winograd.py, any other transposed convolution one matrix product per
      kernel tap, deconv.py, and g_s's GDN layers as matrix products, ``MatmulGDN``: faster in
      float64 than PyTorch's kernels);
    - the GaussianConditional's scale table, exp(linspace(ln 0.11, ln 256, 64)) (CompressAI's
      ``get_scale_table``, which ``update()`` recomputes in float32), is computed in float64 and
      rounded to float32;
    - the rANS tables (quantized CDFs) of both entropy models are those their own ``update()``
      computes from float64 densities (``float64_coder_tables``: cached in the user's cache
      folder, see table_cache.py). The model's own float32 tables are not needed for this, and are not
      built (``with_float32_tables`` builds them for version 1 files).

    Each of these, left in float32, made files undecodable on an emulated other CPU: see
    docs/format.md. CompressAI's compress()/decompress() are unchanged. For the context models
    (mbt2018, cheng2020-*) CompressAI's autoregressive coder runs the context convolution and
    entropy_parameters itself, in float32.
    """
    from compressai.models.google import SCALES_LEVELS, SCALES_MAX, SCALES_MIN

    coding = copy.deepcopy(net).requires_grad_(False)  # the coding side never backpropagates
    coding.h_s = InFloat64(winograd.by_winograd(coding.h_s))  # coding's own copies: the model stays float32
    coding.g_s = InFloat64(gdn_by_matmul(winograd.by_winograd(coding.g_s)))
    gc = coding.gaussian_conditional
    gc.scale_table = torch.exp(torch.linspace(math.log(SCALES_MIN), math.log(SCALES_MAX), SCALES_LEVELS,
                                              dtype=torch.float64)).float()
    entropy_models = {"entropy_bottleneck": coding.entropy_bottleneck, "gaussian_conditional": gc}
    tables = float64_coder_tables(entropy_models)
    for name, entropy_model in entropy_models.items():
        for table in CODER_TABLES:
            setattr(entropy_model, table, tables[f"{name}.{table}"])
    return coding


CODER_TABLES = ("_quantized_cdf", "_offset", "_cdf_length")  # an entropy model's rANS tables
TABLES_SCHEME = 1  # how sgacodec computes the float64 tables; a change must bump it (cache key)


def without_coder_tables(state_dict: dict) -> dict:
    """The state dict with the entropy models' rANS tables emptied (~0.8 MB for the shipped
    models): every loader rebuilds them, so stored copies are never used."""
    return {k: v[:0] if k.rsplit(".", 1)[-1] in CODER_TABLES else v for k, v in state_dict.items()}


_WITH_FLOAT32_TABLES: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


def with_float32_tables(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with CompressAI's own float32 coder tables (``update(force=True)``, in place, once
    per model): what file version 1 codes with, and what CompressAI's compress() on the model
    itself needs. Loading does not build them (models/): versions 2 and 3 never use them."""
    if net not in _WITH_FLOAT32_TABLES:
        net.update(force=True)
        _WITH_FLOAT32_TABLES.add(net)
    return net


def float64_coder_tables(entropy_models: dict) -> dict[str, torch.Tensor]:
    """The rANS tables, ``"<name>.<table>"``, that each entropy model's own ``update()`` computes
    from float64 copies of its parameters and scale table: read from the user's cache when it holds
    them for exactly these parameters and versions (``coder_tables_key``), else computed and cached.
    A cached file is used only if its hash and structure check (``valid_coder_tables``)."""
    return table_cache.tensors("coder-tables", coder_tables_key(entropy_models),
                         lambda: _compute_float64_tables(entropy_models),
                         lambda tables: valid_coder_tables(tables, entropy_models))


def coder_tables_key(entropy_models: dict) -> str:
    """A name for everything the float64 tables are computed from: each entropy model's class,
    settings and tensors (less its tables), and the versions of the code that computes them
    (sgacodec's scheme, torch, CompressAI, scipy)."""
    h = hashlib.sha256()
    versions = {"scheme": TABLES_SCHEME, "torch": torch.__version__,
                **{name: installed_version(name) for name in ("compressai", "scipy")}}
    h.update(repr(sorted(versions.items())).encode())
    for name, em in entropy_models.items():
        settings = {k: v for k, v in vars(em).items() if isinstance(v, (bool, int, float, str, tuple))}
        h.update(f"{name}\0{type(em).__module__}.{type(em).__qualname__}\0{sorted(settings.items())!r}".encode())
        for key, value in sorted(em.state_dict().items()):
            if key.rsplit(".", 1)[-1] not in CODER_TABLES:
                value = value.detach().cpu().contiguous()
                h.update(f"\0{key}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
                h.update(value.numpy().tobytes())
    return "float64-" + h.hexdigest()[:48]


def _compute_float64_tables(entropy_models: dict) -> dict[str, torch.Tensor]:
    from compressai.entropy_models import EntropyBottleneck

    tables = {}
    for name, entropy_model in entropy_models.items():
        em64 = copy.deepcopy(entropy_model).double()  # floating-point parameters and buffers only
        if isinstance(em64, EntropyBottleneck):
            em64.update(force=True)
        else:
            em64.update()
        tables.update({f"{name}.{table}": getattr(em64, table).clone() for table in CODER_TABLES})
    return tables


def valid_coder_tables(tables: dict, entropy_models: dict) -> bool:
    """Whether ``tables`` are rANS tables the coder can use for these entropy models: one int32
    CDF row per channel (EntropyBottleneck) or scale (GaussianConditional), each from 0 up to
    2^precision, strictly increasing, within its row; so a table read from disk cannot make the
    coder index out of its rows."""
    from compressai.entropy_models import EntropyBottleneck

    if set(tables) != {f"{name}.{table}" for name in entropy_models for table in CODER_TABLES}:
        return False
    for name, em in entropy_models.items():
        cdf, offset, length = (tables[f"{name}.{table}"] for table in CODER_TABLES)
        rows = em.channels if isinstance(em, EntropyBottleneck) else em.scale_table.numel()
        if (any(t.dtype != torch.int32 for t in (cdf, offset, length)) or cdf.dim() != 2
                or cdf.shape[0] != rows or offset.shape != (rows,) or length.shape != (rows,)):
            return False
        if rows == 0 or int(length.min()) < 2 or int(length.max()) > cdf.shape[1]:
            return False
        inside = torch.arange(cdf.shape[1] - 1) < (length[:, None] - 1)
        steps = cdf[:, 1:] - cdf[:, :-1]
        last = cdf.gather(1, (length[:, None] - 1).long())[:, 0]
        if (cdf[:, 0] != 0).any() or (steps[inside] <= 0).any() or (last != 1 << em.entropy_coder_precision).any():
            return False
    return True


_CODING_NETS: "weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module]" = weakref.WeakKeyDictionary()


def coding_net(net: torch.nn.Module, version: int) -> torch.nn.Module:
    """The CPU network that codes and decodes files of this format version for the model ``net``.

    Versions 2 and 3: a copy of the model with h_s, g_s, the scale table and the rANS tables
    computed in float64 (``float64_coding_net``), made once per model. In float32 (version 1: the
    model itself, with CompressAI's float32 tables) another CPU's rounding moved scale indexes or
    table entries and the decoder desynchronised: 12 to 24 of the 24 Kodak files of each shipped
    model failed to decode on an emulated other CPU; in float64 all decoded to the encoder's
    pixels (docs/format.md).
    """
    if version < 2:
        return with_float32_tables(net)
    coding = _CODING_NETS.get(net)
    if coding is None:
        coding = _CODING_NETS[net] = float64_coding_net(net)
    return coding
