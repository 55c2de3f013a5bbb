"""Evaluation records: one typed, JSON-lines record per image and setting, with its provenance.

A record holds what was measured on real bitstream bytes (bpp, PSNR, MS-SSIM, R-D loss), how
(model, setting, iterations), and who measured it (``Provenance``: device, library versions, the
sgacodec commit, the date). Records are appended and flushed one at a time, keyed by what
determines the result (``record_key``), so a stopped evaluation continues where it was when run
again with the same records file. Records are written by the commands that measure them only.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from ..codec.container import VERSION as FILE_VERSION
from ..config import BUDGET_KNOBS, RefineConfig
from ..refinement.schedules import effective_schedule

RECORD_VERSION = 1
# Settings that change results and so belong to a record's key (time_budget does, too: results
# then depend on the machine, and the key keeps such records apart).
KEY_FIELDS = ("lr", "a", "factor", "power", "temp_rate", "seed", "eval_every", "time_budget")


@dataclass(frozen=True)
class Provenance:
    """Who measured a record: the device, the versions, the sgacodec commit, the date (UTC)."""

    device: str
    torch: str
    compressai: str
    sgacodec: str
    commit: str | None  # git commit of the sgacodec source, '+dirty' when it had local changes
    date: str
    threads: int | None = None  # torch's CPU threads

    @classmethod
    def current(cls, device) -> "Provenance":
        import torch

        from .. import __version__
        from ..network.compressai_import import installed_version

        return cls(device_name(device), torch.__version__, installed_version("compressai"), __version__,
                   source_commit(), datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   torch.get_num_threads())


def device_name(device) -> str:
    """'NVIDIA H100 80GB HBM3' for a GPU; the CPU's model name and core count for the CPU."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {cpu_model()} ({os.cpu_count()} cores)"


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name with its family and model numbers, e.g. 'AMD EPYC (family 26, model 2)':
    a virtual machine often shows only a generic name, and two generations of one name differ in
    speed by 2x."""
    try:
        described = describe_cpu(Path("/proc/cpuinfo").read_text())
    except OSError:
        described = None
    return described or platform.processor() or platform.machine() or "unknown"


def describe_cpu(cpuinfo: str) -> str | None:
    """The first processor's 'model name' of a /proc/cpuinfo text, with '(family F, model M)'
    where those fields are given; None without a model name."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block ends
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name")
    if not name:
        return None
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


@lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit of the sgacodec source tree ('+dirty' with uncommitted changes to tracked
    files), or None outside a git checkout."""
    root = Path(__file__).resolve().parents[2]

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        if not commit:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "sgacodec")
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class Record:
    """One measurement: an image coded by one setting of one model, or by a classical codec."""

    key: str
    image: str
    crop: int
    model: str  # 'embedded msh-q2 q2'; for a classical codec its name
    model_sha: str  # first 8 bytes of the weights' sha256, hex; '' for a classical codec
    label: str  # method label ('ssl3') or codec
    tag: str
    height: int
    width: int
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float | None = None
    lmbda: float | None = None
    lmbda_scale: float | None = None
    tau_max: float | None = None
    iterations: int = 0
    seconds: float = 0.0
    # learned codecs
    method: str | None = None
    loss: float | None = None
    base_bpp: float | None = None
    base_psnr: float | None = None
    base_loss: float | None = None
    steps_run: int | None = None
    schedule: str | None = None  # 'paper' or 'budget' (records before schedules existed: paper)
    history: dict | None = None  # {"step": [...], "loss": [...], "bpp": [...], "psnr": [...]}
    # classical codecs, at the bit rate of a learned record of the same image
    quality: int | None = None
    target_bpp: float | None = None
    point: int | None = None
    anchor_model: str | None = None
    mse: float | None = None
    # encoded to a target (targets.TargetResult.record(), with the family searched): the model
    # and lambda above are those the search chose
    target: dict | None = None
    provenance: Provenance | None = None
    note: str | None = None

    @property
    def classical(self) -> bool:
        return self.model_sha == ""

    def owner(self) -> str:
        """The model of a record: its own, or for a classical codec the model whose rates it matched."""
        return self.model_sha or (self.anchor_model or "")

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None or k in ("ms_ssim",)})

    @classmethod
    def from_dict(cls, data: dict) -> "Record":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        prov = values.get("provenance")
        if isinstance(prov, dict):
            values["provenance"] = Provenance(**{k: v for k, v in prov.items()
                                                 if k in {f.name for f in fields(Provenance)}})
        elif prov is not None:  # an older free-text note
            values["provenance"], values["note"] = None, str(prov)
        return cls(**values)


def record_key(image: str, crop: int | None, model_sha: str, setting=None, lmbda: float | None = None,
               config: RefineConfig | None = None, codec: str | None = None,
               target: float | None = None, search: dict | None = None) -> str:
    """The identity of one measurement, for resuming: same key, same result. For a setting with a
    target, ``model_sha`` names the model family searched and ``search`` its SearchConfig."""
    key: dict = {"v": RECORD_VERSION, "image": os.path.normpath(image), "crop": crop or 0}
    if codec is not None:
        key.update(codec=codec, target=round(float(target), 4), anchor_model=model_sha)
    else:
        key.update(model=model_sha, label=setting.label, it=setting.iterations, tau=setting.tau_max)
        if setting.target is not None:  # model_sha: the family's identity; lambda is searched
            key.update(target=[setting.target.kind, setting.target.value], search=search)
        else:
            key.update(lmbda=float(f"{lmbda:.6g}"))
        if config is not None:  # files of the tiled format (version 3): keys of their own
            key["file"] = [FILE_VERSION, config.tile_size]
        if setting.label != "none" and config is not None:
            schedule = effective_schedule(config)
            if schedule != "paper":  # paper-schedule keys are as they always were
                key["schedule"] = schedule
                key.update({name: getattr(config, name) for name in BUDGET_KNOBS})
            for name in KEY_FIELDS:
                if name == "a" and setting.method != "ssl":
                    continue
                if name in ("factor", "power") and not setting.three_class:
                    continue
                key[name] = getattr(config, name)
    return json.dumps(key, sort_keys=True)


def load_records(path) -> list[Record]:
    """The complete records in a JSON-lines file; a torn last line (interrupted write) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "key" in data:
            out.append(Record.from_dict(data))
    return out


class RecordWriter:
    """Appends records as JSON lines, flushed and synced one by one."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = (self.path.exists() and self.path.stat().st_size > 0
                and not self.path.read_bytes().endswith(b"\n"))
        self.file = open(self.path, "a", encoding="utf-8")
        if torn:  # keep a torn line from an interrupted run on a line of its own
            self.file.write("\n")

    def write(self, record: Record) -> None:
        self.file.write(record.to_json() + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def compact_history(history: list[dict]) -> dict:
    """Per-evaluation true loss, bpp and PSNR as parallel lists (small in JSON)."""
    return {"step": [h["step"] for h in history],
            "loss": [round(float(h["loss"]), 6) for h in history],
            "bpp": [round(float(h["bpp"]), 6) for h in history],
            "psnr": [round(float(h["psnr"]), 4) for h in history]}


def rewrite_records(path, keep) -> tuple[int, int]:
    """Keep only the records for which ``keep(record)`` is true, rewriting the file atomically;
    returns (kept, dropped). For removing records of models no longer shipped."""
    from ..files.outputs import atomic_write

    path = Path(path)
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    kept, dropped = [], 0
    for line in lines:
        try:
            record = Record.from_dict(json.loads(line))
        except (json.JSONDecodeError, TypeError):
            dropped += 1
            continue
        if keep(record):
            kept.append(line)
        else:
            dropped += 1
    atomic_write(path, ("\n".join(kept) + "\n").encode() if kept else b"")
    return len(kept), dropped


def write_section(page: Path, section: str, begin: str, end: str) -> None:
    """Put ``section`` (which starts with the ``begin`` marker and ends with ``end``) in place of
    the page's text between those markers, or at its end where it has none: how a benchmark
    writes its figures into a docs page from its results file."""
    page = Path(page)
    text = page.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    page.write_text(text)
