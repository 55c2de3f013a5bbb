"""Does refining with TF32 means change which y symbols the coder writes?

The refined y is continuous; the coder rounds y - mu with the coding network's float64 means,
while a GPU refinement judges its iterates with TF32 means. This emulates TF32 on the CPU (h_s's
convolution inputs and weights rounded to TF32's 10 mantissa bits, float32 accumulation), refines
one center crop with SSL on the CPU, and prints how many symbols round(y - mu) differ from the
coder's, for float32 and emulated-TF32 means, refined and unrefined.

    OMP_NUM_THREADS=1 python benchmarks/tf32_symbols.py --quality 2 --crop 256 --iterations 200
"""

import argparse
import copy

import torch
import torch.nn.functional as F

from sgacodec.codec import encoder as codec
from sgacodec.config import RefineConfig
from sgacodec.files.images import center_crop, read_image
from sgacodec.models.loading import load_model
from sgacodec.network.latent_model import LatentModel
from sgacodec.refinement.loop import refine_latents as refine


def to_tf32(t: torch.Tensor) -> torch.Tensor:
    """Round float32 to TF32 (10 explicit mantissa bits), to nearest."""
    bits = t.float().contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


class TF32Conv(torch.nn.Module):
    """A convolution whose input and weight are rounded to TF32, as on a GPU's tensor cores."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        c = self.conv
        if isinstance(c, torch.nn.ConvTranspose2d):
            return F.conv_transpose2d(to_tf32(x), to_tf32(c.weight), c.bias, c.stride, c.padding,
                                      c.output_padding)
        return F.conv2d(to_tf32(x), to_tf32(c.weight), c.bias, c.stride, c.padding)


def tf32_h_s(net):
    h_s = copy.deepcopy(net.h_s)
    for name, module in list(h_s.named_children()):
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            setattr(h_s, name, TF32Conv(module))
    return h_s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", default="/work/shared/datasets/kodak/kodim04.png")
    ap.add_argument("--quality", type=int, default=2, help="embedded model")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=200)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = load_model(quality=a.quality)
    lm = LatentModel(model.net)
    if lm.has_context:
        raise SystemExit("a mean-scale model without context is needed")
    image = center_crop(read_image(a.image), a.crop)
    x = codec.pad(codec.to_tensor(image))
    with torch.no_grad():
        y0, z0 = lm.analysis(x)
    result = refine(lm, x, image.shape[:2], model.lmbda,
                    RefineConfig(method="ssl", iterations=a.iterations), y0, z0)
    coding = codec.coding_net(model, 2)
    h_s_tf32 = tf32_h_s(model.net)
    print(f"model msh-q{a.quality}, {a.image} cropped to {image.shape[1]}x{image.shape[0]}, "
          f"SSL {a.iterations} iterations on the CPU")
    with torch.no_grad():
        for label, y, z in (("refined", result.y, result.z), ("unrefined", y0, z0)):
            z_hat = lm.z_hard(z)
            mu64 = coding.h_s(z_hat.double()).chunk(2, 1)[1]
            coded = torch.round(y.double() - mu64)  # what the coder writes
            for name, h_s in (("float32", model.net.h_s), ("TF32 (emulated)", h_s_tf32)):
                mu = h_s(z_hat).chunk(2, 1)[1]
                differ = int((torch.round(y - mu).double() != coded).sum())
                print(f"{label:9s} {name:15s} max |mu - mu64| {(mu.double() - mu64).abs().max():.2e}; "
                      f"symbols rounded differently: {differ} of {coded.numel()}")


if __name__ == "__main__":
    main()
