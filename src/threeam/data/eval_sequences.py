"""Evaluation sequences as 3AM builds them, and the reappearance "Selected Subset".

Per object track of a scene (3AM, Sec. 4):

* the object is *visible* in frame t when its GT mask has at least ``min_mask_pixels`` pixels;
* the **conditioning frame** is the frame with the largest visible GT mask (earliest on ties);
  the tracker is prompted there with the GT mask and tracks **forward** (cond .. T-1) and
  **backward** (cond .. 0); every frame is scored, including frames where the object is absent;
* the **Whole Set** holds every object visible in at least one frame;
* the **Selected Subset** keeps objects whose visibility splits into at least ``min_segments``
  separate segments (maximal runs of visible frames) each *longer than* ``l_min`` frames, i.e. the
  object leaves the view and comes back (the paper gives no values; defaults are our choice).

Frames whose instance ids are unknown (e.g. ScanNet++ frames without a pose) are listed in
``unannotated`` and must be skipped when scoring; they count as not visible for segments.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from threeam.data.types import Scene
from threeam.data.visibility import VisibilityTable
from threeam.errors import InputError
from threeam.io.atomic import atomic_write_text

__all__ = ["EvalSequenceConfig", "EvalSequence", "visibility_segments", "build_eval_sequences",
           "selected_subset", "write_eval_sequences", "read_eval_sequences"]

FORMAT = "threeam-eval-sequences"


@dataclass(frozen=True)
class EvalSequenceConfig:
    """Thresholds of the evaluation-sequence builder.

    Attributes:
        min_mask_pixels: a frame counts as "object visible" from this many GT mask pixels (default 100).
        l_min: a visibility segment counts only if it is longer than ``l_min`` frames (default 5).
        min_segments: Selected Subset = at least this many such segments (default 2, i.e. one
            disappearance followed by a reappearance).
    """

    min_mask_pixels: int = 100
    l_min: int = 5
    min_segments: int = 2

    def __post_init__(self) -> None:
        if self.min_mask_pixels < 1 or self.l_min < 0 or self.min_segments < 1:
            raise InputError(f"need min_mask_pixels >= 1, l_min >= 0, min_segments >= 1; got {self}")


@dataclass
class EvalSequence:
    """One object track to evaluate.

    Attributes:
        scene: scene name. object_id: the object. n_frames: frames in the scene.
        cond_frame: conditioning (prompt) frame index; largest visible GT mask.
        cond_area: its mask pixel count.
        segments: ``[start, end]`` (inclusive) runs of visible frames longer than ``l_min``.
        all_segments: every run of visible frames.
        selected: member of the Selected Subset.
        unannotated: frames without GT (skip when scoring).
    """

    scene: str
    object_id: int
    n_frames: int
    cond_frame: int
    cond_area: int
    segments: list[list[int]]
    all_segments: list[list[int]]
    selected: bool
    unannotated: list[int] = field(default_factory=list)

    @property
    def forward_frames(self) -> list[int]:
        """cond_frame, cond_frame + 1, ..., n_frames - 1."""
        return list(range(self.cond_frame, self.n_frames))

    @property
    def backward_frames(self) -> list[int]:
        """cond_frame, cond_frame - 1, ..., 0."""
        return list(range(self.cond_frame, -1, -1))


def visibility_segments(visible: np.ndarray) -> list[list[int]]:
    """Maximal runs of True in a ``(T,)`` bool array as ``[start, end]`` (inclusive)."""
    v = np.concatenate([[0], np.asarray(visible, dtype=np.int8), [0]])
    d = np.diff(v)
    starts = np.nonzero(d == 1)[0]
    ends = np.nonzero(d == -1)[0] - 1
    return [[int(s), int(e)] for s, e in zip(starts, ends)]


def build_eval_sequences(scene: Scene, config: EvalSequenceConfig = EvalSequenceConfig(),
                         vis: VisibilityTable | None = None, object_ids: Sequence[int] | None = None) -> list[EvalSequence]:
    """Whole-Set sequences of one scene (``selected`` marks the Selected Subset), sorted by object id."""
    vis = vis or VisibilityTable(scene)
    out = []
    ids = vis.objects(config.min_mask_pixels) if object_ids is None else list(object_ids)
    for oid in ids:
        area = vis.area(oid)
        visible = area >= config.min_mask_pixels
        if not visible.any():
            continue
        cond = int(np.argmax(area))
        runs = visibility_segments(visible)
        long_runs = [r for r in runs if r[1] - r[0] + 1 > config.l_min]
        out.append(EvalSequence(scene=scene.name, object_id=int(oid), n_frames=len(scene), cond_frame=cond,
                                cond_area=int(area[cond]), segments=long_runs, all_segments=runs,
                                selected=len(long_runs) >= config.min_segments,
                                unannotated=sorted(vis.unknown)))
    return out


def selected_subset(seqs: Sequence[EvalSequence]) -> list[EvalSequence]:
    return [s for s in seqs if s.selected]


def write_eval_sequences(path: str | os.PathLike, seqs: Sequence[EvalSequence],
                         config: EvalSequenceConfig | None = None) -> None:
    """Write sequences as JSON (atomic): ``{"format", "version", "config", "sequences": [...]}``."""
    doc = {"format": FORMAT, "version": 1, "config": asdict(config) if config else None,
           "sequences": [asdict(s) for s in seqs]}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def read_eval_sequences(path: str | os.PathLike) -> list[EvalSequence]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"evaluation sequence file not found: {path}")
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise InputError(f"{path} is not a {FORMAT} file")
        return [EvalSequence(**s) for s in doc["sequences"]]
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"cannot read evaluation sequences {path}: {e}") from e
