"""One check for every ``--device`` option: a name the user typed -> a usable `torch.device`."""
from __future__ import annotations

import re

import torch

from threeam.errors import InputError

__all__ = ["resolve_device", "is_device_name", "DEVICE_HELP"]

DEVICE_HELP = "cpu, cuda, cuda:N or auto (cuda when available, else cpu)."

_NAME = re.compile(r"^(cpu|cuda|mps|auto)(?::(\d+))?$")


def is_device_name(name: object) -> bool:
    """Whether `name` is spelled like a device (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``auto``), without
    asking this machine what it has (configs are checked where they are written, used elsewhere)."""
    return isinstance(name, str) and _NAME.match(name.strip().lower()) is not None


def resolve_device(name: str | torch.device | None, option: str = "--device") -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` -> `torch.device`, checked against this machine.

    Raises:
        InputError: an unknown name (``gpu``), CUDA asked for where there is none, an index
            beyond the device count (``cuda:7`` on a 2-GPU machine), MPS where it is missing.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = "auto" if name is None else str(name).strip().lower()
    m = _NAME.match(text)
    if m is None:
        raise InputError(f"{option} {name!r} is not a device; use {DEVICE_HELP}")
    kind, index = m.group(1), m.group(2)
    if kind == "auto":
        if index is not None:
            raise InputError(f"{option} {name!r}: auto takes no index; use {DEVICE_HELP}")
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if kind == "cpu":
        if index not in (None, "0"):
            raise InputError(f"{option} {name!r}: the CPU has no index; use {DEVICE_HELP}")
        return torch.device("cpu")
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise InputError(f"{option} {name!r}: MPS is not available on this machine; use cpu")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise InputError(f"{option} {name!r}: CUDA is not available on this machine (torch {torch.__version__}, "
                         f"built for CUDA {torch.version.cuda or 'none'}); use --device cpu")
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise InputError(f"{option} {name!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", int(index)) if index is not None else torch.device("cuda")
