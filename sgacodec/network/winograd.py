"""Convolutions in float64 with half the multiplications: Winograd's minimal filtering.

The coding network runs h_s and g_s in float64 (coding_net.py), where the CPU has no fast
convolution kernel and the time goes into matrix products. Along one axis, output phase a of a
stride-s transposed convolution is a correlation of the input with that phase's r consecutive
kernel taps g: out[s i + a] = sum_j g_j x[i + d_a + j] (a stride-1 convolution is one phase).
Minimal filtering F(2, r) (Winograd; Lavin and Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016) gives two consecutive outputs from r + 1 inputs with r + 1 products
instead of 2 r:

    y = A^T [(G g) * (B^T d)]                       F(2,3): 4 products for 6; F(2,2): 3 for 4

In 2-D, per phase (a, b) and per 2 x 2 block of its outputs, Y = A_a^T [U * V] A_b with
U = G_a g G_b^T (the weights, transformed once) and V = B_a^T d B_b (the input). Over the
channels each of the (r_a + 1)(r_b + 1) points is one matrix product (out x in) by (in x blocks).
The matrices hold only 0, +-1 and 1/2 (interpolation points 0, 1, -1 and infinity), so the
transforms add no rounding beyond the sums' own: the results differ from PyTorch's float64 ones
by about 2e-15, less than kernel taps' 5e-15 (deconv.py; tests/test_winograd.py). A 5 x 5
stride-2 layer (CompressAI's deconv) has phases of 3 x 3, 3 x 2, 2 x 3 and 2 x 2 taps: 49
products per 2 x 2 input block for the taps' 100; a 3 x 3 convolution 16 per 2 x 2 block for 36.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import deconv

# F(2, r): (B^T [n x n], G [n x r], A^T [2 x n]), n = r + 1, for y_i = sum_j g_j d_{i + j}, i = 0, 1
MINIMAL_FILTERING = {
    1: ([[1, 0], [0, 1]], [[1], [1]], [[1, 0], [0, 1]]),
    2: ([[1, -1, 0], [0, 1, 0], [0, -1, 1]], [[1, 0], [1, 1], [0, 1]], [[1, 1, 0], [0, 1, 1]]),
    3: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
}


def phases(layer: torch.nn.Module) -> list[tuple[int, list[int]]] | None:
    """Along one axis, per output phase: (offset d of its first input, its kernel indexes in input
    order), for a ConvTranspose2d that deconv.TapConvTranspose2d computes or a stride-1 "same"
    3 x 3 Conv2d; None for any other layer or when a phase's taps are not 1 to 3 consecutive."""
    if deconv.supported(layer):
        found = []
        for taps in deconv.TapConvTranspose2d(layer).taps:
            taps = sorted(taps, key=lambda tap: tap[1])
            offsets = [d for _, d in taps]
            if not 1 <= len(taps) <= 3 or offsets != list(range(offsets[0], offsets[0] + len(taps))):
                return None
            found.append((offsets[0], [t for t, _ in taps]))
        return found
    if (type(layer) is torch.nn.Conv2d and layer.kernel_size == (3, 3) and layer.stride == (1, 1)
            and layer.padding == (1, 1) and layer.dilation == (1, 1) and layer.groups == 1
            and layer.padding_mode == "zeros"):
        return [(-1, [0, 1, 2])]
    return None


def _combine(terms, out: torch.Tensor) -> torch.Tensor:
    """out = sum of c t over ``terms`` (c, t), every c +-1, added in the order given."""
    (c0, t0), rest = terms[0], terms[1:]
    if not rest:
        return out.copy_(t0) if c0 == 1 else torch.neg(t0, out=out)
    (c1, t1), rest = rest[0], rest[1:]
    if c0 == 1:
        torch.add(t0, t1, alpha=c1, out=out)
    elif c1 == 1:
        torch.sub(t1, t0, out=out)
    else:
        torch.add(t0, t1, out=out).neg_()
    for c, t in rest:
        out.add_(t, alpha=c)
    return out


def _shifted(coefs, offset: int, start: int, views: dict, view_of) -> list:
    """The terms (c, view) of sum_i c_i d[2 u + offset + i] along one axis of the even/odd split
    input: padded index 2 u + o is index u + o // 2 of parity o % 2, so each term is
    ``view_of(parity, start + o // 2)``, made once per key and kept in ``views``."""
    terms = []
    for i, c in enumerate(coefs):
        if c:
            o = offset + i
            key = (o % 2, start + o // 2)
            if key not in views:
                views[key] = view_of(*key)
            terms.append((c, views[key]))
    return terms


class WinogradConv(torch.nn.Module):
    """The function of ``layer`` (one that ``phases`` accepts, sharing its weight and bias), each
    output phase computed by 2-D minimal filtering F(2 x 2, r_a x r_b)."""

    BLOCKS = 640  # 2 x 2 blocks transformed per pass: bounds the transforms' memory

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        found = phases(layer)
        if found is None:
            raise ValueError(f"minimal filtering does not compute {layer}")
        self.layer, self.phases = layer, found
        self.transposed = isinstance(layer, torch.nn.ConvTranspose2d)
        self._weights = (None, None)  # (what the weights were transformed from, the transformed)

    def transformed_weights(self, dtype: torch.dtype) -> dict:
        """{(a, b): U [n_a n_b, out, in]}, U = G_a g G_b^T for each phase (a, b), recomputed only
        when the layer's weight changes."""
        weight = self.layer.weight
        key = (weight.data_ptr(), weight._version, weight.dtype, dtype)
        if self._weights[0] == key:
            return self._weights[1]
        w = weight.detach().to(dtype)
        w = w.transpose(0, 1) if self.transposed else w  # [out, in, k, k]
        weights = {}
        for a, (_, rows) in enumerate(self.phases):
            for b, (_, cols) in enumerate(self.phases):
                g = w[:, :, rows][:, :, :, cols]  # [out, in, r_a, r_b]
                ga = torch.tensor(MINIMAL_FILTERING[len(rows)][1], dtype=dtype)
                gb = torch.tensor(MINIMAL_FILTERING[len(cols)][1], dtype=dtype)
                u = torch.einsum("ki,ocij,lj->kloc", ga, g, gb)
                weights[a, b] = u.reshape(-1, *u.shape[2:]).contiguous()
        self._weights = (key, weights)
        return weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_window(x)

    def forward_window(self, x: torch.Tensor, window=None) -> torch.Tensor:
        """The layer's output over ``window`` ((r0, r1), (c0, c1)), half-open, inside its whole
        output; None: the whole output. Only the 2 x 2 blocks of each phase that the window meets
        are computed (network/tiling.py asks for the outputs it keeps, not the crop's whole output),
        with the whole output's sums; the matrix products' kernels may order them differently for
        another width, so values can differ from the whole output's by rounding (~1e-16)."""
        weights = self.transformed_weights(x.dtype)
        if x.size(0) == 1:
            return self._one(x[0], weights, window)[None]
        return torch.stack([self._one(image, weights, window) for image in x])

    def _one(self, x: torch.Tensor, weights: dict, window) -> torch.Tensor:
        """One image [in, h, w] -> its output [out, s h, s w], or the ``window`` of it."""
        cin, h, w = x.shape
        s, bias = len(self.phases), self.layer.bias
        cout = self.layer.weight.shape[1 if self.transposed else 0]
        (r0, r1), (c0, c1) = window or ((0, s * h), (0, s * w))
        if not (0 <= r0 < r1 <= s * h and 0 <= c0 < c1 <= s * w):
            raise ValueError(f"window {window} is not inside the output {s * h}x{s * w}")
        th, tw = -(-h // 2), -(-w // 2)  # 2 x 2 output blocks per phase
        u_lo, u_hi, v_lo, v_hi = r0 // (2 * s), -(-r1 // (2 * s)), c0 // (2 * s), -(-c1 // (2 * s))  # blocks met
        first = min(d for d, _ in self.phases)
        lo = -first + (-first) % 2  # even: padded row 2 u + o is row u + o // 2 of row parity o % 2
        reach = max(d + len(taps) for d, taps in self.phases) + 1  # how far past 2 u a block reads
        hp, wp = 2 * th + lo + reach, 2 * tw + lo + reach
        hp, wp = hp + hp % 2, wp + wp % 2
        padded = F.pad(x, (lo, wp - w - lo, lo, hp - h - lo))
        poly = padded.view(cin, hp // 2, 2, wp // 2, 2).permute(2, 4, 0, 1, 3).contiguous()  # [2, 2, in, ., .]
        nu, nv = u_hi - u_lo, v_hi - v_lo
        out = x.new_empty(cout, nu, 2, s, nv, 2, s)  # [out, u, i, a, v, j, b]: pixel ((2u+i)s+a, (2v+j)s+b)
        passes = -(-nu * nv // self.BLOCKS)
        rows = -(-nu // passes)  # block rows per pass
        most = max(len(taps) + 1 for _, taps in self.phases) ** 2 * max(cin, cout) * min(rows, nu) * nv
        scratch = [poly.new_empty(most) for _ in range(3)]  # reused by every pass and phase
        for u0 in range(u_lo, u_hi, rows):
            self._pass(poly, weights, out, u0, min(u_hi, u0 + rows), u_lo, v_lo, lo, scratch)
        if bias is not None:
            out.add_(bias.to(x.dtype).view(cout, 1, 1, 1, 1, 1, 1))
        top, left = u_lo * 2 * s, v_lo * 2 * s
        return out.view(cout, nu * 2 * s, nv * 2 * s)[:, r0 - top : r1 - top, c0 - left : c1 - left]

    def _pass(self, poly, weights, out, u0, u1, u_lo, v_lo, lo, scratch) -> None:
        """Block rows [u0, u1) of the output, columns from v_lo on, into ``out`` (whose first block
        is (u_lo, v_lo)), from the polyphase padded input ``poly``. Each sum of the transforms is
        one operation over every point of the other axis (and both column parities), and each view
        is made once: fewer operations, whose Python-side work (done holding the interpreter lock)
        measured about 5% of the decode with two workers (docs/performance.md)."""
        cin, cout, n, tw = poly.size(2), out.size(0), u1 - u0, out.size(4)
        row_views = {}  # (row parity, first block row) -> poly[parity, :, :, n rows]
        rows = {}  # B_a^T d per row phase a: [n_a, 2 (column parity), in, n, padded columns / 2]
        for a, (d, taps) in enumerate(self.phases):
            bt = MINIMAL_FILTERING[len(taps)][0]
            rows[a] = poly.new_empty(len(bt), 2, cin, n, poly.size(4))
            for k, coefs in enumerate(bt):
                _combine(_shifted(coefs, d + lo, u0, row_views, lambda q, r: poly[q, :, :, r : r + n]), rows[a][k])
        line = scratch[0][: 2 * cout * n * tw].view(2, cout, n, tw)  # a contiguous partial sum (below)
        targets = out[:, u0 - u_lo : u1 - u_lo].permute(2, 3, 6, 5, 0, 1, 4)  # [i, a, b, j, out, u, v]
        for a, (_, row_taps) in enumerate(self.phases):
            at_a = MINIMAL_FILTERING[len(row_taps)][2]
            by_parity = rows[a].unbind(1)
            col_views = {}  # (column parity, first block column) -> rows[a][:, parity, ..., tw columns]
            for b, (d, col_taps) in enumerate(self.phases):
                bt, _, at_b = MINIMAL_FILTERING[len(col_taps)]
                na, nb = len(at_a[0]), len(bt)
                v = scratch[0][: na * nb * cin * n * tw].view(na, nb, cin, n, tw)  # B_a^T d B_b
                for v_m, coefs in zip(v.unbind(1), bt):  # every row point k at once
                    _combine(_shifted(coefs, d + lo, v_lo, col_views,
                                      lambda q, c, parts=by_parity: parts[q][..., c : c + tw]), v_m)
                products = scratch[1][: na * nb * cout * n * tw].view(na * nb, cout, n * tw)  # U * V
                torch.bmm(weights[a, b], v.view(na * nb, cin, n * tw), out=products)
                products = products.view(na, nb, cout, n, tw).unbind(1)
                half = scratch[2][: na * 2 * cout * n * tw].view(na, 2, cout, n, tw)  # [U * V] A_b
                for j, half_j in enumerate(half.unbind(1)):
                    _combine([(c, products[m]) for m, c in enumerate(at_b[j]) if c], half_j)
                half_k = half.unbind(0)  # [2 (column point j), out, n, tw] per row point k
                for i in range(2):
                    terms = [(c, half_k[k]) for k, c in enumerate(at_a[i]) if c]
                    target = targets[i, a, b]  # strided: every 2 s-th value, both column points j
                    if len(terms) > 2:  # the sum but its last term in ``line`` (v is spent), so that
                        (c, last), terms = terms[-1], terms[:-1]  # the strided target is written once
                        torch.add(_combine(terms, line), last, alpha=c, out=target)
                    else:
                        _combine(terms, target)


def by_winograd(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with each layer inside it that ``phases`` accepts replaced (in place) by a
    WinogradConv sharing its parameters, and each other transposed convolution that the taps
    compute faster by a deconv.TapConvTranspose2d; ``module`` itself when it is one."""
    if phases(module) is not None:
        return WinogradConv(module)
    if deconv.supported(module):
        return deconv.TapConvTranspose2d(module)
    for name, child in list(module.named_children()):
        setattr(module, name, by_winograd(child))
    return module
