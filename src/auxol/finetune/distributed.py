"""Multi-process training with DistributedDataParallel, launched by ``torchrun``.

``torchrun --nproc-per-node N -m auxol finetune ...`` (add ``--nnodes``/``--rdzv-*`` for
several nodes) starts N processes and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
and MASTER_PORT in each. The process group uses NCCL on GPUs (one per local rank) and
gloo on CPUs. Every rank trains on its own shard of each epoch; only rank 0 validates
and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from auxol.errors import ConfigError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: rank among world_size processes, local_rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(requested: bool | None) -> Distributed:
    """Join the process group torchrun describes, or run alone.

    Args:
        requested: True = must run distributed (ConfigError without torchrun's
            environment); False = run alone; None = distributed iff torchrun set WORLD_SIZE > 1.
    """
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if requested and missing:
        raise ConfigError(
            f"--distributed: {', '.join(missing)} not set; launch with 'torchrun --nproc-per-node N -m auxol finetune ...'"
        )
    if requested is False or missing or int(os.environ["WORLD_SIZE"]) == 1:
        return Distributed()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]))


def device_for(place: Distributed, requested: str | None) -> torch.device:
    """CUDA device of this local rank when distributed on GPUs; else ``requested`` or the default."""
    if place.enabled and torch.cuda.is_available():
        return torch.device("cuda", place.local_rank)
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def broadcast(value: object, place: Distributed) -> object:
    """Rank 0's ``value`` on every rank (returned unchanged when running alone)."""
    if not place.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
