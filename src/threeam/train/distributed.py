"""torch.distributed plumbing for training.

Launch with ``torchrun --nproc_per_node N -m threeam.cli train ...``:
torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, and
:func:`init_distributed` reads them. Without them (a plain run) the context is single-process
and nothing is initialised. The backend is NCCL on CUDA and gloo on CPU.

Conventions used by the trainer: every rank runs the same optimizer steps on its own shard of
the data (:func:`shard_index`); DDP averages gradients; only rank 0 logs and writes
checkpoints, and all ranks meet at a barrier after each save.
"""
from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from threeam.errors import InputError

__all__ = ["DistContext", "init_distributed", "wrap_model", "unwrap_model", "barrier",
           "all_gather_object", "broadcast_object", "shard_index", "cleanup", "pick_device"]

_ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    """``nccl`` / ``gloo`` when a process group is initialised, else None."""

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the rank that logs and writes checkpoints)."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1 and self.backend is not None


def pick_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """The training device of this rank, through `threeam.devices.resolve_device` (``cpu``, ``cuda``,
    ``cuda:N``, ``auto``, checked against this machine). ``cuda`` without an index, and ``auto``
    on a CUDA machine, mean ``cuda:local_rank``; ``cuda:N`` is that GPU."""
    from threeam.devices import resolve_device

    dev = resolve_device(device, "run.device")
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", local_rank)
    return dev


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistContext:
    """Initialise the default process group from torchrun's environment variables.

    With ``WORLD_SIZE`` unset or 1, returns a single-process context (no process group).
    Raises InputError when the variables are incomplete or inconsistent.
    """
    world = _env_int("WORLD_SIZE") if "WORLD_SIZE" in os.environ else 1
    if world <= 1:
        return DistContext(device=pick_device(device, 0))
    missing = [k for k in _ENV_KEYS if k not in os.environ]
    if missing:
        raise InputError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with torchrun")
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world:
        raise InputError(f"RANK={rank} is outside [0, WORLD_SIZE={world})")
    dev = pick_device(device, local_rank)
    if dev.type == "cuda" and ":" in str(device):
        raise InputError(f"run.device {device!r} names one GPU, but WORLD_SIZE={world} processes each need "
                         "their own: use cuda or auto (rank r gets cuda:LOCAL_RANK)")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {}
        if backend == "nccl" and "device_id" in inspect.signature(dist.init_process_group).parameters:
            kwargs["device_id"] = dev  # binds NCCL to this rank's GPU (newer torch versions)
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev, backend=backend)


def wrap_model(model: nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> nn.Module:
    """Move ``model`` to the context's device and wrap it in DDP when distributed (else return it)."""
    model = model.to(ctx.device)
    if not ctx.is_distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None,
                                               find_unused_parameters=find_unused_parameters)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DDP (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


def all_gather_object(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, indexed by rank (``[obj]`` when single-process)."""
    if not ctx.is_distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not ctx.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shard_index(position: int, ctx: DistContext) -> int:
    """Global sample index of this rank's ``position``-th sample: ``position * world_size + rank``.

    Ranks read disjoint, interleaved samples, and the union over ranks of positions
    ``0..p-1`` is exactly the first ``p * world_size`` samples.
    """
    return position * ctx.world_size + ctx.rank


def cleanup(ctx: DistContext) -> None:
    """Destroy the process group if this context created one."""
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()
