"""Running an evaluation: every (image, setting) of a grid not yet in the records file.

    run = Evaluation(model, ["kodak/kodim01.png"], expand_grid(["none", "ssl"], [500]),
                     records_path="kodak.jsonl")
    run.pending()            # the refinements still to compute (resumed ones are not)
    result = run.run()       # result.records: this grid's records, computed now or resumed

Setting by setting, the images without a record yet are encoded by the shared pipeline
(``codec.batching.BatchEncoder``: same-size batches, halved when the GPU runs out of memory, the CPU as
a last resort); each batch's records are written as soon as it finishes. Inputs are read
``WINDOW`` at a time. Classical codecs run per image, after its learned records, at the bit rates
of the ``classical_anchor`` label's records of that image (default: 'none' if in the grid, else
the first label).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from .. import metrics
from ..codec.batching import BatchEncoder, Progress, no_progress
from ..codec.targets import encode_to_target
from ..config import RefineConfig, SearchConfig
from ..files.images import center_crop, read_image
from ..models.family import ModelFamily
from .classical import classical_at_rate
from .grid import Setting
from .records import Provenance, Record, RecordWriter, compact_history, load_records, record_key

WINDOW = 256  # inputs held in memory at a time; same-size images among them refine together


@dataclass
class EvalResult:
    records: list[Record] = field(default_factory=list)  # this grid's records, done now or resumed
    computed: int = 0
    resumed: int = 0
    copied: int = 0  # of the resumed ones, copied into the records file from another (``borrowed``)
    failures: list[str] = field(default_factory=list)

    def add(self, other: "EvalResult") -> None:
        self.records += other.records
        self.computed += other.computed
        self.resumed += other.resumed
        self.copied += other.copied
        self.failures += [f for f in other.failures if f not in self.failures]


def _read(src):
    import sys

    return read_image(sys.stdin.buffer.read() if src == "-" else src)


class Evaluation:
    """One model over images x settings, resumable through a records file."""

    def __init__(self, model, inputs: list[str], settings: list[Setting],
                 base_config: RefineConfig = RefineConfig(), device="cpu", records_path=None,
                 crop: int | None = None, classical: Iterable[str] = (),
                 classical_anchor: str | None = None, batch_size: int | None = None,
                 read: Callable | None = None, errors: tuple = (OSError, ValueError),
                 on_note: Callable[[str], None] | None = None, done: Iterable[Record] = (),
                 family: ModelFamily | None = None, search: SearchConfig = SearchConfig(),
                 redo_unproven: bool = False, borrowed: Iterable[Record] = ()):
        self.model, self.inputs, self.settings = model, list(inputs), list(settings)
        # settings with a target choose their model here (default: ``model`` only)
        self.family, self.search = family or ModelFamily.single(model), search
        self.encoder = BatchEncoder(model, base_config, device, batch_size, on_note)
        self.records_path, self.crop, self.classical = records_path, crop, list(classical)
        self.read, self.errors = read or _read, errors
        labels = list(dict.fromkeys(s.label for s in self.settings))
        self.anchor = classical_anchor or ("none" if "none" in labels else labels[0] if labels else None)
        self.sha = model.identity.weights_sha.hex()
        # ``redo_unproven``: records without provenance (older than it) are computed again; the new
        # record, appended, supersedes the old one (results_analysis.prune drops the old one)
        self.done = {r.key: r for r in load_records(records_path) if r.provenance or not redo_unproven} \
            if records_path else {}
        self.done.update((r.key, r) for r in done)  # records known otherwise (a Ray worker's share)
        # ``borrowed``: records of other files (sgacodec refine --records-from), the same
        # measurement under the same key: resumed, and copied into the records file as they are
        self.borrowed = {r.key: r for r in borrowed if r.key not in self.done and (r.provenance or not redo_unproven)}
        self.done.update(self.borrowed)

    def planned(self, setting: Setting) -> tuple[RefineConfig, float]:
        """The full RefineConfig (lambda and eval_every resolved for the device) of a setting."""
        config = self.encoder.config_for(setting.config(self.encoder.config).with_(
            lmbda=setting.resolved_lmbda(self.model)))
        return config, config.lmbda

    def key(self, src: str, setting: Setting) -> str:
        config, lmbda = self.planned(setting)
        if setting.target is not None:
            return record_key(src, self.crop, self.family.identity, setting, None, config,
                              search=asdict(self.search))
        return record_key(src, self.crop, self.sha, setting, lmbda, config)

    def pending(self) -> list[tuple[Setting, str]]:
        """(setting, image) of every refinement not in the records file yet."""
        return [(s, src) for s in self.settings for src in self.inputs
                if s.label != "none" and self.key(src, s) not in self.done]

    def run(self, progress: Progress = no_progress,
            on_record: Callable[[Record, object], None] | None = None) -> EvalResult:
        """Compute what is missing; ``on_record(record, report)`` sees each record (``report``: the
        EncodeReport, or None for a resumed or classical record)."""
        result = EvalResult()
        provenance = None
        writer = RecordWriter(self.records_path) if self.records_path else None
        learned: dict[str, list[Record]] = {src: [] for src in self.inputs}
        images: dict = {}  # src -> cropped pixels (None: unreadable), for the current window

        def image(src):
            if src not in images:
                try:
                    images[src] = center_crop(self.read(src), self.crop)
                except self.errors as exc:
                    images[src] = None
                    result.failures.append(str(exc) if str(src) in str(exc) else f"{src}: {exc}")
            return images[src]

        def keep(record: Record, report, computed: bool, written: bool = False):
            if computed:
                if writer and not written:
                    writer.write(record)
                result.computed += 1
            else:
                result.resumed += 1
                if writer and self.borrowed.pop(record.key, None) is not None:
                    writer.write(record)
                    result.copied += 1
            result.records.append(record)
            if not record.classical:
                learned[record.image].append(record)
            if on_record:
                on_record(record, report)

        try:
            for begin in range(0, len(self.inputs), WINDOW):
                window = self.inputs[begin : begin + WINDOW]
                images.clear()
                for s in self.settings:
                    config, lmbda = self.planned(s)
                    todo = []  # (src, key) of the readable images without this setting's record
                    for src in window:
                        key = self.key(src, s)
                        if key in self.done:
                            keep(self.done[key], None, False)
                        elif image(src) is not None:
                            todo.append((src, key))
                    if s.target is not None:  # one search per image
                        for src, key in todo:
                            provenance = provenance or Provenance.current(self.encoder.device)
                            with progress(f"{s.tag()} {src}", max(s.iterations, 1)) as on_step:
                                found = encode_to_target(self.family, images[src], s.target, config,
                                                         self.encoder.device, self.search, on_step)
                            record = self._target_record(key, src, s, found, images[src], provenance)
                            keep(record, found.report, True)
                        todo = []
                    for batch in self.encoder.batches([images[src] for src, _ in todo]):
                        part = [todo[i] for i in batch]
                        provenance = provenance or Provenance.current(self.encoder.device)
                        more = f" (+{len(part) - 1} more)" if len(part) > 1 else ""
                        with progress(f"{s.tag()} {part[0][0]}{more}", max(s.iterations, 1)) as on_step:
                            reports = self.encoder.encode_group([images[src] for src, _ in part], config,
                                                                on_step, keep_history=True)
                        made = [self._learned_record(key, src, s, report, images[src], provenance)
                                for (src, key), report in zip(part, reports)]
                        if writer:  # the batch's records are on disk before anyone sees one
                            for record in made:
                                writer.write(record)
                        for record, report in zip(made, reports):
                            keep(record, report, True, written=True)
                for src in window:
                    if src in images and images[src] is None:
                        continue  # unreadable, reported once
                    for codec, point, target, key in self._classical_plan(src, learned[src]):
                        if key in self.done:
                            keep(self.done[key], None, False)
                            continue
                        if image(src) is None:
                            break
                        provenance = provenance or Provenance.current("cpu")
                        keep(self._classical_record(key, src, images[src], codec, point, target,
                                                    provenance), None, True)
        finally:
            if writer:
                writer.close()
        return result

    def _learned_record(self, key, src, s: Setting, report, rgb, provenance) -> Record:
        return Record(
            key=key, image=src, crop=self.crop or 0, model=self.model.describe(), model_sha=self.sha,
            label=s.label, tag=s.tag(), height=report.height, width=report.width, bytes=len(report.data),
            bpp=report.bpp, psnr=report.psnr, ms_ssim=metrics.ms_ssim(rgb, report.recon),
            lmbda=report.lmbda, lmbda_scale=None if s.lmbda is not None else s.lmbda_scale,
            tau_max=s.tau_max, iterations=s.iterations, seconds=report.seconds, method=s.label,
            loss=report.loss, base_bpp=report.base_bpp, base_psnr=report.base_psnr,
            base_loss=report.base_loss, steps_run=report.iterations,
            schedule=s.effective_schedule if s.label != "none" else None,
            history=compact_history(report.history) if s.label != "none" else None,
            provenance=provenance)

    def _target_record(self, key, src, s: Setting, found, rgb, provenance) -> Record:
        """The record of one image encoded to a target: the model and lambda the search chose."""
        report = found.report
        return Record(
            key=key, image=src, crop=self.crop or 0, model=found.model, model_sha=found.model_sha,
            label=s.label, tag=s.tag(), height=report.height, width=report.width, bytes=len(report.data),
            bpp=report.bpp, psnr=report.psnr, ms_ssim=metrics.ms_ssim(rgb, report.recon), lmbda=found.lmbda,
            tau_max=s.tau_max, iterations=s.iterations, seconds=found.seconds, method=s.label, loss=report.loss,
            base_bpp=report.base_bpp, base_psnr=report.base_psnr, base_loss=report.base_loss,
            steps_run=found.iterations, target={**found.record(), "family": self.family.identity},
            schedule="paper" if s.label != "none" else None, provenance=provenance)

    def _classical_plan(self, src, image_records):
        """(codec, point, target bpp, key) for one image: one point per anchor rate point."""
        targets = sorted({round(r.bpp, 4) for r in image_records if r.label == self.anchor})
        return [(c, i, t, record_key(src, self.crop, self.sha, codec=c, target=t))
                for c in self.classical for i, t in enumerate(targets)]

    def _classical_record(self, key, src, rgb, codec, point, target, provenance) -> Record:
        """The record of one classical coding of ``rgb`` at the ``target`` bit rate."""
        t0 = time.perf_counter()
        m = classical_at_rate(rgb, codec, target)
        h, w = rgb.shape[:2]
        return Record(key=key, image=src, crop=self.crop or 0, model=codec, model_sha="", label=codec,
                      tag=f"{codec}-p{point}", height=h, width=w, bytes=m["bytes"], bpp=m["bpp"],
                      psnr=m["psnr"], ms_ssim=m["ms_ssim"], seconds=time.perf_counter() - t0,
                      method=codec, quality=m["quality"], target_bpp=target, point=point,
                      anchor_model=self.sha, mse=m["mse"], provenance=provenance)


def evaluate(model, inputs: list[str], settings: list[Setting], base_config: RefineConfig = RefineConfig(),
             device="cpu", records_path=None, crop: int | None = None, classical: Iterable[str] = (),
             progress: Progress = no_progress, on_record=None, **options) -> EvalResult:
    """``Evaluation(...).run(...)`` in one call."""
    return Evaluation(model, inputs, settings, base_config, device, records_path, crop, classical,
                      **options).run(progress, on_record)
