"""Parameter groups by module-name prefix, freeze rules, AdamW, learning-rate schedules and
gradient clipping.

A parameter named ``a.b.c`` matches prefix ``p`` when ``name == p`` or ``name`` starts with
``p + "."``. Each parameter goes to the group (or the frozen set) of its longest matching
prefix; parameters no trainable group claims are frozen with ``requires_grad_(False)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from threeam.errors import InputError
from threeam.train.config import OptimConfig

__all__ = [
    "GroupAssignment",
    "assign_parameters",
    "apply_freeze",
    "build_optimizer",
    "build_scheduler",
    "lr_factor",
    "clip_gradients",
    "summary_rows",
    "format_summary",
]

_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
               nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
if hasattr(nn, "RMSNorm"):
    _NORM_TYPES = _NORM_TYPES + (nn.RMSNorm,)


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@dataclass
class GroupAssignment:
    """Where every named parameter of a model goes.

    ``trainable[group]`` lists (name, parameter) pairs in ``named_parameters`` order;
    ``frozen`` lists the rest; ``frozen_explicit`` the names frozen by an explicit prefix.
    """

    trainable: dict[str, list[tuple[str, nn.Parameter]]] = field(default_factory=dict)
    frozen: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    frozen_explicit: set[str] = field(default_factory=set)


def assign_parameters(model: nn.Module, config: OptimConfig) -> GroupAssignment:
    """Assign each parameter of ``model`` to a trainable group or to the frozen set.

    Raises InputError if a trainable group (or an explicit frozen prefix) matches no parameter,
    listing the model's top-level modules, or if no parameter is trainable.
    """
    prefixes: list[tuple[str, str | None]] = []  # (prefix, group name or None = frozen)
    for g in config.groups:
        prefixes += [(p, g.name) for p in g.prefixes]
    prefixes += [(p, None) for p in config.frozen_prefixes]
    prefixes.sort(key=lambda t: len(t[0]), reverse=True)

    out = GroupAssignment(trainable={g.name: [] for g in config.groups})
    used: set[str] = set()
    for name, param in model.named_parameters():
        hit = next(((p, g) for p, g in prefixes if _matches(name, p)), None)
        if hit is not None:
            used.add(hit[0])
        if hit is None or hit[1] is None:
            out.frozen.append((name, param))
            if hit is not None:
                out.frozen_explicit.add(name)
        else:
            out.trainable[hit[1]].append((name, param))

    top = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
    for p, g in prefixes:
        if p not in used:
            what = f"trainable group {g!r} prefix" if g is not None else "frozen prefix"
            raise InputError(f"{what} {p!r} matches no parameter of the model "
                             f"(its top-level modules: {', '.join(top) or 'none'})")
    if not any(out.trainable.values()):
        raise InputError("no trainable parameters: optim.groups is empty")
    return out


def apply_freeze(assignment: GroupAssignment) -> None:
    """``requires_grad_(True)`` on trainable parameters, ``requires_grad_(False)`` on frozen ones."""
    for items in assignment.trainable.values():
        for _, p in items:
            p.requires_grad_(True)
    for _, p in assignment.frozen:
        p.requires_grad_(False)


def _no_decay_names(model: nn.Module) -> set[str]:
    """Biases and the parameters of normalisation layers."""
    names: set[str] = set()
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if p_name == "bias" or p_name.endswith("_bias") or isinstance(mod, _NORM_TYPES):
                names.add(full)
    return names


def build_optimizer(model: nn.Module, config: OptimConfig,
                    assignment: GroupAssignment | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable groups (freezing the rest first).

    Each config group becomes one or two torch param groups (with and without weight decay);
    every torch group carries ``"name"`` (``group`` or ``group/no_decay``) and ``"base_lr"``.
    """
    assignment = assignment or assign_parameters(model, config)
    apply_freeze(assignment)
    no_decay = _no_decay_names(model) if config.no_decay_bias_and_norm else set()
    torch_groups = []
    for g in config.groups:
        wd = config.weight_decay if g.weight_decay is None else g.weight_decay
        decay = [p for n, p in assignment.trainable[g.name] if n not in no_decay]
        plain = [p for n, p in assignment.trainable[g.name] if n in no_decay]
        if decay:
            torch_groups.append({"params": decay, "lr": g.lr, "base_lr": g.lr, "weight_decay": wd, "name": g.name})
        if plain:
            torch_groups.append({"params": plain, "lr": g.lr, "base_lr": g.lr, "weight_decay": 0.0,
                                 "name": f"{g.name}/no_decay"})
    return torch.optim.AdamW(torch_groups, betas=tuple(config.betas), eps=config.eps)


def lr_factor(step: int, total_steps: int, config: OptimConfig) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup_steps`` for ``step < warmup_steps``; then 1 (constant)
    or a cosine from 1 down to ``min_lr_ratio`` reached at ``total_steps - 1``.
    """
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(total_steps - 1 - config.warmup_steps, 1)
    t = min(max(step - config.warmup_steps, 0) / span, 1.0)
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                    config: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR applying :func:`lr_factor`; call ``scheduler.step()`` once per optimizer step.
    Its ``state_dict`` holds plain numbers only (safe for ``weights_only`` loading)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, config))


def clip_gradients(params: Iterable[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """Global L2 norm of the gradients (before clipping); clip to ``max_norm`` unless None."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm is None:
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in params]))
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


def summary_rows(assignment: GroupAssignment, config: OptimConfig) -> list[tuple[str, str, int, int, str]]:
    """Rows ``(group, lr, n_tensors, n_params, prefixes)`` for every trainable group, then
    ``frozen`` (explicit + unclaimed) and ``total``."""
    rows = []
    total_t = total_p = 0
    for g in config.groups:
        items = assignment.trainable[g.name]
        n_p = sum(p.numel() for _, p in items)
        rows.append((g.name, f"{g.lr:g}", len(items), n_p, ", ".join(g.prefixes)))
        total_t += len(items)
        total_p += n_p
    n_frozen = sum(p.numel() for _, p in assignment.frozen)
    rows.append(("frozen", "-", len(assignment.frozen), n_frozen, ", ".join(config.frozen_prefixes) + " (+ unclaimed)"))
    rows.append(("total", "-", total_t + len(assignment.frozen), total_p + n_frozen, f"trainable: {total_p}"))
    return rows


def format_summary(assignment: GroupAssignment, config: OptimConfig) -> str:
    """A fixed-width text table of :func:`summary_rows`."""
    head = ("group", "lr", "tensors", "params", "prefixes")
    rows = [head] + [(a, b, str(c), f"{d:,}", e) for a, b, c, d, e in summary_rows(assignment, config)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]),
                                r[3].rjust(widths[3]), r[4]]))
        if i == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)
