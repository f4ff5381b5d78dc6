"""SAM2Long as a memory policy: a tree of segmentation pathways with IoU-gated memories.

From the SAM2Long paper's description (Ding et al., "SAM2Long: Enhancing SAM 2 for Long Video
Segmentation with a Training-Free Memory Tree"), implemented on our SAM 2 tracking step:

* **P pathways** (default 3), each with its own memory history. On every frame each pathway runs
  SAM 2's step against its own memory and yields the decoder's M = 3 multimask candidates,
  giving 3P branches.
* **Cumulative score** of a branch = parent's score + ``log(max(predicted IoU, 0) + 1e-5)``; the P
  best branches survive (ties: earlier pathway, then earlier candidate, as ``argmax``).
* **Uncertain frames**: when every branch's ``|object score logit| <= uncertainty`` (default 2),
  survivors are picked for diversity: first branches whose IoU rounded to 2 decimals (negated
  when the object is predicted absent) is new, then the best branch of each pathway not yet
  continued, then by score.
* **IoU-gated memory**: a tracked frame enters a pathway's memory only if its predicted IoU is
  above ``iou_threshold`` (default 0.1) and the object is predicted present; the pathway's
  previous frame is always attended to. ``iou_threshold=None`` disables the gate. The memory
  frames, nearest first, take SAM 2's recent-memory slots and object-pointer offsets by rank
  (the nearest one the adjacent slot, ...), so frames left out by the gate are replaced by
  older valid ones.
* **Offline answer**: the output of a pass is the history of the highest-scoring pathway at the end
  (`MemoryPolicy.end_pass` revises the frames where it differs from what was yielded online).

Not implemented: the object-aware modulation of memory-attention keys (a [0.95, 1.05] rescaling
ranked by object score), which needs a change inside memory attention.

With ``num_pathways=1`` and ``iou_threshold=None`` this is exactly SAM 2 (same masks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from threeam.config_checks import check_ints, check_numbers
from threeam.errors import InputError
from threeam.eval.baselines.policy import Candidates, MemoryPolicy, bank_view, candidate_output, candidate_step
from threeam.predictor.state import COND
from threeam.presets import preset_functions

__all__ = ["SAM2LongConfig", "SAM2LONG_PRESETS", "get_sam2long_config", "sam2long_presets", "SAM2LongPolicy"]


@dataclass(frozen=True)
class SAM2LongConfig:
    """SAM2Long settings (defaults = the paper's / official run flags).

    Attributes:
        num_pathways: P, pathways kept per object (>= 1).
        iou_threshold: memory gate on the predicted IoU (None: every frame enters memory).
        uncertainty: object-score logit magnitude under which a frame counts as ambiguous.
        eps: added to the IoU before the log.
    """

    num_pathways: int = 3
    iou_threshold: float | None = 0.1
    uncertainty: float = 2.0
    eps: float = 1e-5

    def __post_init__(self) -> None:
        check_ints(self, {"num_pathways": 1}, "SAM2Long")
        check_numbers(self, {"uncertainty": (0.0, None)}, "SAM2Long")
        if self.eps <= 0:
            raise InputError(f"SAM2Long eps must be > 0, got {self.eps}")


SAM2LONG_PRESETS: dict[str, SAM2LongConfig] = {
    "default": SAM2LongConfig(),
    "sam2_equivalent": SAM2LongConfig(num_pathways=1, iou_threshold=None),
}


# ``default``: the paper's settings; ``sam2_equivalent``: tracks exactly as plain SAM 2
get_sam2long_config, sam2long_presets = preset_functions(SAM2LONG_PRESETS, "sam2long", "SAM2Long", default="default")


@dataclass
class _Pathway:
    score: float = 0.0
    history: dict = field(default_factory=dict)   # frame -> compact output (every tracked frame)
    memory: dict = field(default_factory=dict)    # frame -> compact output (gated)
    last: int | None = None
    pred: torch.Tensor | None = None


@dataclass
class _Branch:
    score: float
    parent: int
    k: int
    iou: float
    cands: Candidates


class SAM2LongPolicy(MemoryPolicy):
    """SAM2Long memory tree; see the module docstring. State is per object and per pass."""

    name = "sam2long"

    def __init__(self, config: SAM2LongConfig | str = "default") -> None:
        super().__init__()
        self.config = get_sam2long_config(config) if isinstance(config, str) else config
        self.paths: dict[int, list[_Pathway]] = {}

    def begin_pass(self, predictor, state, reverse: bool) -> None:
        super().begin_pass(predictor, state, reverse)
        self.paths = {}

    def end_pass(self, predictor, state) -> dict[int, dict[int, dict]]:
        return {obj_idx: dict(paths[0].history) for obj_idx, paths in self.paths.items() if paths}

    def _select(self, branches: list[_Branch]) -> list[_Branch]:
        p = self.config.num_pathways
        order = sorted(range(len(branches)), key=lambda i: (-branches[i].score, i))
        ranked = [branches[i] for i in order]
        uncertain = all(abs(float(b.cands.object_score_logits.item())) <= self.config.uncertainty for b in branches)
        if not uncertain or len(ranked) <= p:
            return ranked[:p]
        chosen: list[_Branch] = []
        seen_iou: set[float] = set()
        for b in ranked:
            r = round(b.iou if b.cands.present else -b.iou, 2)
            if len(chosen) < p and r not in seen_iou:
                chosen.append(b)
                seen_iou.add(r)
        seen_parent = {b.parent for b in chosen}
        for b in ranked:
            if len(chosen) < p and b not in chosen and b.parent not in seen_parent:
                chosen.append(b)
                seen_parent.add(b.parent)
        for b in ranked:
            if len(chosen) < p and b not in chosen:
                chosen.append(b)
        return sorted(chosen, key=lambda b: -b.score)

    def step(self, predictor, state, obj_idx: int, bank: dict, frame_idx: int, reverse: bool):
        cfg = self.config
        paths = self.paths.setdefault(obj_idx, [_Pathway()])
        cond = bank[COND]
        branches: list[_Branch] = []
        model = predictor.model
        n_ptrs = max(min(state.num_frames, model.max_obj_ptrs_in_encoder) - 1, model.num_maskmem - 1)
        for pi, path in enumerate(paths):
            # memory frames: the gated ones plus the previous frame, nearest first; they take SAM 2's
            # recent slots (and pointer offsets) by rank
            valid = set(path.memory)
            if path.last is not None:
                valid.add(path.last)
            nearest = sorted(valid, reverse=not reverse)[:n_ptrs]
            step = 1 if reverse else -1
            non_cond = {frame_idx + step * i: path.history[t] for i, t in enumerate(nearest, 1)}
            if pi == 0:
                self._trace(obj_idx, frame_idx, list(cond), nearest[:model.num_maskmem - 1])
            cands = candidate_step(predictor, state, bank_view(cond, non_cond), frame_idx, reverse)
            for k in range(cands.num):
                iou = float(cands.ious[k])
                branches.append(_Branch(path.score + math.log(max(iou, 0.0) + cfg.eps), pi, k, iou, cands))
        survivors = self._select(branches)
        new_paths = []
        for b in survivors:
            out, pred = candidate_output(predictor, state, b.cands, b.k)
            parent = paths[b.parent]
            history = dict(parent.history)
            history[frame_idx] = out
            memory = dict(parent.memory)
            if cfg.iou_threshold is None or (b.iou > cfg.iou_threshold and b.cands.present):
                memory[frame_idx] = out
            new_paths.append(_Pathway(b.score, history, memory, frame_idx, pred))
        self.paths[obj_idx] = new_paths
        best = new_paths[0]
        return best.history[frame_idx], best.pred
