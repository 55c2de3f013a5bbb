"""sgacodec: learned image compression with SGA+ latent refinement at encode time.

The heavy modules (torch, CompressAI) load on first use of the API, so ``import sgacodec`` and
``sgacodec --help`` stay fast.
"""

import warnings

__version__ = "0.1.0"

# CompressAI imports torchvision at package import (for its transform registry); a torchvision
# built for another PyTorch then warns that its image extension is missing. sgacodec never uses
# torchvision, so that one warning is noise on every command's stderr.
warnings.filterwarnings("ignore", message="Failed to load image Python extension", category=UserWarning)

_API = {
    "encode": "codec", "decode": "codec", "EncodeReport": "codec", "DecodeError": "codec",
    "ReconstructionMismatch": "codec",
    "load_model": "models", "load_checkpoint": "models", "load_zoo": "models",
    "load_embedded": "models", "ModelError": "models", "LoadedModel": "models",
    "RefineConfig": "refine", "refine": "refine", "read_image": "imageio",
    "BitstreamError": "bitstream",
}


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'sgacodec' has no attribute {name!r}")


__all__ = sorted(_API) + ["__version__"]
