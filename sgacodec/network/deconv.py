"""Transposed convolutions in float64 as one matrix product per kernel tap.

The coding network (float64.float64_coding_net) runs g_s in float64, and g_s is mostly
stride-2 transposed convolutions. PyTorch has no oneDNN kernel for float64: it multiplies the
input by the whole kernel into a columns buffer of (out_channels x k x k) rows, one per input
pixel, and folds that back (col2im). For g_s's 128 -> 128 channel, 5 x 5 layers that buffer is 25
times the output, and moving it costs more than the arithmetic (measured in docs/performance.md).

``TapConvTranspose2d`` computes the same sum without it. Output pixel (s i + a, s j + b) of a
stride-s transposed convolution receives only the kernel taps congruent to its phase (a, b):
each tap is one matrix product, (out x in) weights times the input shifted by that tap's offset,
accumulated in place into its phase's output. The products and sums are float64 as before, in
another order, so results differ from PyTorch's by rounding (about 1e-14 here), far below what
can move a pixel (files decode to the same pixels: tests/test_golden.py, docs/format.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supported(layer: torch.nn.Module) -> bool:
    """A ConvTranspose2d this class computes: square stride and kernel, output exactly stride x
    input, no groups or dilation, and a columns buffer larger than its input (out_channels x
    k x k > in_channels); otherwise PyTorch's own kernel is as fast."""
    if type(layer) is not torch.nn.ConvTranspose2d:
        return False
    (s, s2), (k, k2), (p, p2), (op, op2) = layer.stride, layer.kernel_size, layer.padding, layer.output_padding
    return (s == s2 and k == k2 and p == p2 and op == op2 and layer.groups == 1
            and layer.dilation == (1, 1) and layer.padding_mode == "zeros"
            and k - 2 * p + op == s and layer.out_channels * k * k > layer.in_channels)


class TapConvTranspose2d(torch.nn.Module):
    """The function of ``layer`` (a supported ConvTranspose2d, sharing its weight and bias),
    computed by one matrix product per kernel tap instead of a columns buffer."""

    def __init__(self, layer: torch.nn.ConvTranspose2d):
        super().__init__()
        if not supported(layer):
            raise ValueError("unsupported transposed convolution")
        self.layer = layer
        self.stride, self.kernel, self.padding = layer.stride[0], layer.kernel_size[0], layer.padding[0]
        s, k, p = self.stride, self.kernel, self.padding
        # taps[a]: (kernel index, input offset) of output phase a, along one axis
        self.taps = [[(t, (a + p - t) // s) for t in range(k) if (a + p - t) % s == 0] for a in range(s)]
        offsets = [d for phase in self.taps for _, d in phase]
        self.before, self.after = max(0, -min(offsets)), max(0, max(offsets))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.layer.weight, self.layer.bias
        n, cin, h, w = x.shape
        cout, s = weight.shape[1], self.stride
        lo, hi = self.before, self.after
        wp = w + lo + hi  # the padded row length: a shift by (dh, dw) is a shift of the flat index
        flat = F.pad(x, (lo, hi, lo, hi)).reshape(n, cin, -1)
        flat = F.pad(flat, (0, lo + hi))  # room for the last row's largest shift
        taps = weight.permute(2, 3, 1, 0).contiguous()  # [kh, kw, out, in]
        out = x.new_empty(n, cout, h, s, w, s)
        size = h * wp
        for b in range(n):
            for a, rows in enumerate(self.taps):
                for c, cols in enumerate(self.taps):
                    acc = (bias[:, None].expand(cout, size).clone() if bias is not None
                           else x.new_zeros(cout, size))
                    for kh, dh in rows:
                        for kw, dw in cols:
                            start = (dh + lo) * wp + dw + lo
                            acc.addmm_(taps[kh, kw], flat[b, :, start : start + size])
                    out[b, :, :, a, :, c] = acc.view(cout, h, wp)[:, :, :w]
        return out.view(n, cout, h * s, w * s)


def by_taps(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with each supported ConvTranspose2d inside it replaced (in place) by a
    TapConvTranspose2d sharing its parameters; ``module`` itself when it is one."""
    if supported(module):
        return TapConvTranspose2d(module)
    for name, child in list(module.named_children()):
        setattr(module, name, by_taps(child))
    return module
