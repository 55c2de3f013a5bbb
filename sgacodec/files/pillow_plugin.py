"""sgacodec files in Pillow, as pillow-heif and pillow-avif-plugin add theirs:

    import sgacodec
    sgacodec.register_pillow()
    with Image.open("photo.bin") as im:       # any extension: recognised by its magic bytes
        im.size, im.mode, im.info["icc_profile"]       # from the header, nothing decoded yet
        im.load()                                      # decodes (the library's decode)
    im.save("out.sgac", quality=2, method="ssl", iterations=200)   # or target_bpp=0.3, format="SGACODEC"

Opening parses the container (the CRC and every size checked) and sets the size, the mode (L,
LA, RGB or RGBA) and ``info`` (icc_profile, exif, xmp) without decoding; ``load()`` decodes,
one image at a time in a process (each decode already uses every core), so images opened in
several threads load correctly. Saving encodes through the library with the embedded models
(``quality`` 1 to 3; ``checkpoint=`` a local model) and keeps the image's ICC profile, EXIF and
XMP (``metadata="none"`` drops them) and its alpha. The extension registered is ``.sgac`` and
the MIME type ``image/x-sgacodec``.
"""

from __future__ import annotations

import threading

FORMAT = "SGACODEC"
EXTENSIONS = (".sgac",)
MIME = "image/x-sgacodec"
_LOCK = threading.Lock()  # one decode or encode at a time (each uses every core)
_DECODERS: dict = {}


def _accept(prefix: bytes) -> bool:
    from ..codec.container import MAGIC

    return prefix[: len(MAGIC)] == MAGIC


def _image_file_class():
    from PIL import ImageFile

    from ..codec import container
    from ..config import MAX_FILE_BYTES
    from ..errors import BitstreamError

    class SgacodecImageFile(ImageFile.ImageFile):
        format = FORMAT
        format_description = "sgacodec (learned image compression)"

        def _open(self) -> None:
            data = self.fp.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise SyntaxError("larger than any sgacodec file")
            try:
                header = container.unpack(data)
            except BitstreamError as exc:
                raise SyntaxError(str(exc)) from None
            self._sgacodec = data
            self._size = (header.width, header.height)
            self._mode = ("L" if header.grayscale else "RGB") + ("A" if "alpha" in header.metadata else "")
            names = {"icc": "icc_profile", "exif": "exif", "xmp": "xmp"}
            for name, key in names.items():
                if name in header.metadata:
                    self.info[key] = (b"Exif\0\0" if name == "exif" else b"") + header.metadata[name]
            self.tile = []

        def load(self):
            if self._im is None:
                from PIL import Image

                from ..codec.decoder import Decoder
                from .pictures import decoded_picture

                with _LOCK:
                    decoder = _DECODERS.setdefault("default", Decoder())
                    decoded = decoder.decode(self._sgacodec)
                picture = decoded_picture(decoded.rgb, decoded.header)
                self.im = Image.fromarray(picture.output(), self.mode).im
            return ImageFile.ImageFile.load(self)

    return SgacodecImageFile


def _save(im, fp, filename) -> None:
    """Encode ``im`` through the library. Options: quality (1..3, the embedded models), method,
    iterations, effort, target_bpp, target_size, target_psnr, lmbda, tile_size, checkpoint,
    metadata ("all" or "none"), device; icc_profile, exif, xmp override the image's own."""
    import numpy as np

    from ..codec.container import with_metadata
    from ..config import RefineConfig, Target
    from ..refinement.schedules import iterations_for
    from .images import pixels_of
    from .pictures import Picture, metadata_of, with_exif_upright

    opts = im.encoderinfo
    pixels, alpha = pixels_of(im)
    metadata, _ = with_exif_upright({**metadata_of(im), **{k: opts[key] for k, key in
                                                           (("icc", "icc_profile"), ("exif", "exif"), ("xmp", "xmp"))
                                                           if opts.get(key)}})
    if isinstance(metadata.get("exif"), bytes) and metadata["exif"].startswith(b"Exif\0\0"):
        metadata["exif"] = metadata["exif"][6:]
    picture = Picture(pixels, alpha, **metadata)
    iterations, time_budget = iterations_for(opts.get("iterations"), opts.get("effort"), None, "cuda")
    config = RefineConfig(method=opts.get("method", "ssl"), iterations=iterations, lmbda=opts.get("lmbda"),
                          tile_size=opts.get("tile_size", RefineConfig().tile_size))
    targets = [Target(kind, float(opts[f"target_{kind}"])) for kind in ("bpp", "size", "psnr")
               if opts.get(f"target_{kind}") is not None]
    from ..codec.devices import resolve_device

    device = resolve_device(opts.get("device", "auto"))
    with _LOCK:
        if targets:
            from ..codec.targets import encode_to_target
            from ..models.family import load_family

            family = load_family(quality=opts.get("quality"), checkpoint=opts.get("checkpoint"))
            data = encode_to_target(family, picture.rgb, targets[0], config, device).report.data
        else:
            from ..codec.batching import encode
            from ..models.loading import load_model

            model = load_model(quality=opts.get("quality"), checkpoint=opts.get("checkpoint"))
            [report] = encode(model, [np.ascontiguousarray(picture.rgb)], config, device)
            data = report.data
    keep = set() if opts.get("metadata") == "none" else {"icc", "exif", "xmp"}
    chunks = picture.chunks(keep, alpha=True)
    fp.write(with_metadata(data, chunks, picture.grayscale) if chunks or picture.grayscale else data)


def register_pillow() -> None:
    """Register sgacodec files with Pillow: opened whatever their extension (by their magic
    bytes), saved with format="SGACODEC" or to a .sgac path."""
    from PIL import Image

    cls = _image_file_class()
    Image.register_open(FORMAT, cls, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extensions(FORMAT, list(EXTENSIONS))
    Image.register_mime(FORMAT, MIME)
