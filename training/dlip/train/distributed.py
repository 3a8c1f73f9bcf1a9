"""Running the same training command plain or under ``torchrun --nproc_per_node=N``.

``setup()`` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and joins the
process group: NCCL with one GPU per process (``cuda:LOCAL_RANK``) when CUDA is available, gloo on CPU otherwise.
Without WORLD_SIZE it does nothing and every helper below degrades to its single-process meaning, so callers never
branch on "am I distributed".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    rank: int  # global process index, 0 .. world_size - 1
    world_size: int  # number of processes
    local_rank: int  # process index on this machine; picks the GPU
    device: torch.device  # where this process's model and batches live
    is_main: bool  # rank 0: the one process that logs, plots and saves


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def setup() -> DistInfo:
    """Joins the process group torchrun describes, or returns a single-process ``DistInfo`` if WORLD_SIZE is unset.

    Calling it again in a process that has already joined returns the same description.
    """
    cuda = torch.cuda.is_available()
    if "WORLD_SIZE" not in os.environ:
        device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        return DistInfo(rank=0, world_size=1, local_rank=0, device=device, is_main=True)
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK", default=rank)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside [0, WORLD_SIZE={world_size})")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE is set but {', '.join(missing)} is not: launch with torchrun")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not is_initialized():
        if cuda:
            dist.init_process_group("nccl", rank=rank, world_size=world_size, device_id=device)
        else:
            dist.init_process_group("gloo", rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device, is_main=rank == 0)


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise ValueError(f"environment variable {name} is not set (WORLD_SIZE is): launch with torchrun")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def cleanup() -> None:
    """Leaves the process group (no-op when none was joined)."""
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Waits for every process (no-op single-process)."""
    if is_initialized():
        dist.barrier()


def wrap_ddp(module: nn.Module, info: DistInfo, find_unused_parameters: bool = True) -> nn.Module:
    """``DistributedDataParallel(module)`` when running on several processes; ``module`` itself otherwise.

    DDP broadcasts rank 0's parameters and buffers at construction, so every rank starts from identical weights.
    ``find_unused_parameters`` defaults to True because a stage whose loss weights switch some objectives off leaves
    those heads without gradients, which DDP would otherwise report as an error.
    """
    if info.world_size == 1:
        return module
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def make_sampler(dataset: Dataset, info: DistInfo, shuffle: bool, seed: int,
                 drop_last: bool = False) -> DistributedSampler | None:
    """A ``DistributedSampler`` giving each rank its own shard, or None single-process (use plain shuffling).

    Call ``sampler.set_epoch(epoch)`` every epoch so the shuffle differs between epochs.
    """
    if info.world_size == 1:
        return None
    return DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed,
                              drop_last=drop_last)


@torch.no_grad()
def concat_all_gather(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` concatenated along dim 0, in rank order; no gradient (BLIP's ``concat_all_gather``).

    All ranks must pass the same shape: ``(B, ...)`` -> ``(world_size * B, ...)``.
    """
    if not is_initialized() or dist.get_world_size() == 1:
        return tensor.detach()
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)  # (world_size * B, ...)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each rank the gradient of its own slice, summed over every rank's loss."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)  # (world_size * B, ...)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        # Each rank's loss used every slice; the local slice's full gradient is the sum over ranks.
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.chunk(dist.get_world_size(), dim=0)[dist.get_rank()]  # (B, ...)


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` concatenated along dim 0, in rank order, with gradient flowing back to the local part
    (BLIP's ``all_gather_with_grad``). Every rank must call backward through it. ``(B, ...) -> (world_size * B, ...)``.
    """
    if not is_initialized() or dist.get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)
