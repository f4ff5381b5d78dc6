"""DAM4SAM as a memory policy: recent-appearance memory + distractor-resolving memory.

From the DAM4SAM paper's description (Videnovic, Lukezic, Kristan, "A Distractor-Aware Memory for
Visual Object Tracking with SAM2", CVPR 2025), implemented on our SAM 2 tracking step (the mask
SAM 2 picks is kept; only the memory changes):

* **RAM** (recent appearance memory): on frame t, the nearest earlier tracked frame of the pass,
  then every ``ram_every``-th frame (r = 5; absolute frame indices that are multiples of r, going
  back from there), as many as there are slots. Frames whose predicted mask is empty (object
  absent) are skipped in favour of older ones (``ram_skip_absent``), and their object pointers are
  not used. The slots are SAM 2's ``num_maskmem - 1`` = 6 recent slots minus the DRM anchors in use
  (``ram_size=None``), so RAM + DRM + the prompted frame stay at SAM 2's 7 memories. RAM frames
  keep SAM 2's temporal encodings: the i-th nearest RAM frame fills SAM 2's i-th nearest
  recent-memory slot.
* **DRM** (distractor-resolving memory, ``drm_size`` = 3 anchors, FIFO): a tracked frame becomes
  an anchor, attended like a prompted frame (no temporal encoding), when all hold: the object is
  present; the chosen mask's predicted IoU > 0.8; its area is within +-20% of the median of the
  last ``drm_area_history`` = 10 present-frame areas (this frame included; an earlier present
  frame is needed); more than ``drm_min_gap`` = 5 frames since the last anchor; and a
  **distractor** is seen: for some other multimask candidate, the chosen mask united with that
  candidate (minus the chosen mask, reduced to its largest connected component) has a bounding box
  whose IoU with the chosen mask's box is <= 0.7 (the alternative reaches well outside the
  object). The masks are compared at the decoder's resolution (S/4).

The preset ``"sam2_equivalent"`` (r = 1, absent frames kept, no DRM: RAM = the 6 previous frames)
reproduces SAM 2 exactly when the model's memory stride is 1 (all presets).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from threeam.config_checks import check_ints
from threeam.eval.baselines.policy import MemoryPolicy, bank_view, candidate_output, candidate_step
from threeam.models.sam2.sam2_base import memory_frame_indices
from threeam.predictor.state import COND
from threeam.presets import preset_functions

__all__ = ["DAM4SAMConfig", "DAM4SAM_PRESETS", "get_dam4sam_config", "dam4sam_presets", "DAM4SAMPolicy",
           "has_distractor", "bbox_iou"]


@dataclass(frozen=True)
class DAM4SAMConfig:
    """DAM4SAM settings (defaults = the paper's).

    Attributes:
        ram_size: recent-appearance slots (None: SAM 2's ``num_maskmem - 1`` recent slots minus the
            DRM anchors in use, as DAM4SAM).
        ram_every: r; besides the nearest earlier frame, RAM takes frames whose index is a multiple of r.
        ram_skip_absent: never use frames with an empty predicted mask as memory.
        drm_size: distractor-resolving anchors kept (0 disables the DRM).
        drm_min_gap: two anchors are more than this many frames apart.
        drm_min_iou: predicted IoU the chosen mask must exceed.
        drm_area_tolerance: allowed relative deviation of the mask area from the recent median.
        drm_area_history: how many recent present-frame areas (the current one included) give the median.
        distractor_bbox_iou: a distractor is present when the alternatives' box IoU is <= this.
    """

    ram_size: int | None = None
    ram_every: int = 5
    ram_skip_absent: bool = True
    drm_size: int = 3
    drm_min_gap: int = 5
    drm_min_iou: float = 0.8
    drm_area_tolerance: float = 0.2
    drm_area_history: int = 10
    distractor_bbox_iou: float = 0.7

    def __post_init__(self) -> None:
        ints = dict(ram_every=1, drm_size=0, drm_min_gap=0, drm_area_history=1)
        check_ints(self, ints if self.ram_size is None else {"ram_size": 1, **ints}, "DAM4SAM")


DAM4SAM_PRESETS: dict[str, DAM4SAMConfig] = {
    "default": DAM4SAMConfig(),
    "sam2_equivalent": DAM4SAMConfig(ram_size=None, ram_every=1, ram_skip_absent=False, drm_size=0),
}


# ``default``: the paper's settings; ``sam2_equivalent``: tracks exactly as plain SAM 2
get_dam4sam_config, dam4sam_presets = preset_functions(DAM4SAM_PRESETS, "dam4sam", "DAM4SAM", default="default")


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def bbox_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two ``(x0, y0, x1, y1)`` boxes (exclusive ends)."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (int(np.argmax(sizes)) + 1)


def has_distractor(chosen: np.ndarray, alternatives: list[np.ndarray], max_bbox_iou: float = 0.7) -> bool:
    """DAM4SAM's distractor test.

    Args:
        chosen: ``(h, w)`` bool chosen mask.
        alternatives: other candidates' ``(h, w)`` bool masks.
        max_bbox_iou: distractor when the box IoU is at most this.

    Returns:
        True when, for some alternative, the chosen mask united with that alternative (minus the
        chosen mask, reduced to its largest connected component) has a bounding box whose IoU with
        the chosen mask's box is <= the limit: the alternative reaches well outside the chosen object.
    """
    box = _bbox(chosen)
    if box is None:
        return False
    ious = []
    for alt in alternatives:
        rest = np.asarray(alt, dtype=bool) & ~chosen
        if rest.any():
            ious.append(bbox_iou(box, _bbox(chosen | _largest_component(rest))))
    return bool(ious) and min(ious) <= max_bbox_iou


@dataclass
class _ObjectMemory:
    outputs: dict = field(default_factory=dict)    # frame -> compact output of this pass
    usable: dict = field(default_factory=dict)     # frame -> may serve as memory
    drm: list = field(default_factory=list)
    areas: list = field(default_factory=list)
    last_drm: int | None = None


class DAM4SAMPolicy(MemoryPolicy):
    """DAM4SAM memory management; see the module docstring. State is per object and per pass.

    ``drm_frames[obj_idx]`` lists the anchors added in the current pass.
    """

    name = "dam4sam"

    def __init__(self, config: DAM4SAMConfig | str = "default") -> None:
        super().__init__()
        self.config = get_dam4sam_config(config) if isinstance(config, str) else config
        self.objects: dict[int, _ObjectMemory] = {}

    def begin_pass(self, predictor, state, reverse: bool) -> None:
        super().begin_pass(predictor, state, reverse)
        self.objects = {}

    @property
    def drm_frames(self) -> dict[int, list[int]]:
        return {i: list(m.drm) for i, m in self.objects.items()}

    def _ram_sources(self, mem: "_ObjectMemory", frame_idx: int, reverse: bool, n: int) -> list[int]:
        """Up to `n` RAM frames for `frame_idx`, nearest first."""
        r = self.config.ram_every
        step = 1 if reverse else -1
        drm = set(mem.drm)

        def ok(t: int) -> bool:
            return t in mem.outputs and mem.usable[t] and t not in drm

        def walk(t: int, by: int) -> int | None:  # from t (inclusive) away from frame_idx
            while t in mem.outputs:
                if ok(t):
                    return t
                t += by
            return None

        sources: list[int] = []
        if n <= 0:
            return sources
        t = walk(frame_idx + step, step)
        while t is not None and len(sources) < n:
            sources.append(t)
            # the next multiple of r beyond t (strictly), then further multiples of r
            nxt = -(-(t + 1) // r) * r if reverse else ((t - 1) // r) * r
            t = walk(nxt, step * r)
        return sources

    def _view(self, model, mem: "_ObjectMemory", cond_bank: dict, frame_idx: int, reverse: bool):
        cfg = self.config
        slots = model.num_maskmem - 1
        size = max(slots - len(mem.drm), 0) if cfg.ram_size is None else min(cfg.ram_size, slots)
        stride = model.memory_temporal_stride_for_eval
        keys = [t for _, t in reversed(memory_frame_indices(frame_idx, model.num_maskmem, stride, reverse))]
        sources = self._ram_sources(mem, frame_idx, reverse, size)
        drm = set(mem.drm)
        key_set = set(keys)
        non_cond = {t: out for t, out in mem.outputs.items() if mem.usable[t] and t not in drm and t not in key_set}
        for key, src in zip(keys, sources):
            non_cond[key] = mem.outputs[src]
        cond = dict(cond_bank)
        for t in mem.drm:
            cond[t] = mem.outputs[t]
        return bank_view(cond, non_cond), sources

    def step(self, predictor, state, obj_idx: int, bank: dict, frame_idx: int, reverse: bool):
        cfg = self.config
        model = predictor.model
        mem = self.objects.get(obj_idx)
        if mem is None:
            mem = self.objects[obj_idx] = _ObjectMemory()
            for out in bank[COND].values():  # seed the area history with the prompted frame(s)
                area = int((out["pred_masks"] > 0).sum())
                if area > 0:
                    mem.areas.append(area)
        view, sources = self._view(model, mem, bank[COND], frame_idx, reverse)
        self._trace(obj_idx, frame_idx, list(view[COND]), sources)
        cands = candidate_step(predictor, state, view, frame_idx, reverse)
        k = cands.best
        out, pred = candidate_output(predictor, state, cands, k)
        chosen = (cands.low_res[0, k] > 0).cpu().numpy()
        area = int(chosen.sum())
        present = cands.present and area > 0
        mem.outputs[frame_idx] = out
        mem.usable[frame_idx] = present or not cfg.ram_skip_absent
        if cfg.drm_size > 0 and present and self._drm_ok(mem, cands, k, chosen, area, frame_idx):
            mem.drm.append(frame_idx)
            mem.last_drm = frame_idx
            del mem.drm[:-cfg.drm_size]
        if present:
            mem.areas.append(area)
            del mem.areas[:-cfg.drm_area_history]
        return out, pred

    def _drm_ok(self, mem: _ObjectMemory, cands, k: int, chosen: np.ndarray, area: int, frame_idx: int) -> bool:
        cfg = self.config
        if float(cands.ious[k]) <= cfg.drm_min_iou or not mem.areas:
            return False
        recent = (mem.areas + [area])[-cfg.drm_area_history:]
        median = float(np.median(recent))
        if abs(area - median) > cfg.drm_area_tolerance * median:
            return False
        if mem.last_drm is not None and abs(frame_idx - mem.last_drm) <= cfg.drm_min_gap:
            return False
        alts = [(cands.low_res[0, j] > 0).cpu().numpy() for j in range(cands.num) if j != k]
        return has_distractor(chosen, alts, cfg.distractor_bbox_iou)
