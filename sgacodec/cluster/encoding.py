"""Encoding collections on a Ray cluster: one model replica per GPU (or per CPU worker), each one a
``codec.batching.BatchEncoder`` working through its share of the inputs (docs/scaling.md).

    encoder = RayEncoder(model, RefineConfig(iterations=500), address=None)   # None: RAY_ADDRESS, or a local Ray
    for outcome in encoder.encode_files(paths, outputs):      # outputs: outputs.plan_outputs(paths, ...)
        print(outcome.source, outcome.record or outcome.error or "skipped (exists)")

- The driver hands units of consecutive files (at most what a local run reads at once) to idle
  workers (Ray actors holding the model), whose BatchEncoder batches same-size images, halves on
  GPU out-of-memory and falls back to the CPU, exactly as a local run.
- Workers write each output atomically (``outputs.atomic_write``) on the shared file system and
  return one record per image; the driver yields them as units finish (not in input order).
- A worker that dies (killed, out of memory, node lost) is restarted by Ray, and its unit runs
  again, up to RAY_RETRIES times; a rerun rewrites the unit's outputs whole, so no output is ever
  half-written and no record is lost. Temporary files of writes cut short are removed at the end.
- Resume: outputs that exist are skipped (``force`` re-encodes them). ``evaluate_on_ray`` runs
  ``sgacodec refine``'s evaluations the same way; the driver writes the records.

The Ray machinery (connecting, placing workers, retrying units) is workers.py's; Ray is an
optional dependency (``pip install 'sgacodec[ray]'``), imported only when used.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

from ..config import RAY_RETRIES, RefineConfig, environ
from ..errors import SgacodecError
from ..files.outputs import atomic_write, remove_leftovers
from .workers import WorkerPool, check_address, connected, first_line, placement, unit_size

EXIT_ONCE_ENV = "SGACODEC_RAY_EXIT_ONCE"  # fault injection: a path; the first worker to write an
# output after it creates that file exits at once (os._exit), as a killed worker would


def no_progress(description: str, total: int):  # codec.batching.no_progress, without importing torch here
    return contextlib.nullcontext(None)


@dataclass
class FileOutcome:
    """What became of one input: its record (EncodeReport.record()), its error, or skipped (it existed)."""

    index: int
    source: str
    output: str
    record: dict | None = None
    error: str | None = None
    skipped: bool = False
    worker: str | None = None  # 'HOST:PID' of the worker that encoded it


class Worker:
    """A Ray actor: the models on its device, a BatchEncoder per model, units in, records out."""

    def __init__(self, config: RefineConfig, device: str, batch_size: int | None, threads: int,
                 keep: frozenset | None = None, alpha: bool = True):
        import torch

        from ..network.compressai_import import import_compressai

        torch.set_num_threads(threads)
        import_compressai()  # seconds: before the worker says it is ready (and without torchvision's warning)
        self.config, self.device, self.batch_size = config, device, batch_size
        self.keep, self.alpha = keep, alpha  # the metadata (None: all) and alpha each file keeps
        self.models = None
        self.notes: list[str] = []
        self.encoders: dict = {}

    def ready(self) -> None:  # returns once the worker has started (the driver waits for them all)
        pass

    def load(self, models: list) -> None:
        """``models``: [the ObjectRef of the models], fetched on a worker's (or restarted worker's)
        first call; passed with every call, since a restarted worker starts afresh."""
        if self.models is None:
            import ray

            self.models = ray.get(models[0])

    def encoder(self, index: int = 0):
        from ..codec.batching import BatchEncoder

        if index not in self.encoders:
            self.encoders[index] = BatchEncoder(self.models[index], self.config, self.device, self.batch_size,
                                                on_note=self.notes.append)
        return self.encoders[index]

    def encode(self, models: list, sources: list[str], outputs: list[str]):
        """([(record, None) or (None, error)] per source, notes, 'HOST:PID')."""
        from ..files.images import read_picture
        from ..files.pictures import METADATA

        self.load(models)
        self.notes.clear()  # in place: the encoders' on_note appends to it
        results, pictures = [], {}

        def read(src):
            pictures[src] = read_picture(src, self.notes)
            return pictures[src].rgb

        for outcome in self.encoder().encode_sources(sources, read, errors=(Exception,)):
            picture = pictures.pop(sources[outcome.index], None)
            if outcome.error is None:
                try:
                    data = outcome.report.data
                    if picture is not None:
                        keep = self.keep if self.keep is not None else METADATA
                        data = picture.into_file(data, keep, self.alpha)
                        line = picture.kept_note(sources[outcome.index], keep, self.alpha)
                        self.notes.extend([line] if line else [])
                    atomic_write(outputs[outcome.index], data)
                except OSError as exc:
                    outcome.error = exc
            if outcome.error is not None:
                results.append((None, first_line(outcome.error)))
                continue
            results.append((outcome.report.record(), None))
            exit_once()
        return results, list(self.notes), f"{socket.gethostname()}:{os.getpid()}"

    def evaluate(self, models: list, index: int, inputs: list[str], settings, crop, classical, anchor, done,
                 errors):
        """([(record, report without pixels or None)], failures, notes) of model ``index``'s
        settings on ``inputs`` (``done``: their records already in the records file)."""
        from ..evaluation import Evaluation

        self.load(models)
        self.notes.clear()
        run = Evaluation(self.models[index], inputs, settings, self.config, self.device, None, crop, classical,
                         anchor, self.batch_size, errors=errors, on_note=self.notes.append, done=done)
        run.encoder = self.encoder(index)  # the worker's: its network copy on the device is made once
        out = []

        def keep(record, report):
            out.append((record, None if report is None else
                        replace(report, recon=None, base_recon=None, history=[])))
            exit_once()

        result = run.run(on_record=keep)
        return out, result.failures, list(self.notes)


def exit_once() -> None:
    """The fault hook (EXIT_ONCE_ENV): exit like a killed worker, once per marker file."""
    marker = environ(EXIT_ONCE_ENV)
    if marker:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # the first to get here
            os._exit(1)


class RayEncoder:
    """``sgacodec encode --ray``: files in, files out, on a Ray cluster: the one this process is
    connected to, else ``address`` (see ``connected``), connected only when there is work."""

    def __init__(self, model, config: RefineConfig = RefineConfig(), device: str = "auto",
                 batch_size: int | None = None, workers: int | None = None, worker_cpus: int | None = None,
                 retries: int = RAY_RETRIES, address: str | None = None, keep: Sequence[str] | None = None,
                 alpha: bool = True):
        self.model, self.config, self.device, self.batch_size = model, config, device, batch_size
        # the metadata (icc, exif, xmp; None: all) and alpha put into each file, as encode's options
        self.keep, self.alpha = (frozenset(keep) if keep is not None else None), alpha
        self.workers, self.worker_cpus, self.retries = workers, worker_cpus, retries
        self.address = check_address(address)

    def encode_files(self, sources: Sequence[str], outputs: Sequence[str], force: bool = False,
                     progress=None, on_note: Callable[[str], None] | None = None) -> Iterator[FileOutcome]:
        """One FileOutcome per source: the skipped ones (existing outputs, unless ``force``) first,
        then the others as their units finish. ``progress(description, total)``: as in codec.batching."""
        if "-" in sources or "-" in outputs:
            raise SgacodecError("--ray reads and writes files, not stdin or stdout")
        todo = []
        for i, (src, dst) in enumerate(zip(sources, outputs)):
            if not force and os.path.exists(dst):
                yield FileOutcome(i, src, dst, skipped=True)
            else:
                todo.append(i)
        if todo:
            with connected(self.address):
                yield from self._encode(sources, outputs, todo, progress or no_progress, on_note or (lambda text: None))

    def _encode(self, sources, outputs, todo: list[int], progress, on_note) -> Iterator[FileOutcome]:
        place = placement(self.device, self.workers, self.worker_cpus)
        size = unit_size(len(todo), place, self.batch_size)
        units = [todo[k : k + size] for k in range(0, len(todo), size)]
        pool = WorkerPool(Worker, place, len(units), self.config, place.device, self.batch_size, place.cpus,
                          self.keep, self.alpha, shared=[self.model], retries=self.retries)
        submit = lambda actor, unit: actor.encode.remote(pool.shared, [sources[i] for i in unit],
                                                         [outputs[i] for i in unit])
        finished = 0
        try:
            with progress(f"encode {len(todo)} image(s), {len(pool.actors)} Ray worker(s)", len(todo)) as on_step:
                for unit, result, error in pool.run(units, submit):
                    results, notes, worker = result if error is None else ([(None, error)] * len(unit), [], None)
                    for text in notes:
                        on_note(text)
                    for i, (record, failure) in zip(unit, results):
                        yield FileOutcome(i, sources[i], outputs[i], record, failure, worker=worker)
                    finished += len(unit)
                    if on_step:
                        on_step(finished)
        finally:
            pool.close()
            remove_leftovers([outputs[i] for i in todo])


def evaluate_on_ray(runs: list, device: str = "auto", batch_size: int | None = None, workers: int | None = None,
                    worker_cpus: int | None = None, retries: int = RAY_RETRIES, progress=None,
                    on_record: Callable | None = None, on_note: Callable[[str], None] | None = None,
                    address: str | None = None):
    """``Evaluation.run`` of each of ``runs`` (built on the driver: models, inputs, settings, records
    files; their own device is not used) on a Ray cluster (as RayEncoder); the driver appends the
    records. Returns an EvalResult with the records in input order."""
    with connected(address):
        return _evaluate(runs, device, batch_size, workers, worker_cpus, retries, progress or no_progress, on_record,
                         on_note or (lambda text: None))


def _evaluate(runs, device, batch_size, workers, worker_cpus, retries, progress, on_record, on_note):
    from ..evaluation import EvalResult, RecordWriter

    place = placement(device, workers, worker_cpus)
    total = sum(len(run.inputs) for run in runs)
    size = unit_size(total, place, batch_size)
    units = [(r, run.inputs[k : k + size]) for r, run in enumerate(runs) for k in range(0, len(run.inputs), size)]
    units = [(position, *unit) for position, unit in enumerate(units)]  # (position, run, inputs)
    if not units:
        return EvalResult()
    pool = WorkerPool(Worker, place, len(units), runs[0].encoder.config, place.device, batch_size, place.cpus,
                      shared=[run.model for run in runs], retries=retries)

    def submit(actor, unit):
        _, index, inputs = unit
        run, chosen = runs[index], set(inputs)
        done = [r for r in run.done.values() if r.image in chosen]
        return actor.evaluate.remote(pool.shared, index, inputs, run.settings, run.crop, run.classical,
                                     run.anchor, done, run.errors)

    writers = {path: RecordWriter(path) for path in {str(run.records_path) for run in runs if run.records_path}}
    parts: dict[int, EvalResult] = {}
    finished = 0
    try:
        with progress(f"evaluate {total} image(s), {len(pool.actors)} Ray worker(s)", total) as on_step:
            for (position, index, inputs), answer, error in pool.run(units, submit):
                run, part = runs[index], EvalResult()
                parts[position] = part
                pairs, failures, notes = answer if error is None else ([], [f"{s}: {error}" for s in inputs], [])
                part.failures += failures
                for text in notes:
                    on_note(text)
                for record, report in pairs:
                    if record.key in run.done:
                        part.resumed += 1
                    else:
                        part.computed += 1
                        if run.records_path:
                            writers[str(run.records_path)].write(record)
                    part.records.append(record)
                    if on_record:
                        on_record(record, report)
                finished += len(inputs)
                if on_step:
                    on_step(finished)
    finally:
        pool.close()
        for writer in writers.values():
            writer.close()
    result = EvalResult()
    for k in sorted(parts):
        result.add(parts[k])
    return result
