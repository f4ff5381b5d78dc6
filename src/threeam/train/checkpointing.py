"""Training checkpoints: atomic folders that hold everything an exact resume needs.

Layout under ``<out>/checkpoints/``::

    step_00000010/
        model.safetensors   model state dict (official key names, float tensors as trained)
        optim.pt            {"optimizer": ..., "scheduler": ...}; loaded with weights_only=True
        state.json          format, step, config, RNG states of every rank, sampler and data positions
    latest                  text file naming the newest complete checkpoint folder

A checkpoint is written with `threeam.io.atomic.atomic_output_dir` (a hidden temporary folder
beside its final name, swapped in when complete), so a crash never leaves a half-written
``step_*`` folder and leftovers of killed runs are removed by the next save; ``latest`` is
updated atomically after the swap.
"""
from __future__ import annotations

import base64
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from threeam.errors import CheckpointError
from threeam.io.atomic import atomic_output_dir, atomic_write_text, clean_stale
from threeam.io.jsonio import read_json

__all__ = [
    "FORMAT_VERSION",
    "checkpoint_dir",
    "save_checkpoint",
    "load_checkpoint",
    "read_state",
    "find_latest",
    "list_checkpoints",
    "capture_rng_state",
    "restore_rng_state",
]

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optim.pt"
STATE_FILE = "state.json"
LATEST_FILE = "latest"


def checkpoint_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / "checkpoints"


def _step_name(step: int) -> str:
    return f"step_{step:08d}"


# ---------------------------------------------------------------------------------- RNG


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """JSON-able states of python's ``random``, numpy's global RNG, torch CPU and, when ``device``
    is a CUDA device, that device's CUDA generator (only that one: querying every GPU would
    create a CUDA context on each of them in every rank)."""
    py = random.getstate()
    np_state = np.random.get_state()
    cuda = None
    if device is not None and torch.device(device).type == "cuda":
        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        cuda = {"index": index, "state": _b64(torch.cuda.get_rng_state(index))}
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": _b64(torch.get_rng_state()),
        "cuda": cuda,
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (the CUDA state is restored when that device exists)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(_unb64(state["torch"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and cuda["index"] < torch.cuda.device_count():
        torch.cuda.set_rng_state(_unb64(cuda["state"]), cuda["index"])


# ---------------------------------------------------------------------------------- files


def _cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU copies, contiguous, with shared storages de-duplicated (safetensors needs that)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def save_checkpoint(out_dir: str | os.PathLike, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: Mapping[str, Any], keep_last: int = 0) -> Path:
    """Write checkpoint ``step`` under ``out_dir/checkpoints`` atomically and return its folder.

    ``model`` is the bare module (not DDP). ``state`` must be JSON-able; ``step`` and
    ``format`` are added. ``keep_last > 0`` deletes all but the newest ``keep_last`` checkpoints.
    An existing folder for the same step is replaced only after the new one is complete.
    """
    root = checkpoint_dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    clean_stale(root, every=True)  # temporaries of killed runs, whatever step they were writing
    final = root / _step_name(step)
    with atomic_output_dir(final, overwrite=True, kind="checkpoint", option="checkpoint") as tmp:
        save_file(_cpu_state_dict(model), str(tmp / MODEL_FILE), metadata={"format": "pt", "step": str(step)})
        torch.save({"optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None}, tmp / OPTIM_FILE)
        payload = dict(state)
        payload.update(format=FORMAT_VERSION, step=step)
        (tmp / STATE_FILE).write_text(json.dumps(payload, indent=1), encoding="utf-8")
    atomic_write_text(root / LATEST_FILE, final.name + "\n")
    if keep_last > 0:
        for old_ckpt in list_checkpoints(out_dir)[:-keep_last]:
            shutil.rmtree(old_ckpt, ignore_errors=True)
    return final


def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    root = checkpoint_dir(out_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def find_latest(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint named by ``latest`` (falling back to the highest step), or None."""
    root = checkpoint_dir(out_dir)
    latest = root / LATEST_FILE
    if latest.is_file():
        cand = root / latest.read_text(encoding="utf-8").strip()
        if (cand / STATE_FILE).is_file():
            return cand
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """The ``state.json`` of checkpoint folder ``path``."""
    f = Path(path) / STATE_FILE
    state = read_json(f, "checkpoint state", error=CheckpointError,
                      missing=f"{path} is not a training checkpoint (no {STATE_FILE})")
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{f}: checkpoint format {state.get('format')!r}, this version reads {FORMAT_VERSION}")
    return state


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load checkpoint folder ``path`` into ``model`` (strict key match), ``optimizer`` and
    ``scheduler`` (when given); return its ``state.json`` contents.

    Raises CheckpointError for missing files, mismatched keys or shapes.
    """
    path = Path(path)
    state = read_state(path)
    for name in (MODEL_FILE, OPTIM_FILE):
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
    weights = load_file(str(path / MODEL_FILE))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path} does not match the model: missing keys {missing[:10]}, "
                              f"unexpected keys {unexpected[:10]}")
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(weights[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"checkpoint {path}: {len(bad)} shape mismatches, e.g. {k}: "
                              f"{tuple(weights[k].shape)} in the file vs {tuple(expected[k].shape)} in the model")
    model.load_state_dict(weights, strict=True)
    if optimizer is not None or scheduler is not None:
        try:
            extra = torch.load(path / OPTIM_FILE, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
            raise CheckpointError(f"cannot read {path / OPTIM_FILE}: {e}") from None
        try:
            if optimizer is not None:
                optimizer.load_state_dict(extra["optimizer"])
            if scheduler is not None and extra.get("scheduler") is not None:
                scheduler.load_state_dict(extra["scheduler"])
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path}: optimizer state does not match this run's "
                                  f"parameter groups ({e})") from None
    return state
