"""sgacodec: learned image compression with SGA+ latent refinement at encode time.

    from sgacodec import load_model, encode, decode, read_image, RefineConfig
    model = load_model()                                   # the embedded default model
    [report] = encode(model, [read_image("img.png")], RefineConfig(iterations=500))
    decoded = decode(report.data)                          # .rgb, .header, .exact

The public API is the names below (``__all__``); the command line uses nothing else (and
``sgacodec.evaluation``'s public names). The package, by subpackage (docs/method.md is the spec):

    config, errors, metrics  every choice and default; the errors users see; quality and rate
    network/     the coding network and its numerics: CompressAI's models, float64 coding side
    models/      which models exist (the zoo's table, the embedded ones) and loading them
    refinement/  SGA+: relaxed rounding, schedules, the refinement loop, its speed options
    codec/       the library: images to files and back, batches, targets, the file container
    files/       images in (folders, globs, stdin), outputs written atomically
    training/    training the embedded models (torchrun too)
    cluster/     many images on a Ray cluster
    evaluation/  R-D studies: grids, records, BD-rate, figures
    cli/         the command line, one module per command

The heavy modules (torch, CompressAI) load on first use of the API, so ``import sgacodec`` and
``sgacodec --help`` stay fast. Importing sgacodec changes no global state (no warnings filter).
"""

__version__ = "0.1.0"

_API = {
    # settings (torch-free)
    "config": None, "RefineConfig": "config", "SearchConfig": "config", "Target": "config", "TrainConfig": "config",
    "iterations_for": "refinement.schedules",
    # models
    "load_model": "models.loading", "load_for_bitstream": "models.loading", "load_checkpoint": "models.checkpoints",
    "load_zoo": "models.zoo", "load_embedded": "models.embedded", "LoadedModel": "models.loaded",
    "ModelId": "models.loaded", "load_family": "models.family", "ModelFamily": "models.family",
    "model_catalogue": "models.catalogue",
    # encoding and decoding
    "encode": "codec.batching", "BatchEncoder": "codec.batching", "Outcome": "codec.batching",
    "encode_sources_to_target": "codec.batching", "TargetOutcome": "codec.batching",
    "encode_batch": "codec.encoder", "EncodeReport": "codec.encoder", "resolve_device": "codec.devices",
    "decode": "codec.decoder", "Decoder": "codec.decoder", "Decoded": "codec.decoder",
    "Strips": "codec.decoder", "tiles_to_decode": "codec.decoder",
    "encode_to_target": "codec.targets", "TargetResult": "codec.targets", "refine_latents": "refinement.loop",
    "describe_file": "codec.info", "summary_lines": "codec.info", "with_metadata": "codec.container",
    "container_header": "codec.container", "psnr_srgb": "metrics",
    # files
    "read_image": "files.images", "read_limited": "files.images", "expand_inputs": "files.images",
    "names_collection": "files.images", "center_crop": "files.images", "encode_png": "files.images",
    "expand_files": "files.images", "read_picture": "files.images", "Picture": "files.pictures",
    "decoded_picture": "files.pictures", "write_decoded_png": "files.pictures",
    "register_pillow": "files.pillow_plugin",
    "plan_outputs": "files.outputs", "check_outputs": "files.outputs", "check_writable": "files.outputs",
    "input_identities": "files.outputs", "prepare_directory": "files.outputs", "write_output": "files.outputs",
    "open_output": "files.outputs", "atomic_write": "files.outputs", "json_line": "files.outputs",
    # Ray clusters (an optional extra) and training
    "RayEncoder": "cluster.encoding", "evaluate_on_ray": "cluster.encoding",
    "check_ray_address": "cluster.workers", "require_ray": "cluster.workers",
    "train": "training.trainer", "export_weights": "training.trainer", "joined": "training.distributed",
    # errors
    "SgacodecError": "errors", "BitstreamError": "errors", "DecodeError": "errors", "DeviceError": "errors",
    "ModelError": "errors", "ImageError": "errors", "OutputError": "errors", "EvaluationError": "errors",
    "EncodeError": "errors", "ResourceError": "errors", "one_line": "errors",
}
# the public names of functions named otherwise inside their modules
_RENAMED = {"check_ray_address": "check_address", "describe_file": "describe", "model_catalogue": "catalogue",
            "container_header": "unpack"}


def __getattr__(name):
    if name in _API:
        import importlib

        if _API[name] is None:  # a public module
            return importlib.import_module(f".{name}", __name__)
        module = importlib.import_module(f".{_API[name]}", __name__)
        return getattr(module, _RENAMED.get(name, name))
    raise AttributeError(f"module 'sgacodec' has no attribute {name!r}")


__all__ = sorted(_API) + ["__version__"]
