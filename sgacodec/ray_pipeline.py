"""Encoding collections on a Ray cluster: one model replica per GPU (or per CPU worker), each one a
``pipeline.BatchEncoder`` working through its share of the inputs (docs/scaling.md).

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

Ray is an optional dependency (``pip install 'sgacodec[ray]'``), imported only when used.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

from .config import RAY_CPU_WORKER_CPUS, RAY_LOCAL_ADDRESSES, RAY_RETRIES, RefineConfig
from .errors import SgacodecError
from .outputs import atomic_write, remove_leftovers

EXIT_ONCE_ENV = "SGACODEC_RAY_EXIT_ONCE"  # fault injection: a path; the first worker to write an
# output after it creates that file exits at once (os._exit), as a killed worker would
FORWARDED_ENV_PREFIX = "SGACODEC_"  # the driver's SGACODEC_* variables are set in the workers too
ADDRESS = re.compile(r"^(ray://)?[\w.\-\[\]:]+:\d+$")


def require_ray():
    """The ray module, or an SgacodecError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise SgacodecError("--ray needs Ray, an optional dependency: pip install 'sgacodec[ray]'") from None
    return ray


def check_address(address: str | None) -> str | None:
    """A Ray address as given ('auto', 'local', HOST:PORT, ray://HOST:PORT); None or '': the
    RAY_ADDRESS variable, or a new local Ray."""
    if not address:
        return None
    if address in RAY_LOCAL_ADDRESSES or ADDRESS.match(address):
        return address
    raise SgacodecError(f"{address!r} is not a Ray address (auto, local, HOST:PORT or ray://HOST:PORT); on "
                        "the command line, put --ray after the inputs, or write --ray=ADDRESS")


@contextlib.contextmanager
def connected(address: str | None = None, **init_options):
    """Ray connected for the block: the one already initialised in this process, else the cluster
    at ``address`` (or RAY_ADDRESS), else a new local Ray that is shut down afterwards."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    address = check_address(address)
    where = address or os.environ.get("RAY_ADDRESS")
    if where in (None, "", "local"):
        init_options.setdefault("include_dashboard", False)
    try:
        ray.init(address=address, **init_options)
    except ConnectionError as exc:
        raise SgacodecError(f"cannot reach the Ray cluster at {where} ({first_line(exc)})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def no_progress(description: str, total: int):  # pipeline.no_progress, without importing torch here
    return contextlib.nullcontext(None)


def first_line(exc: BaseException) -> str:  # after its type, unless it is an expected error
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (SgacodecError, OSError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


@dataclass(frozen=True)
class Placement:
    """How many workers, what each reserves, and the device they refine on."""

    workers: int
    gpus: int  # per worker: 1 or 0
    cpus: int  # per worker (and its torch threads)
    device: str  # 'cuda' (each worker sees its own GPU as cuda:0) or 'cpu'


def placement(device: str = "auto", workers: int | None = None, worker_cpus: int | None = None) -> Placement:
    """One worker per GPU of the cluster (``device`` auto or cuda), else one per
    RAY_CPU_WORKER_CPUS CPUs; GPU workers share the CPUs evenly unless ``worker_cpus`` says."""
    if device not in ("auto", "cpu", "cuda"):
        raise SgacodecError(f"with --ray, --device is auto, cpu or cuda (each worker gets a GPU of its own), "
                            f"not {device}")
    resources = require_ray().cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    if device == "cuda" and not gpus:
        raise SgacodecError("--device cuda: the Ray cluster has no GPU")
    if gpus and device != "cpu":
        return Placement(workers or gpus, 1, worker_cpus or max(1, cpus // gpus), "cuda")
    each = worker_cpus or RAY_CPU_WORKER_CPUS
    return Placement(workers or max(1, cpus // each), 0, each, "cpu")


def unit_size(count: int, place: Placement, batch_size: int | None) -> int:
    """Inputs per unit of work: what a local run reads at once on that device, but no more than
    an even share, so that every worker gets some."""
    from .pipeline import AUTO_WINDOW, WINDOW_PER_BATCH

    window = AUTO_WINDOW if place.gpus and batch_size is None else (batch_size or 1) * WINDOW_PER_BATCH
    return max(1, min(window, math.ceil(count / place.workers)))


class Worker:
    """A Ray actor: the models on its device, a BatchEncoder per model, units in, records out."""

    def __init__(self, config: RefineConfig, device: str, batch_size: int | None, threads: int):
        import torch

        from .hyperprior import import_compressai


        torch.set_num_threads(threads)
        import_compressai()  # seconds: before the worker says it is ready (and without torchvision's warning)
        self.config, self.device, self.batch_size = config, device, batch_size
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
        from .pipeline import BatchEncoder

        if index not in self.encoders:
            self.encoders[index] = BatchEncoder(self.models[index], self.config, self.device, self.batch_size,
                                                on_note=self.notes.append)
        return self.encoders[index]

    def encode(self, models: list, sources: list[str], outputs: list[str]):
        """([(record, None) or (None, error)] per source, notes, 'HOST:PID')."""
        from .imageio import read_image

        self.load(models)
        self.notes.clear()  # in place: the encoders' on_note appends to it
        results = []
        read = lambda src: read_image(src, self.notes)
        for outcome in self.encoder().encode_sources(sources, read, errors=(Exception,)):
            if outcome.error is None:
                try:
                    atomic_write(outputs[outcome.index], outcome.report.data)
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
        from .evaluation import Evaluation

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
    marker = os.environ.get(EXIT_ONCE_ENV)
    if marker:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # the first to get here
            os._exit(1)


class WorkerPool:
    """Ray actors holding the models; units of work go to whichever is idle, and a unit whose
    worker died runs again (the actor is restarted by Ray)."""

    def __init__(self, models: list, config: RefineConfig, place: Placement, batch_size: int | None,
                 count: int, retries: int = RAY_RETRIES):
        ray = require_ray()
        self.place, self.retries = place, retries
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}
        options = dict(num_cpus=place.cpus, num_gpus=place.gpus, max_restarts=-1, max_task_retries=0)
        if env:
            options["runtime_env"] = {"env_vars": env}
        actor = ray.remote(Worker).options(**options)
        self.models = [ray.put(models)]  # held here for restarted workers; in a list: passed as a reference
        self.actors = [actor.remote(config, place.device, batch_size, place.cpus)
                       for _ in range(max(1, min(place.workers, count)))]
        try:
            ray.get([a.ready.remote() for a in self.actors])
        except ray.exceptions.RayError as exc:
            self.close()
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]  # a traceback
            raise SgacodecError(f"the Ray workers did not start: {lines[-1] if lines else exc}") from None

    def run(self, units: Sequence, submit: Callable) -> Iterator[tuple[object, object, str | None]]:
        """(unit, result, None) or (unit, None, error) as units finish; ``submit(actor, unit)``
        returns the ObjectRef of the unit's call."""
        ray = require_ray()
        rex = ray.exceptions  # a worker's death, and what a node's loss looks like:
        died = (rex.RayActorError, rex.WorkerCrashedError, rex.OutOfMemoryError, rex.NodeDiedError,
                rex.ObjectLostError)
        queue, idle, running = deque((unit, 0) for unit in units), list(self.actors), {}
        while queue or running:
            while idle and queue:
                actor, (unit, tries) = idle.pop(), queue.popleft()
                running[submit(actor, unit)] = (actor, unit, tries)
            [ref], _ = ray.wait(list(running), num_returns=1)
            actor, unit, tries = running.pop(ref)
            idle.append(actor)
            result, error = None, None
            try:
                result = ray.get(ref)
            except died as exc:
                if tries < self.retries:
                    queue.appendleft((unit, tries + 1))  # Ray restarts the worker (max_restarts=-1)
                    continue
                error = f"a worker died {tries + 1} times on it ({first_line(exc)})"
            except rex.RayTaskError as exc:
                error = first_line(getattr(exc, "cause", None) or exc)
            yield unit, result, error

    def close(self) -> None:
        for actor in self.actors:
            require_ray().kill(actor)


class RayEncoder:
    """``sgacodec encode --ray``: files in, files out, on a Ray cluster: the one this process is
    connected to, else ``address`` (see ``connected``), connected only when there is work."""

    def __init__(self, model, config: RefineConfig = RefineConfig(), device: str = "auto",
                 batch_size: int | None = None, workers: int | None = None, worker_cpus: int | None = None,
                 retries: int = RAY_RETRIES, address: str | None = None):
        self.model, self.config, self.device, self.batch_size = model, config, device, batch_size
        self.workers, self.worker_cpus, self.retries = workers, worker_cpus, retries
        self.address = check_address(address)

    def encode_files(self, sources: Sequence[str], outputs: Sequence[str], force: bool = False,
                     progress=None, on_note: Callable[[str], None] | None = None) -> Iterator[FileOutcome]:
        """One FileOutcome per source: the skipped ones (existing outputs, unless ``force``) first,
        then the others as their units finish. ``progress(description, total)``: as in pipeline."""
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
        pool = WorkerPool([self.model], self.config, place, self.batch_size, len(units), self.retries)
        submit = lambda actor, unit: actor.encode.remote(pool.models, [sources[i] for i in unit],
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
    from .evaluation import EvalResult, RecordWriter

    place = placement(device, workers, worker_cpus)
    total = sum(len(run.inputs) for run in runs)
    size = unit_size(total, place, batch_size)
    units = [(r, run.inputs[k : k + size]) for r, run in enumerate(runs) for k in range(0, len(run.inputs), size)]
    units = [(position, *unit) for position, unit in enumerate(units)]  # (position, run, inputs)
    if not units:
        return EvalResult()
    pool = WorkerPool([run.model for run in runs], runs[0].encoder.config, place, batch_size, len(units), retries)

    def submit(actor, unit):
        _, index, inputs = unit
        run, chosen = runs[index], set(inputs)
        done = [r for r in run.done.values() if r.image in chosen]
        return actor.evaluate.remote(pool.models, index, inputs, run.settings, run.crop, run.classical,
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
