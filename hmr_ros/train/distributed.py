"""Processes of a training run, shared by the trainers (VisHMR, parameter regressors, DPMesh,
InstanceHMR): one process, or ``torchrun --nproc_per_node=N -m hmr_ros.train --config ...``.

Under torchrun (``WORLD_SIZE`` > 1) ``start_processes`` joins the process group from the
environment torchrun sets (``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``...; backend ``auto`` =
NCCL with CUDA, gloo otherwise) and each rank drives ``cuda:LOCAL_RANK``; ``wrap_ddp`` wraps the
module whose ``forward`` reaches every trained parameter in ``DistributedDataParallel``
(gradients are averaged only for what runs through the wrapper's ``forward``, so a trainer
routes its whole training forward through it and keeps the bare model for checkpoints and
validation). Rank 0 (``is_main``) alone logs, validates and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from .config import ConfigError, DistributedConfig

__all__ = ["Processes", "TrainingForward", "barrier", "check_settings", "end_processes",
           "start_processes", "wrap_ddp"]


@dataclass(frozen=True)
class Processes:
    """This process's place in the run: rank ``rank`` of ``world``, computing on ``device``."""

    world: int
    rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start_processes(device: str, backend: str = "auto") -> Processes:
    """The run's processes; ``device`` is ``auto`` (CUDA if available) | ``cpu`` | ``cuda`` |
    ``cuda:N`` (under torchrun, CUDA means ``cuda:LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world > 1:
        import torch.distributed as dist

        if device.startswith("cuda"):
            torch.cuda.set_device(local_rank)
            device = f"cuda:{local_rank}"
        if backend == "auto":
            backend = "nccl" if device.startswith("cuda") else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        rank, world = dist.get_rank(), dist.get_world_size()
    return Processes(world, rank, torch.device(device))


def wrap_ddp(module: nn.Module, processes: Processes,
             settings: DistributedConfig = DistributedConfig()) -> nn.Module:
    """``module`` in ``DistributedDataParallel`` (batch norms made synchronous if
    ``settings.sync_batchnorm``: in place, ``module`` keeps its identity); unchanged in a single
    process."""
    if not processes.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if settings.sync_batchnorm:
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    ids = [processes.device.index] if processes.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids,
                                   find_unused_parameters=settings.find_unused_parameters)


def barrier(processes: Processes) -> None:
    """Wait for every rank (e.g. while rank 0 writes a checkpoint or validates)."""
    if processes.distributed:
        import torch.distributed as dist

        dist.barrier()


def end_processes(processes: Processes) -> None:
    """Leave the process group (at the end of a run, also after an error)."""
    if processes.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class TrainingForward(nn.Module):
    """``call(model, *args)`` as a module: the whole trained part of a step in one ``forward``,
    which is what ``wrap_ddp`` wraps. Losses whose own terms use the model's parameters (e.g.
    projection heads) belong inside ``call``; ``model`` stays the bare module (checkpoints,
    validation)."""

    def __init__(self, model: nn.Module, call) -> None:
        super().__init__()
        self.model, self.call = model, call

    def forward(self, *args, **kwargs):
        return self.call(self.model, *args, **kwargs)


def check_settings(settings: DistributedConfig) -> None:
    """Reject a ``distributed`` config section with an unknown backend (``ConfigError``)."""
    if settings.backend not in ("auto", "nccl", "gloo"):
        raise ConfigError(f"'distributed.backend' must be auto, nccl or gloo, got "
                          f"{settings.backend!r}")
