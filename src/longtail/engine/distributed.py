"""Process-group helpers. One code path for one CPU, one GPU, or ``torchrun --nproc_per_node N``:
under torchrun (``WORLD_SIZE`` > 1) we join a process group, NCCL on GPU, gloo on CPU."""

from __future__ import annotations

import atexit
import gc
import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is visible; use device=cpu")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def launched_rank() -> int:
    """This process's rank as torchrun launched it (its RANK variable), known before the group is
    joined; 0 in a plain process."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun; otherwise a single process.

    The group is left when the process exits, not when a run ends: a process cannot join a second
    gloo group after destroying its first, and a suite trains several runs in one process. Leaving
    it explicitly matters: a gloo process that exits with its group alive can abort in the C++
    teardown ("terminate called without an active exception") about half the time."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size == 1:
        return DistInfo(device=dev)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
        atexit.register(cleanup)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=dev)


def cleanup() -> None:
    """Leave the process group, and free it while the interpreter is still whole: objects of a run
    (a DDP reducer, autograd graphs) can keep the gloo group alive in reference cycles, and a group
    freed during interpreter finalisation aborts the process now and then ("terminate called
    without an active exception"; measured: 4 exits in 40 without the collection, 0 in 100 with it)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (for logging only; gradients are synchronised by DDP)."""
    if not is_distributed():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, out of place and detached (``value`` itself when not distributed)."""
    if not is_distributed():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value


def rank_mean_local_graph(grad: torch.Tensor) -> torch.Tensor:
    """Value: the mean of ``grad`` over ranks (what the real synchronised update uses); autograd graph:
    this rank's share, ``grad / world``. A meta-gradient through a look-ahead built on it, summed over
    ranks, is then exactly that of the mean of the ranks' objectives."""
    world = world_size()
    if world == 1:
        return grad
    return grad / world + (all_reduce_sum(grad) - grad.detach()) / world


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Replace each ``.grad`` by its mean over ranks, in place (what DDP does for a model it wraps; for
    updates that do not go through a DDP forward)."""
    world = world_size()
    if world == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``src``'s buffers (e.g. BatchNorm running statistics) to every rank, in place."""
    if not is_distributed():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=src)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (so all ranks stop together instead of hanging)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_objects(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
