"""Running under ``torchrun``: one process per device, DistributedDataParallel, rank 0 writes.

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; without them training runs as a single process and
every helper here is a no-op. CUDA devices use NCCL, CPUs gloo.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UsageError
from .checkpoints import tensor_bytes


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: not a torch device (try cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    return device


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: its rank among ``world`` processes and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def start(device_name: str) -> Ranks:
    """Join the process group torchrun set up (if any) and pick this process's device."""
    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(0, 1, device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"torchrun: local rank {local_rank} but only {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(rank, world, device)


@contextmanager
def main_first(ranks: Ranks) -> Iterator[None]:
    """Rank 0 runs the block first (filling caches), then the others (reading them)."""
    if not ranks.main:
        barrier(ranks)
    yield
    if ranks.main:
        barrier(ranks)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def any_rank(ranks: Ranks, flag: bool) -> bool:
    """True on every process if ``flag`` is true on any (so all stop at the same step)."""
    if not ranks.distributed:
        return flag
    value = torch.tensor([int(flag)], device=ranks.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def mean_over_ranks(ranks: Ranks, value: torch.Tensor) -> torch.Tensor:
    if ranks.distributed:
        value = value.clone()
        dist.all_reduce(value)
        value /= ranks.world
    return value


def gather_rows(ranks: Ranks, local: torch.Tensor, total: int) -> torch.Tensor:
    """Rows ``rank::world`` computed on each process → all ``total`` rows, on every process."""
    if not ranks.distributed:
        return local
    share = -(-total // ranks.world)
    padded = torch.zeros(share, *local.shape[1:], dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(ranks.world)]
    dist.all_gather(parts, padded)
    out = torch.empty(total, *local.shape[1:], dtype=local.dtype, device=local.device)
    for rank, part in enumerate(parts):
        rows = torch.arange(rank, total, ranks.world, device=local.device)
        out[rows] = part[: len(rows)]
    return out


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names and tensor bytes: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for key, value in state.items():
        digest.update(key.encode())
        digest.update(tensor_bytes(value))
    return digest.hexdigest()


def digests_of_all_ranks(ranks: Ranks, state: dict[str, torch.Tensor]) -> list[str]:
    """Every process's ``state_digest``, in rank order."""
    mine = state_digest(state)
    if not ranks.distributed:
        return [mine]
    gathered: list[str] = [""] * ranks.world
    dist.all_gather_object(gathered, mine)
    return gathered
