"""Overlay videos of each method's worst tracks (by IoU): green = correct, red = predicted but not
GT, blue = GT missed. Only the current N worst candidates keep their masks and frames."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["OverlayCandidate", "WorstTracks", "safe_stem", "write_error_overlay"]


def safe_stem(name: str) -> str:
    """A file-name-safe version of a scene name (``room0/Sequence_1`` -> ``room0_Sequence_1``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "scene"


def write_error_overlay(path: Path, frames: np.ndarray, pred: np.ndarray, gt: np.ndarray) -> None:
    """Write an MP4 of ``frames (T, H, W, 3) uint8`` coloured by ``pred`` vs ``gt`` (both ``(T, H, W)`` bool)."""
    from threeam.io.overlay import write_overlay_video

    ids = np.zeros(pred.shape, dtype=np.int32)
    ids[pred & gt] = 1
    ids[pred & ~gt] = 2
    ids[~pred & gt] = 3
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[1], palette[2], palette[3] = (0, 200, 0), (230, 30, 30), (40, 90, 255)
    write_overlay_video(path, frames, ids, fps=10.0, palette=palette)


@dataclass
class OverlayCandidate:
    """A track that may end among a method's worst.

    Attributes:
        method, scene, object_id: which track; index: its position among the method's records.
        iou: its IoU (nan sorts last).
        pred: ``(T, H, W)`` bool predicted masks.
        frames: ``(T, H, W, 3)`` uint8 video and gt: ``(T, H, W)`` bool GT, attached once the
            scene's methods have all run (None until then).
    """

    method: str
    index: int
    scene: str
    object_id: int
    iou: float
    pred: np.ndarray
    frames: np.ndarray | None = None
    gt: np.ndarray | None = None

    @property
    def rank_key(self) -> tuple:
        return (float(np.nan_to_num(self.iou, nan=2.0)), self.index)


class WorstTracks:
    """Keeps, per method, the ``n_keep`` tracks with the lowest IoU (ties: earlier first)."""

    def __init__(self, n_keep: int) -> None:
        self.n_keep = n_keep
        self._items: dict[tuple[str, int], OverlayCandidate] = {}

    def add(self, cand: OverlayCandidate) -> None:
        if self.n_keep:
            self._items[(cand.method, cand.index)] = cand

    def end_scene(self, frames: np.ndarray, ids: np.ndarray) -> None:
        """Attach the scene's frames and GT ``ids (T, H, W)`` to the new candidates, then drop all but the worst."""
        if not self.n_keep:
            return
        for c in self._items.values():
            if c.frames is None:
                c.frames, c.gt = frames, ids == c.object_id
        self.prune()

    def prune(self) -> None:
        for m in {k[0] for k in self._items}:
            keys = sorted((k for k in self._items if k[0] == m), key=lambda k: self._items[k].rank_key)
            for k in keys[self.n_keep:]:
                del self._items[k]

    def candidates(self) -> list[OverlayCandidate]:
        """The kept candidates, by method name then track position."""
        return [self._items[k] for k in sorted(self._items)]

    def write(self, folder: Path) -> None:
        """Write ``folder/<method>/<scene>__<obj>.mp4`` for each kept candidate."""
        if not self.n_keep:
            return
        self.prune()
        for c in self.candidates():
            write_error_overlay(Path(folder) / c.method / f"{safe_stem(c.scene)}__{c.object_id}.mp4",
                                c.frames, c.pred, c.gt)
