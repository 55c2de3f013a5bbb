"""sgacodec: learned image compression with SGA+ latent refinement at encode time.

    from sgacodec import load_model, encode, decode, read_image, RefineConfig
    model = load_model()                                   # the embedded default model
    [report] = encode(model, [read_image("img.png")], RefineConfig(iterations=500))
    decoded = decode(report.data)                          # .rgb, .header, .exact

The modules, one idea each: config (every choice and default), rounding (relaxed rounding and
the temperature), refine (the refinement loop), hyperprior (CompressAI's models as refinement and
coding need them), models (loading), bitstream (the file container), codec (one batch in and out),
pipeline (many images: batches, out-of-memory handling), targets (encoding to a target rate or
PSNR), metrics, imageio, outputs, isolate (decoding untrusted bytes and the encoder's coding in a
child), memory (what an image needs), train, evaluation (R-D studies), cli. docs/method.md is the
spec.

The heavy modules (torch, CompressAI) load on first use of the API, so ``import sgacodec`` and
``sgacodec --help`` stay fast. Importing sgacodec changes no global state (no warnings filter).
"""

__version__ = "0.1.0"

_API = {
    "encode": "codec.batching", "BatchEncoder": "codec.batching", "Outcome": "codec.batching", "resolve_device": "codec.batching",
    "encode_batch": "codec.encoder", "decode": "codec.encoder", "Decoded": "codec.encoder", "EncodeReport": "codec.encoder",
    "load_model": "models.loading", "load_checkpoint": "models.loading", "load_zoo": "models.loading",
    "load_embedded": "models.loading", "LoadedModel": "models.loading", "load_family": "models.loading", "ModelFamily": "models.loading",
    "encode_to_target": "codec.targets", "TargetResult": "codec.targets", "Target": "config", "SearchConfig": "config",
    "RefineConfig": "config", "TrainConfig": "config", "refinement.loop": "refinement.loop",
    "read_image": "files.images", "expand_inputs": "files.images",
    "SgacodecError": "errors", "BitstreamError": "errors", "DecodeError": "errors",
    "ModelError": "errors", "ImageError": "errors", "OutputError": "errors", "EvaluationError": "errors",
    "EncodeError": "errors", "ResourceError": "errors",
}


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'sgacodec' has no attribute {name!r}")


__all__ = sorted(_API) + ["__version__"]
