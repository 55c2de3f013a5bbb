"""Training on several processes: torchrun's environment, DDP, and the few collectives train.py needs.

    torchrun --nproc_per_node N -m sgacodec train DATA --checkpoint run.pt ...

torchrun starts N copies of the command and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; ``joined`` joins the process group they describe (NCCL on GPUs, gloo on CPUs) and
leaves it at the end. Without torchrun (WORLD_SIZE unset or 1) it is a single process and every
collective below is the identity, so train.py has one code path.

The model is wrapped in DistributedDataParallel, which averages the gradients over the processes
during the backward pass; each process takes its share of the global batch (data.py), so
the averaged gradient is the gradient of the mean loss over the global batch, as in one process.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from inspect import signature

import torch

from ..config import environ


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes (rank 0 validates, saves and exports)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested) -> torch.device:
        """The device of this process: on CUDA, the GPU of its local rank."""
        requested = torch.device(requested)
        if self.distributed and requested.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return requested

    def wrap(self, module: torch.nn.Module, device) -> torch.nn.Module:
        """DistributedDataParallel around ``module`` (the module itself in a single process).

        Buffers are not broadcast at each forward: the only buffers are the entropy models'
        coder tables and scale table, which training does not change.
        """
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device = torch.device(device)
        ids = [device.index] if device.type == "cuda" else None
        # newer PyTorch names the option forward_sync_buffers (and warns about the old name)
        sync = "forward_sync_buffers" if "forward_sync_buffers" in signature(DistributedDataParallel).parameters \
            else "broadcast_buffers"
        return DistributedDataParallel(module, device_ids=ids, **{sync: False})

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the processes (in place; the tensor itself in one process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flags: list[bool], device) -> list[bool]:
        """Each flag, true when it is true in any process (one all-reduce; no copy in one process)."""
        if not self.distributed:
            return [bool(f) for f in flags]
        tensor = torch.tensor([float(f) for f in flags], device=device)
        return (self.sum(tensor) > 0).tolist()

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


SINGLE = Group()


def from_env() -> Group:
    """The group torchrun's environment describes (SINGLE without torchrun)."""
    world = int(environ("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Group(int(environ("RANK")), world, int(environ("LOCAL_RANK", "0")))


@contextmanager
def joined(device="cpu"):
    """Join the process group of torchrun's environment for the block; yields the Group.

    NCCL when ``device`` is a GPU, gloo otherwise. The group is left at the end, also on errors;
    after a block that ran through, all ranks first wait for one another.
    """
    group = from_env()
    if not group.distributed:
        yield group
        return
    import torch.distributed as dist

    device = group.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=group.rank, world_size=group.world)
    try:
        yield group
        dist.barrier()  # leave together: rank 1 once aborted ("terminate called without an active
        # exception", SIGABRT) tearing gloo down while rank 0 was still exporting
    finally:
        dist.destroy_process_group()
