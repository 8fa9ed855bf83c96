"""Data-parallel training under ``torchrun`` (NCCL on GPUs, gloo on CPUs).

Every rank holds the same supernet, alphas and DropNAS mask generator (same seeds), sees the
same global batch order and processes its own slice of each global batch. Gradients of ``w``
and ``alpha`` are averaged with all-reduce after every backward, so every rank takes the same
optimizer step and keeps identical alphas; :func:`assert_consistent` checks this each epoch
(rank disagreement on the architecture is a known failure of other NAS tools). BatchNorm
statistics stay per rank (as in standard DDP), the one difference from a single process with
the same global batch. Only rank 0 writes checkpoints, outputs and tracking.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist

from nasflow.errors import NasflowError


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_env(device_type: str) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return world()
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return world()


def local_device(device: torch.device) -> torch.device:
    if device.type == "cuda" and world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shard(batch, batch_size: int):
    """This rank's slice of a global batch (the global batch must split evenly)."""
    rank, size = world()
    if size == 1:
        return batch
    if batch_size % size:
        raise NasflowError(f"batch_size {batch_size} does not split over {size} processes")
    x, y = batch
    n = batch_size // size
    return x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]


def all_reduce_mean(tensors: Sequence[torch.Tensor | None]) -> None:
    """Average gradients (or any tensors) over ranks in one flat all-reduce."""
    _rank, size = world()
    present = [t for t in tensors if t is not None]
    if size == 1 or not present:
        return
    flat = torch.cat([t.reshape(-1) for t in present])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for t in present:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def broadcast_parameters(tensors: Sequence[torch.Tensor]) -> None:
    if world()[1] == 1:
        return
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t, src=0)


def assert_consistent(tensors: Sequence[torch.Tensor], what: str) -> None:
    """Raise if ranks disagree on ``tensors`` (e.g. the alphas)."""
    _rank, size = world()
    if size == 1:
        return
    local = torch.stack([t.detach().double().sum() for t in tensors]).cpu()
    gathered = [torch.zeros_like(local) for _ in range(size)]
    dist.all_gather(gathered, local) if dist.get_backend() == "gloo" else _gather_cuda(local, gathered)
    for other in gathered[1:]:
        if not torch.allclose(other, gathered[0], rtol=0, atol=1e-9):
            raise NasflowError(f"ranks disagree on {what}: {[g.tolist() for g in gathered]}")


def _gather_cuda(local, gathered):
    dev = torch.device("cuda", torch.cuda.current_device())
    out = [g.to(dev) for g in gathered]
    dist.all_gather(out, local.to(dev))
    for g, o in zip(gathered, out, strict=True):
        g.copy_(o.cpu())


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
