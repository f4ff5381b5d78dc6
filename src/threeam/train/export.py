"""Using training checkpoints outside training: evaluation, initialisation of other runs, export.

* :func:`resolve_checkpoint`: a run folder (its latest checkpoint), a ``step_*`` folder, a run
  record (`threeam.experiments.artifacts`: ``model.fp16.safetensors`` + ``run.json``) or a
  ``.safetensors`` file -> ``(weights file, state.json or None)``.
* :func:`load_for_eval`: the trained network of a ``sam2``, ``3am`` or ``must3r`` training
  checkpoint, rebuilt from the checkpoint's own config (no other file is read), in eval mode.
* :func:`average_checkpoints`: the uniform average of a run's last checkpoints (weight averaging at a
  plateau: the toy MUSt3R's look-alike gate, docs/evidence.md).
* :func:`load_part_weights`: fill a SAM 2 / MUSt3R module from a checkpoint of another task (e.g.
  the pretrained tiny SAM 2 into the SAM 2 part of a 3AM run): ``sam2.`` / ``must3r.`` prefixes of a
  3AM checkpoint are stripped; official SAM 2 files go through `load_sam2_weights`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from threeam.errors import CheckpointError

__all__ = ["resolve_checkpoint", "is_training_checkpoint", "load_for_eval", "load_part_weights",
           "training_state_dict", "average_checkpoints", "RECORD_WEIGHTS", "RECORD_RUN"]

RECORD_WEIGHTS = "model.fp16.safetensors"
"""Weights file of a run record (`threeam.experiments.artifacts`)."""
RECORD_RUN = "run.json"
"""Config and step of a run record."""


def resolve_checkpoint(source: str | os.PathLike) -> tuple[Path, dict | None]:
    """``(model.safetensors path, state.json dict or None)`` of a run folder, checkpoint folder or file."""
    from threeam.train import checkpointing

    p = Path(source)
    if p.is_file() and p.suffix == ".safetensors":
        return p, None
    if p.is_dir() and (p / RECORD_WEIGHTS).is_file() and (p / RECORD_RUN).is_file():
        return p / RECORD_WEIGHTS, _record_state(p)
    if p.is_dir() and (p / checkpointing.STATE_FILE).is_file():
        return p / checkpointing.MODEL_FILE, checkpointing.read_state(p)
    if p.is_dir() and checkpointing.checkpoint_dir(p).is_dir():
        latest = checkpointing.find_latest(p)
        if latest is None:
            raise CheckpointError(f"{p} is a training run folder without a complete checkpoint")
        return latest / checkpointing.MODEL_FILE, checkpointing.read_state(latest)
    raise CheckpointError(f"{p} is not a training checkpoint (a run folder, a checkpoints/step_* folder, "
                          f"a run record with {RECORD_WEIGHTS} and {RECORD_RUN}, or a .safetensors file)")


def _record_state(record: Path) -> dict:
    """The ``state.json``-like part of a run record's ``run.json``: ``{"step", "config"}``."""
    import json

    try:
        doc = json.loads((record / RECORD_RUN).read_text(encoding="utf-8"))
        return {"step": int(doc["step"]), "config": dict(doc["config"])}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{record / RECORD_RUN} is not a run record's run.json ({e})") from None


def is_training_checkpoint(source: Any) -> bool:
    """True for a run folder or ``step_*`` folder written by the training engine, or a run record."""
    if source is None:
        return False
    try:
        _, state = resolve_checkpoint(source)
    except (CheckpointError, OSError):
        return False
    return state is not None


def training_state_dict(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    from safetensors.torch import load_file

    path, state = resolve_checkpoint(source)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        weights = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any parse error is a bad file
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from None
    if path.name == RECORD_WEIGHTS:  # a record's float16 copy: back to the float32 the models train in
        weights = {k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}
    return weights, state


def average_checkpoints(run_dir: str | os.PathLike, last: int) -> tuple[dict[str, torch.Tensor], dict, list[int]]:
    """Uniform average of the model weights of the newest ``last`` complete checkpoints of training run
    ``run_dir`` (stochastic weight averaging over the checkpoints one run wrote; the run must keep them:
    ``run.keep_last=0`` or >= ``last``).

    Floating-point tensors are averaged in float64 and returned in their saved dtype; other tensors (integer
    buffers) are the newest checkpoint's. Returns ``(weights, newest state.json, averaged steps)``. Raises
    `CheckpointError` when the run has fewer than ``last`` checkpoints, or when the checkpoints differ in keys,
    shapes, task or model config (not one run)."""
    from threeam.models.state_dict_check import check_keys
    from threeam.train import checkpointing

    if last < 1:
        raise CheckpointError(f"average_checkpoints: last must be >= 1, got {last}")
    found = checkpointing.list_checkpoints(run_dir)
    if len(found) < last:
        raise CheckpointError(f"{run_dir} has {len(found)} complete checkpoint(s), {last} are needed to average "
                              f"(train with run.ckpt_every small enough and run.keep_last=0 or >= {last})")
    chosen = found[-last:]
    total: dict[str, torch.Tensor] = {}
    steps: list[int] = []
    ref_w: dict[str, torch.Tensor] | None = None
    for c in chosen:  # oldest first: one checkpoint in memory at a time beside the sum
        w, state = training_state_dict(c)
        cfg = state.get("config") or {}
        if ref_w is None:
            ref_w, ref_cfg = w, cfg
        else:
            if (cfg.get("task"), cfg.get("model")) != (ref_cfg.get("task"), ref_cfg.get("model")):
                raise CheckpointError(f"{c} is of another task or model than {chosen[0]}; only one run's "
                                      "checkpoints can be averaged")
            check_keys(ref_w, w, str(c), what=f"checkpoint {chosen[0].name} of the same run")
        for k, v in w.items():  # integer buffers: the newest checkpoint's
            total[k] = total.get(k, 0) + v.double() if v.is_floating_point() else v
        steps.append(int(state["step"]))
    weights = {k: (v / last).to(ref_w[k].dtype) if ref_w[k].is_floating_point() else v for k, v in total.items()}
    return weights, state, steps


def _load_strict(module: nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    from threeam.models.state_dict_check import check_keys

    check_keys(module.state_dict(), weights, what)
    module.load_state_dict(weights, strict=True)


def load_part_weights(module: nn.Module, source: str | os.PathLike, part: str) -> None:
    """Load ``source`` into a SAM 2 (``part="sam2"``) or MUSt3R (``part="must3r"``) module.

    ``source``: a training run / checkpoint folder or safetensors file of the ``sam2``, ``must3r``
    or ``3am`` task (the matching part is taken), or, for SAM 2, an official checkpoint / hub id.
    """
    p = Path(str(source))
    if part == "sam2" and not (p.is_dir() or p.suffix == ".safetensors"):
        from threeam.models.sam2.checkpoint import load_sam2_weights

        load_sam2_weights(module, str(source))
        return
    weights, _ = training_state_dict(source)
    prefix = f"{part}."
    if any(k.startswith(prefix) for k in weights):
        weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    _load_strict(module, weights, f"{part} weights {source}")


def _architecture_only(config):
    m = dataclasses.replace(config.model, sam2_checkpoint=None, must3r_checkpoint=None, init_checkpoint=None)
    return dataclasses.replace(config, model=m)


def load_for_eval(source: str | os.PathLike, device: str | torch.device = "cpu", video_config: Any = None,
                  task: str | None = None) -> nn.Module:
    """The network of a training checkpoint, in eval mode: a `SAM2Base` (task ``sam2``), a `ThreeAM`
    (task ``3am``) or a `Must3r` (task ``must3r``). The architecture comes from the checkpoint's config;
    a ``.safetensors`` file without ``state.json`` is not enough (CheckpointError). ``video_config``: the
    `VideoPredictorConfig` a SAM 2 model is built with (as `build_sam2_model` takes it). ``task``: the
    task the checkpoint must come from (CheckpointError naming both otherwise)."""
    from threeam.train.config import config_from_dict

    weights, state = training_state_dict(source)
    if state is None or "config" not in state:
        raise CheckpointError(f"{source}: no state.json with the training config next to the weights; "
                              "give the checkpoint folder or the run folder")
    config = _architecture_only(config_from_dict(state["config"]))
    if task is not None and config.task != task:
        raise CheckpointError(f"{source} is a checkpoint of the {config.task!r} training task; a {task!r} "
                              "checkpoint is needed here")
    if config.task == "sam2":
        from threeam.predictor.build import build_sam2_model
        from threeam.train.sam2_task import sam2_config_for

        model = build_sam2_model(sam2_config_for(config.model.sam2), random_weights=True, seed=config.seed,
                                 video_config=video_config)
    elif config.task == "3am":
        from threeam.train.three_am_task import build_model

        model = build_model(config)
    elif config.task == "must3r":
        from threeam.train.must3r_task import build_must3r_for_training

        model = build_must3r_for_training(config)
    else:
        raise CheckpointError(f"{source}: task {config.task!r} has no evaluation model (sam2, 3am, must3r)")
    _load_strict(model, weights, f"training checkpoint {source}")
    return model.to(device).eval()
