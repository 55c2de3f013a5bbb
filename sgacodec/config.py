"""Every named choice and default of sgacodec, in one torch-free module.

The library's functions take these values, and the command line derives its choices, defaults and
help from them, so ``sgacodec --help`` needs neither torch nor CompressAI. The method is described
in docs/method.md.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, replace

from .models import zoo_table

# --- rounding methods (docs/method.md, "Rounding methods") ----------------------------------
BASELINE_METHODS = ("none", "ste", "uniform")
TWO_CLASS_METHODS = ("atanh", "linear", "cosine", "ssl")
THREE_CLASS_METHODS = ("linear", "cosine", "ssl")
METHODS = BASELINE_METHODS + TWO_CLASS_METHODS
THREE_CLASS_SUFFIX = "3"  # evaluation labels: 'ssl3' is three-class SSL
THREE_CLASS_LABELS = tuple(m + THREE_CLASS_SUFFIX for m in THREE_CLASS_METHODS)
METHOD_LABELS = METHODS + THREE_CLASS_LABELS
TEMPERATURE_METHODS = TWO_CLASS_METHODS  # the methods tau_max changes

DEFAULT_A = 2.3  # SSL sharpness, two-class (the paper's best)
DEFAULT_A_THREE_CLASS = 1.4  # SSL sharpness, three-class (reference default)
DEFAULT_FACTOR = 0.98  # three-class s
DEFAULT_POWER = 1.4  # three-class n

# --- schedules (docs/method.md, "Schedule") -------------------------------------------------------
SCHEDULES = ("auto", "paper", "budget")  # auto: budget up to PAPER_ITERATIONS, paper beyond
PAPER_ITERATIONS = 2000  # the paper's run length, at which the budget schedule is the paper's
DEFAULT_TAU_END = math.exp(-2.0)  # the paper's tau at step 2000: exp(-1e-3 * 2000)
BUDGET_KNOBS = ("tau_end", "lr_power", "lr_boost_max", "lr_decay", "lr_floor")  # RefineConfig fields
# --effort N: iterations, as codec users know effort levels (avifenc --speed, cjxl --effort)
EFFORT_ITERATIONS = {1: 25, 2: 50, 3: 100, 4: 200, 5: 350, 6: 500, 7: 1000, 8: 2000, 9: 4000}
CPU_TIME_BUDGET = 60.0  # seconds per image when encoding on a CPU with no --iterations, --effort
# or --time-budget: a Kodak-size image in about a minute (the budget schedule anneals within it)
CPU_MIN_ITERATIONS = 25  # fewer steps than this in a CPU's default budget: the image is coded unrefined
PROBE_MEGAPIXELS = 1.0  # larger images are timed on a central crop of this many pixels, scaled
CPU_TARGET_ITERATIONS = 200  # a target's search on a CPU with no --iterations or --effort (a time
# budget does not combine with the search); the setting docs/method.md measures

# --- speed options (docs/performance.md) ------------------------------------------------------
COMPILE_MODES = ("auto", "off", "default", "reduce-overhead", "max-autotune",
                 "max-autotune-no-cudagraphs")
PRECISIONS = ("fp32", "tf32", "bf16")
GPU_EVAL_EVERY = 10  # eval_every on a GPU: same R-D, 1.37x faster on an H100 (docs/performance.md)
CPU_EVAL_EVERY = 1
AUTO_BATCH_MEGAPIXELS = 12.0  # GPU batches: about 30 Kodak images (docs/performance.md)
AUTO_WINDOW = 64  # inputs read ahead to find same-size images when the batch size is automatic
WINDOW_PER_BATCH = 4  # otherwise: this many batches' worth of inputs

TRAIN_COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
TRAIN_POOLS = ("host", "device")
LR_SCALINGS = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}  # exponent of batch_size / LR_REFERENCE_BATCH
LR_REFERENCE_BATCH = 16  # the batch the training lr was chosen at (docs/models.md)

# --- Ray clusters (cluster/, docs/scaling.md) ---------------------------------------------------
RAY_RETRIES = 3  # a unit of work whose worker died (killed, out of memory) runs again this many times
RAY_CPU_WORKER_CPUS = 1  # CPUs (torch threads) each worker reserves on a cluster without GPUs
RAY_LOCAL_ADDRESSES = ("auto", "local")  # Ray's own names; anything else is HOST:PORT or ray://HOST:PORT

# --- models (the zoo's own table: models/zoo_table.py) ------------------------------------
ZOO_NAMES, METRICS, MAX_QUALITY = zoo_table.ZOO_NAMES, zoo_table.METRICS, zoo_table.MAX_QUALITY
DEFAULT_MODEL = "default"  # the embedded model of the manifest's default quality
MODEL_CHOICES = (DEFAULT_MODEL,) + ZOO_NAMES
ZOO_DEFAULT_QUALITY = 3
LATENT_MULTIPLE = 64  # images are padded to a multiple of this: g_a downsamples by 16, h_a by 4 more
TILE_SIZE = 512  # the tile grid's side in pixels (docs/method.md, "Tiled coding"); 0: the whole image
# Refinement of an image of several tiles (docs/method.md, "Refinement in tiles"): whole (compiled
# on a GPU: the measured fast path) while a batch holds at most this many megapixels on the
# device, in tiles beyond (memory bounded by the tile); the same refinement up to float rounding.
WHOLE_REFINE_MEGAPIXELS = {"cpu": 2.0, "cuda": AUTO_BATCH_MEGAPIXELS}
MIN_TILE_SIZE, MAX_TILE_SIZE = 64, 65472  # multiples of LATENT_MULTIPLE (the file stores a u16)

# --- coding (codec/; docs/reliability.md) -----------------------------------------------------
MAX_FILE_BYTES = 1 << 28  # 256 MiB: the largest sgacodec file read (far above any file it writes)
# A coding step's time limit: base seconds plus seconds per padded pixel coded. The encoder's is
# the decoder's doubled: it codes and decodes.
DECODING_TIME = (60.0, 2e-5)
ENCODING_TIME = (120.0, 4e-5)


def coding_timeout(padded_pixels: int, encoding: bool = False) -> float:
    """Seconds a coding step (the encoder's when ``encoding``, else the decoder's) may run."""
    base, per_pixel = ENCODING_TIME if encoding else DECODING_TIME
    return base + per_pixel * padded_pixels


# --- environment: every variable sgacodec reads, and only here --------------------------------
ENVIRONMENT = {
    "SGACODEC_MEMORY_LIMIT": "the memory one image may use: 8G, 500M, a number of bytes, or off",
    "SGACODEC_ISOLATE": "0: decode and entropy-code in this process, not in a forked child",
    "SGACODEC_CACHE": "0: no cache of the float64 coder tables",
    "XDG_CACHE_HOME": "where the cache folder is (default ~/.cache)",
    "SGACODEC_ALLOW_DOWNLOAD": "1: decoding may download the zoo weights a file names",
    "SGACODEC_COMPILE": "the torch.compile mode of refinement when --compile is auto (e.g. off)",
    "SGACODEC_DEBUG": "set: unexpected errors show their traceback",
    "SGACODEC_RAY_EXIT_ONCE": "fault injection (tests): a path; the first Ray worker to write after it exits",
    "RAY_ADDRESS": "Ray's own: the cluster --ray connects to when given no address",
    "WORLD_SIZE": "torchrun's: processes in the group",
    "RANK": "torchrun's: this process's rank",
    "LOCAL_RANK": "torchrun's: this process's rank on its machine",
}
FORWARDED_PREFIX = "SGACODEC_"  # Ray workers get the driver's SGACODEC_* variables


def environ(name: str, default: str | None = None) -> str | None:
    """The environment variable ``name`` (one of ENVIRONMENT), or ``default`` when unset."""
    if name not in ENVIRONMENT:
        raise KeyError(f"{name} is not one of sgacodec's environment variables (config.ENVIRONMENT)")
    return os.environ.get(name, default)


def forwarded_environment() -> dict[str, str]:
    """The driver's SGACODEC_* variables, set in Ray workers too."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIX)}


POSITIVE = ("lr", "a", "factor", "power", "tau_max", "lmbda")  # RefineConfig fields that must be > 0


@dataclass(frozen=True)
class RefineConfig:
    """Refinement settings; defaults are the paper's (SSL, a = 2.3, Adam lr 0.005, 2000 steps).

    Schedule "paper": tau(t) = min(exp(-temp_rate * t), tau_max) and a constant lr; "budget":
    tau(t) = min(tau_end ** (t / T), tau_max) within the run's T iterations, lr boosted for short
    runs; "auto" (default): budget up to 2000 iterations, paper beyond (refinement/schedules.py). The
    loss is lambda * 255^2 * MSE + bpp with lambda = ``lmbda`` or the model's training lambda
    (docs/method.md).
    """

    method: str = "ssl"
    iterations: int = 2000
    lr: float = 0.005
    a: float | None = None  # SSL sharpness; None: DEFAULT_A two-class, DEFAULT_A_THREE_CLASS three-class
    three_class: bool = False
    factor: float = DEFAULT_FACTOR
    power: float = DEFAULT_POWER
    tau_max: float = 1.0
    temp_rate: float = 1e-3  # the paper schedule's c; the budget schedule derives its own
    # The budget schedule's knobs (refinement/schedules.py): anneal to tau_end within the run's T
    # iterations (or the count time_budget affords), lr * min(max((2000 / T) ** lr_power, 1),
    # lr_boost_max), and a cosine decay to lr_floor * lr over the last lr_decay share of the run.
    # The defaults are the tuned ones (docs/method.md); at T = 2000 they give the paper's run.
    schedule: str = "auto"
    tau_end: float = DEFAULT_TAU_END
    lr_power: float = 0.5
    lr_boost_max: float = 4.0
    lr_decay: float = 0.5
    lr_floor: float = 1.0
    lmbda: float | None = None  # None: the model's training lambda
    seed: int = 0
    time_budget: float | None = None  # seconds; stop early when spent
    eval_every: int | None = None  # evaluate the true loss, keep the best, every k steps (None:
    # eval_every_for(device): GPU_EVAL_EVERY on CUDA, CPU_EVAL_EVERY elsewhere)
    # Speed (refinement/speed.py): compile "auto" | "off" | a torch.compile mode ("auto" = "default" on
    # CUDA, off elsewhere); precision "fp32" | "tf32" | "bf16"; channels_last None = on CUDA only.
    compile: str = "auto"
    precision: str = "tf32"
    channels_last: bool | None = None
    tile_size: int = TILE_SIZE  # the file's tile grid, pixels (0: the whole image as one tile)
    refine_tiles: bool | None = None  # refine an image of several tiles in tiles: None = beyond
    # WHOLE_REFINE_MEGAPIXELS, True = always, False = never (the whole image at once)

    def __post_init__(self):
        for name in ("lr", "a", "factor", "power", "tau_max", "temp_rate", "lmbda", "time_budget", "tau_end",
                     "lr_power", "lr_boost_max", "lr_decay", "lr_floor"):
            value = getattr(self, name)
            if value is None and name in ("a", "lmbda", "time_budget"):
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name.replace('_', '-')} must be a finite number, not {value!r}")
            if value < 0 or (value == 0 and name in POSITIVE):
                raise ValueError(f"{name.replace('_', '-')} must be "
                                 f"{'positive' if name in POSITIVE else 'zero or positive'}, not {value!r}")
        for name in ("iterations", "seed", "eval_every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise ValueError(f"{name.replace('_', '-')} must be an integer, not {value!r}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.three_class and self.method not in THREE_CLASS_METHODS:
            raise ValueError(f"--three-class works with {', '.join(THREE_CLASS_METHODS)}")
        if self.iterations < 0 or self.lr <= 0 or self.tau_max <= 0 or (self.eval_every or 1) < 1:
            raise ValueError("iterations >= 0, lr > 0, tau_max > 0 and eval_every >= 1 required")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile: choose from {', '.join(COMPILE_MODES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: choose from {', '.join(PRECISIONS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: choose from {', '.join(SCHEDULES)}")
        if not 0.0 < self.tau_end < 1.0 or self.lr_boost_max < 1.0 or not 0.0 <= self.lr_decay <= 1.0:
            raise ValueError("0 < tau-end < 1, lr-boost-max >= 1 and 0 <= lr-decay <= 1 required")
        if isinstance(self.tile_size, bool) or not isinstance(self.tile_size, numbers.Integral) or \
                self.tile_size != 0 and not (MIN_TILE_SIZE <= self.tile_size <= MAX_TILE_SIZE
                                             and self.tile_size % LATENT_MULTIPLE == 0):
            raise ValueError(f"tile-size must be 0 (the whole image) or a multiple of {LATENT_MULTIPLE} from "
                             f"{MIN_TILE_SIZE} to {MAX_TILE_SIZE}, not {self.tile_size!r}")

    def with_(self, **changes) -> "RefineConfig":
        return replace(self, **changes)

    @property
    def refines(self) -> bool:
        """Whether this configuration runs any refinement step."""
        return self.method != "none" and self.iterations > 0


DEFAULTS = RefineConfig()


# --- encoding to a target (codec/targets.py; docs/method.md, "Encoding to a target") ---------------
TARGET_KINDS = ("bpp", "size", "psnr")  # --target-bpp, --target-size (bytes), --target-psnr (dB)
TARGET_UNITS = {"bpp": "bpp", "size": "bytes", "psnr": "dB"}


@dataclass(frozen=True)
class Target:
    """What a file must meet: a rate ceiling (``bpp``, ``size`` in bytes, header included) or a
    PSNR floor (``psnr``, dB of the decoded 8-bit image)."""

    kind: str
    value: float

    def __post_init__(self):
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"unknown target {self.kind!r}; choose from {', '.join(TARGET_KINDS)}")
        if not self.value > 0 or self.value != self.value or self.value == float("inf"):
            raise ValueError(f"target {self.kind} must be a positive number, not {self.value}")

    @property
    def ceiling(self) -> bool:
        """True for a rate ceiling (the file never exceeds it), False for a PSNR floor."""
        return self.kind != "psnr"

    def describe(self, value: float | None = None) -> str:
        """'0.3 bpp', '40000 bytes', '32 dB': the target, or an achieved ``value`` in its unit."""
        if value is None:
            text = f"{self.value:.0f}" if self.kind == "size" else f"{self.value:g}"
        else:
            text = f"{value:.{ {'bpp': 4, 'size': 0, 'psnr': 2}[self.kind]}f}"
        return f"{text} {TARGET_UNITS[self.kind]}"


@dataclass(frozen=True)
class SearchConfig:
    """How ``targets.encode_to_target`` searches the inference lambda (docs/method.md).

    The refinement runs as a chain of probes of ``probe_iterations`` steps (None: iterations / 8,
    within 10..50), lambda re-aimed after each, up to the full iteration count; then up to
    ``max_corrections`` more probes correct the real file while it misses (and as many again
    while no file meets the target or lambda is being bisected). A rate ceiling is met within
    ``rate_tolerance`` (a fraction, below it), a PSNR floor within ``psnr_tolerance`` dB (above it).
    Lambda stays within the model's training lambda divided or multiplied by ``lambda_span``: a
    target the model cannot reach there is out of its range.
    """

    probe_iterations: int | None = None
    max_corrections: int = 4
    rate_tolerance: float = 0.03
    psnr_tolerance: float = 0.1
    lambda_span: float = 16.0

    def __post_init__(self):
        if (self.probe_iterations is not None and self.probe_iterations < 1) or self.max_corrections < 0 \
                or not 0 < self.rate_tolerance < 1 or self.psnr_tolerance <= 0 or self.lambda_span < 1:
            raise ValueError("probe_iterations >= 1, max_corrections >= 0, 0 < rate_tolerance < 1, "
                             "psnr_tolerance > 0 and lambda_span >= 1 required")

    def probes_for(self, iterations: int) -> int:
        """The steps of one probe when the whole refinement runs ``iterations``."""
        if self.probe_iterations is not None:
            return self.probe_iterations
        return max(10, min(50, iterations // 8))


@dataclass
class TrainConfig:
    """Training settings of the embedded models (train.py); the loss is lambda * 255^2 * MSE + bpp."""

    lmbda: float = 0.0067
    N: int = 128
    M: int = 192
    steps: int = 100_000
    batch_size: int = 16
    crop: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    decay_at: float = 0.85  # fraction of steps after which lr drops 10x
    clip: float = 1.0
    seed: int = 0
    val_every: int = 1000
    save_every: float = 300.0  # seconds between intermediate checkpoints
    quantile_steps: int = 3000  # aux-only steps fitting the quantiles before update()
    report_every: int = 10  # steps between host read-backs of the loss (progress, finiteness check)
    amp: str = "off"  # "bf16": autocast the four transforms only (entropy models stay float32)
    # speed options (docs/models.md, benchmarks/train_speed.py); batch_size is the global batch,
    # shared by the processes of a torchrun (distributed.py)
    compile: str = "off"  # torch.compile mode of the forward and loss, one of TRAIN_COMPILE_MODES
    channels_last: bool = False  # the network and the crops in channels_last memory layout
    pool: str = "host"  # where the decoded training images live and crops are cut: "host" or "device"
    lr_scaling: str = "none"  # lr x (batch_size / LR_REFERENCE_BATCH) ** {none: 0, sqrt: 0.5, linear: 1}


def method_label(method: str, three_class: bool = False) -> str:
    """The evaluation label of a method: 'ssl', or 'ssl3' for three-class SSL."""
    return method + THREE_CLASS_SUFFIX if three_class else method


def split_label(label: str) -> tuple[str, bool]:
    """(method, three_class) of an evaluation label ('ssl3' -> ('ssl', True))."""
    if label in THREE_CLASS_LABELS:
        return label[: -len(THREE_CLASS_SUFFIX)], True
    if label not in METHODS:
        raise ValueError(f"unknown method {label!r}; choose from {', '.join(METHOD_LABELS)}")
    return label, False


def eval_every_for(device_type: str) -> int:
    """The default eval_every on a device type: GPU_EVAL_EVERY on CUDA, CPU_EVAL_EVERY elsewhere."""
    return GPU_EVAL_EVERY if device_type == "cuda" else CPU_EVAL_EVERY
