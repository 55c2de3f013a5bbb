"""Ray, as sgacodec uses it: connecting, placing workers on a cluster's GPUs or CPUs, and running
units of work on a pool of workers (Ray actors), a unit whose worker died running again.

    with connected(address):                           # None: RAY_ADDRESS, else a local Ray
        pool = WorkerPool(SomeWorker, placement("auto"), count=len(units), shared=model)
        for unit, result, error in pool.run(units, lambda actor, unit: actor.work.remote(pool.shared, unit)):
            ...                                        # as units finish

The work itself (encoding, evaluating) is encoding.py's. Ray is an optional dependency
(``pip install 'sgacodec[ray]'``), imported only when used; this module imports neither Ray nor torch.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from ..config import (
    AUTO_WINDOW,
    RAY_CPU_WORKER_CPUS,
    RAY_LOCAL_ADDRESSES,
    RAY_RETRIES,
    WINDOW_PER_BATCH,
    environ,
    forwarded_environment,
)
from ..errors import SgacodecError, one_line

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
    where = address or environ("RAY_ADDRESS")
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


def first_line(exc: BaseException) -> str:
    """One line for a failure: after its type, unless it is an expected error."""
    return one_line(exc, limit=None, typed=not isinstance(exc, (SgacodecError, OSError)))


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
    window = AUTO_WINDOW if place.gpus and batch_size is None else (batch_size or 1) * WINDOW_PER_BATCH
    return max(1, min(window, math.ceil(count / place.workers)))


class WorkerPool:
    """Ray actors of ``worker_class``, each reserving what ``place`` says and built with
    ``worker_class(*args)``; ``shared`` (e.g. the models) goes to the object store once, and
    ``self.shared`` is a list holding its reference, for the calls (a worker fetches it once).
    Units go to whichever worker is idle; a worker that dies is restarted by Ray
    (``max_restarts=-1``), its unit runs again, up to ``retries`` times, on whichever worker is free,
    and the restarted worker rejoins the pool once it answers."""

    def __init__(self, worker_class, place: Placement, count: int, *args, shared=None,
                 retries: int = RAY_RETRIES):
        ray = require_ray()
        self.place, self.retries = place, retries
        env = forwarded_environment()  # the driver's SGACODEC_* variables are set in the workers too
        options = dict(num_cpus=place.cpus, num_gpus=place.gpus, max_restarts=-1, max_task_retries=0)
        if env:
            options["runtime_env"] = {"env_vars": env}
        actor = ray.remote(worker_class).options(**options)
        self.shared = [ray.put(shared)]  # held here for restarted workers; in a list: passed as a reference
        self.actors = [actor.remote(*args) for _ in range(max(1, min(place.workers, count)))]
        try:
            ray.get([a.ready.remote() for a in self.actors])
        except ray.exceptions.RayError as exc:
            self.close()
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]  # a traceback
            raise SgacodecError(f"the Ray workers did not start: {lines[-1] if lines else exc}") from None

    def run(self, units: Sequence, submit: Callable) -> Iterator[tuple[object, object, str | None]]:
        """(unit, result, None) or (unit, None, error) as units finish; ``submit(actor, unit)``
        returns the ObjectRef of the unit's call. Workers need a ``ready()`` method."""
        ray = require_ray()
        rex = ray.exceptions  # a worker's death, and what a node's loss looks like:
        died = (rex.RayActorError, rex.WorkerCrashedError, rex.OutOfMemoryError, rex.NodeDiedError,
                rex.ObjectLostError)
        # a dead worker is called again only once it answers this (Ray holds the call until it restarted)
        probe = lambda actor: actor.ready.options(max_task_retries=-1).remote()
        queue, idle, running = deque((unit, 0) for unit in units), list(self.actors), {}
        while queue or any(unit is not None for _, unit, _ in running.values()):  # unit None: a probe
            while idle and queue:
                actor, (unit, tries) = idle.pop(), queue.popleft()
                running[submit(actor, unit)] = (actor, unit, tries)
            if not running:  # every worker is gone for good
                for unit, _ in queue:
                    yield unit, None, "no Ray worker left (they died and could not restart)"
                return
            [ref], _ = ray.wait(list(running), num_returns=1)
            actor, unit, tries = running.pop(ref)
            result, error = None, None
            try:
                result = ray.get(ref)
            except died as exc:
                if unit is None:
                    continue  # its probe failed: the worker is gone for good
                running[probe(actor)] = (actor, None, 0)
                if tries < self.retries:
                    queue.appendleft((unit, tries + 1))
                    continue
                yield unit, None, f"a worker died {tries + 1} times on it ({first_line(exc)})"
                continue
            except rex.RayTaskError as exc:
                error = first_line(getattr(exc, "cause", None) or exc)
            idle.append(actor)
            if unit is not None:
                yield unit, result, error

    def close(self) -> None:
        for actor in self.actors:
            require_ray().kill(actor)
