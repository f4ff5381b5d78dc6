"""The 3AM paper's tracking metrics, DAVIS J/F/J&F, and their aggregation over many tracks.

Per-frame score of one object track (``P_t`` predicted mask, ``G_t`` ground truth)::

    IoU_t = |P_t ∩ G_t| / |P_t ∪ G_t|      (1 when both are empty, so an empty prediction on an
                                           empty GT scores 1 and a non-empty one scores 0)

Paper metrics (v5 names, v1 names in brackets), for a set of frames:

* **IoU** — mean of ``IoU_t`` over *all* frames (object present or absent).
* **Tracking Recall** [Positive IoU] — mean over frames where the object is present in the GT
  (``|G_t| > 0``); a missed frame scores 0 there.
* **Accuracy** [Successful IoU] — mean over GT-present frames with ``IoU_t > 0`` (quality once the
  object is found); so Accuracy >= Tracking Recall.
* **False-positive rate** — share of GT-absent frames where the prediction is non-empty.

Averaging (:class:`Averaging`): ``"per_track"`` (**default**, DAVIS style: each metric is averaged
over a track's frames, then over the tracks for which it is defined) or ``"pooled"`` (frames of all
tracks pooled, then averaged). A metric with no frame to average over is ``nan`` for that track
(e.g. Tracking Recall of a track whose object is never visible) and such tracks are left out of the
per-track mean; a result with nothing to average is ``nan``.

DAVIS (``davis2017-evaluation`` semantics): J per frame is ``IoU_t`` outside void pixels, F the
boundary F-measure of :mod:`threeam.eval.boundary`; per object ``Mean`` (nanmean), ``Recall``
(share of frames > 0.5) and ``Decay`` (mean of the first minus the last of 4 temporal bins);
``J&F-Mean = (mean over objects of J-Mean + mean over objects of F-Mean) / 2``. Frame selection
(DAVIS drops the first and last frame) is the caller's choice, via ``frames``.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from threeam.errors import InputError
from threeam.eval.boundary import as_mask_stack, f_boundary, j_region

__all__ = [
    "Averaging",
    "frame_iou",
    "TrackScores",
    "score_track",
    "score_id_maps",
    "PaperScores",
    "aggregate",
    "DavisTrackScores",
    "davis_track",
    "DavisScores",
    "aggregate_davis",
    "davis_statistics",
]


class Averaging(str, enum.Enum):
    """How frame scores of many tracks are combined."""

    PER_TRACK = "per_track"  #: mean over each track's frames, then mean over tracks (default)
    POOLED = "pooled"        #: mean over the frames of all tracks together

    @classmethod
    def parse(cls, value: "Averaging | str") -> "Averaging":
        """Accept an :class:`Averaging` or its string value; anything else is an ``InputError``."""
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"averaging must be one of {[a.value for a in cls]}, got {value!r}") from None


def _select_frames(n: int, frames) -> np.ndarray:
    """Boolean ``(n,)`` selection from ``None`` (all), a bool mask or frame indices."""
    if frames is None:
        return np.ones(n, dtype=bool)
    f = np.asarray(frames)
    if f.dtype == bool:
        if f.shape != (n,):
            raise InputError(f"frame selection mask must have shape ({n},), got {tuple(f.shape)}")
        return f
    if f.size == 0:
        return np.zeros(n, dtype=bool)
    if not np.issubdtype(f.dtype, np.integer) or f.ndim != 1:
        raise InputError("frames must be None, a (T,) bool mask or a 1-D list of frame indices")
    if f.min() < -n or f.max() >= n:
        raise InputError(f"frame index out of range for {n} frames: {f.min()}..{f.max()}")
    sel = np.zeros(n, dtype=bool)
    sel[f] = True
    return sel


def _check_pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p = as_mask_stack(pred, "prediction")
    g = as_mask_stack(gt, "ground truth")
    if p.shape != g.shape:
        raise InputError(f"prediction shape {tuple(p.shape)} differs from ground-truth shape {tuple(g.shape)}")
    return p, g


def frame_iou(pred, gt) -> np.ndarray:
    """``IoU_t`` per frame.

    Args:
        pred, gt: ``(T, H, W)`` (or ``(H, W)``) bool masks of one object.

    Returns:
        ``(T,)`` float64 in [0, 1]; 1 where both masks are empty.
    """
    return np.atleast_1d(j_region(*_check_pair(pred, gt)))


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else math.nan


@dataclass(frozen=True, eq=False)
class TrackScores:
    """Per-frame results of one object track.

    Attributes:
        name: label of the track (e.g. ``"scene/obj_12"``).
        frame_iou: ``(T,)`` float64 ``IoU_t`` of the evaluated frames.
        present: ``(T,)`` bool, object visible in the GT (``|G_t| > 0``).
        predicted: ``(T,)`` bool, prediction non-empty.
    """

    name: str
    frame_iou: np.ndarray
    present: np.ndarray
    predicted: np.ndarray

    def __post_init__(self) -> None:
        n = np.shape(self.frame_iou)
        if len(n) != 1 or np.shape(self.present) != n or np.shape(self.predicted) != n:
            raise InputError("frame_iou, present and predicted must all have shape (T,)")

    @property
    def n_frames(self) -> int:
        return int(self.frame_iou.shape[0])

    @property
    def n_present(self) -> int:
        return int(self.present.sum())

    @property
    def found(self) -> np.ndarray:
        """``(T,)`` bool: GT-present frames with ``IoU_t > 0`` (Accuracy's frames)."""
        return self.present & (self.frame_iou > 0)

    @property
    def iou(self) -> float:
        """Mean ``IoU_t`` over all frames (nan if no frame)."""
        return _mean(self.frame_iou)

    @property
    def tracking_recall(self) -> float:
        """Mean ``IoU_t`` over GT-present frames (nan if the object is never present)."""
        return _mean(self.frame_iou[self.present])

    @property
    def accuracy(self) -> float:
        """Mean ``IoU_t`` over GT-present frames with ``IoU_t > 0`` (nan if none)."""
        return _mean(self.frame_iou[self.found])

    @property
    def false_positive_rate(self) -> float:
        """Share of GT-absent frames with a non-empty prediction (nan if none absent)."""
        return _mean(self.predicted[~self.present].astype(np.float64))

    def to_dict(self) -> dict:
        """Summary numbers (JSON-friendly; nan stays a float nan)."""
        return {"name": self.name, "n_frames": self.n_frames, "n_present": self.n_present,
                "iou": self.iou, "tracking_recall": self.tracking_recall, "accuracy": self.accuracy,
                "false_positive_rate": self.false_positive_rate}


def score_track(pred, gt, name: str = "", frames=None) -> TrackScores:
    """Score one object's predicted masks against its GT masks.

    Args:
        pred: ``(T, H, W)`` bool predicted masks (empty = object predicted absent).
        gt: ``(T, H, W)`` bool ground-truth masks (empty = object absent).
        name: label stored in the result.
        frames: which frames to evaluate: ``None`` (all), a ``(T,)`` bool mask or frame indices
            (e.g. ``range(1, T)`` to exclude a prompt frame 0).

    Returns:
        :class:`TrackScores` over the selected frames.
    """
    p, g = _check_pair(pred, gt)
    sel = _select_frames(p.shape[0], frames)
    p, g = p[sel], g[sel]
    return TrackScores(name=name, frame_iou=frame_iou(p, g) if p.shape[0] else np.zeros(0),
                       present=g.any(axis=(1, 2)), predicted=p.any(axis=(1, 2)))


def _check_id_stack(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3:
        raise InputError(f"{name} must be a (T, H, W) stack of id maps, got shape {tuple(x.shape)}")
    if x.dtype == bool or not np.issubdtype(x.dtype, np.integer):
        raise InputError(f"{name} must have an integer dtype, got {x.dtype}")
    return x


def score_id_maps(pred_ids, gt_ids, object_ids: Iterable[int] | None = None, name: str = "",
                  frames=None) -> list[TrackScores]:
    """Score every object of a sequence given as id maps (0 = background).

    Args:
        pred_ids, gt_ids: ``(T, H, W)`` integer id maps.
        object_ids: objects to score; default: every non-zero id in the GT.
        name: sequence label; tracks are named ``f"{name}/{object_id}"``.
        frames: frame selection as in :func:`score_track`.

    Returns:
        One :class:`TrackScores` per object, in ascending id order.
    """
    p = _check_id_stack(pred_ids, "predicted id maps")
    g = _check_id_stack(gt_ids, "ground-truth id maps")
    if p.shape != g.shape:
        raise InputError(f"predicted id maps {tuple(p.shape)} differ from ground truth {tuple(g.shape)}")
    ids = sorted(int(i) for i in (np.unique(g) if object_ids is None else object_ids) if int(i) != 0)
    return [score_track(p == i, g == i, name=f"{name}/{i}", frames=frames) for i in ids]


@dataclass(frozen=True)
class PaperScores:
    """The paper's columns over a set of tracks (fractions in [0, 1], nan when undefined)."""

    iou: float
    tracking_recall: float
    accuracy: float
    false_positive_rate: float
    averaging: str
    n_tracks: int
    n_frames: int
    n_present_frames: int

    def to_dict(self) -> dict:
        return {"IoU": self.iou, "Tracking Recall": self.tracking_recall, "Accuracy": self.accuracy,
                "False-positive rate": self.false_positive_rate, "averaging": self.averaging,
                "tracks": self.n_tracks, "frames": self.n_frames, "present frames": self.n_present_frames}


def _nanmean(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def aggregate(tracks: Sequence[TrackScores], averaging: Averaging | str = Averaging.PER_TRACK) -> PaperScores:
    """Combine many tracks into the paper's columns (IoU, Tracking Recall, Accuracy) and the FPR.

    Args:
        tracks: per-track results (e.g. from :func:`score_track`).
        averaging: ``"per_track"`` (default: per-track means, then the mean over tracks for which
            the metric is defined) or ``"pooled"`` (all frames of all tracks together).

    Returns:
        :class:`PaperScores`.
    """
    mode = Averaging.parse(averaging)
    tracks = list(tracks)
    if mode is Averaging.POOLED:
        if tracks:
            iou = np.concatenate([t.frame_iou for t in tracks])
            present = np.concatenate([t.present for t in tracks])
            predicted = np.concatenate([t.predicted for t in tracks])
        else:
            iou, present, predicted = np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)
        pooled = TrackScores("pooled", iou, present, predicted)
        vals = (pooled.iou, pooled.tracking_recall, pooled.accuracy, pooled.false_positive_rate)
    else:
        vals = tuple(_nanmean([getattr(t, k) for t in tracks])
                     for k in ("iou", "tracking_recall", "accuracy", "false_positive_rate"))
    return PaperScores(*vals, averaging=mode.value, n_tracks=len(tracks),
                       n_frames=sum(t.n_frames for t in tracks),
                       n_present_frames=sum(t.n_present for t in tracks))


# ----------------------------------------------------------------------------------------- DAVIS

def davis_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """DAVIS Mean, Recall and Decay of one object's per-frame J or F values.

    ``Mean`` = nanmean; ``Recall`` = share of frames with value > 0.5; ``Decay`` = nanmean of the
    first minus nanmean of the last of 4 temporal bins, bin edges
    ``round(linspace(1, T, 5)) - 1`` with both edges inclusive (as davis2017; indices kept as
    integers, so sequences over 255 frames do not wrap as in davis2017's uint8 indices).

    Args:
        per_frame: ``(T,)`` float.
    """
    v = np.asarray(per_frame, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        return math.nan, math.nan, math.nan
    mean = _nanmean(v)
    recall = float(np.mean(v > 0.5))  # as davis2017: a nan frame counts as not recalled
    edges = (np.round(np.linspace(1, v.size, 5) + 1e-10) - 1).astype(np.int64)
    bins = [v[edges[i]:edges[i + 1] + 1] for i in range(4)]
    decay = _nanmean(bins[0]) - _nanmean(bins[3])
    return mean, recall, decay


@dataclass(frozen=True, eq=False)
class DavisTrackScores:
    """Per-frame DAVIS J and F of one object: ``j`` and ``f`` are ``(T,)`` float64."""

    name: str
    j: np.ndarray
    f: np.ndarray

    @property
    def j_stats(self) -> tuple[float, float, float]:
        """(Mean, Recall, Decay) of J."""
        return davis_statistics(self.j)

    @property
    def f_stats(self) -> tuple[float, float, float]:
        """(Mean, Recall, Decay) of F."""
        return davis_statistics(self.f)


def davis_track(pred, gt, name: str = "", void=None, bound_th: float = 0.008,
                frames=None) -> DavisTrackScores:
    """DAVIS J and F per frame for one object.

    Args:
        pred, gt: ``(T, H, W)`` bool masks.
        void: optional ``(T, H, W)`` / ``(H, W)`` bool pixels to ignore (DAVIS label 255).
        bound_th: boundary tolerance (fraction of the image diagonal, or pixels if >= 1).
        frames: frame selection as in :func:`score_track` (DAVIS semi-supervised: ``range(1, T-1)``).
    """
    p, g = _check_pair(pred, gt)
    sel = _select_frames(p.shape[0], frames)
    v = None
    if void is not None:
        v = as_mask_stack(void, "void mask")
        if v.shape[0] == p.shape[0]:
            v = v[sel]
    p, g = p[sel], g[sel]
    if p.shape[0] == 0:
        return DavisTrackScores(name, np.zeros(0), np.zeros(0))
    return DavisTrackScores(name, np.atleast_1d(j_region(p, g, v)),
                            np.atleast_1d(f_boundary(p, g, v, bound_th=bound_th)))


@dataclass(frozen=True)
class DavisScores:
    """DAVIS global scores (fractions in [0, 1]): means over objects of per-object statistics."""

    jf_mean: float
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float
    n_objects: int

    def to_dict(self) -> dict:
        return {"J&F-Mean": self.jf_mean, "J-Mean": self.j_mean, "J-Recall": self.j_recall,
                "J-Decay": self.j_decay, "F-Mean": self.f_mean, "F-Recall": self.f_recall,
                "F-Decay": self.f_decay, "objects": self.n_objects}


def aggregate_davis(tracks: Sequence[DavisTrackScores]) -> DavisScores:
    """Global DAVIS scores: each statistic averaged over objects; J&F-Mean = (J-Mean + F-Mean) / 2."""
    tracks = list(tracks)
    js = np.array([t.j_stats for t in tracks], dtype=np.float64).reshape(-1, 3)
    fs = np.array([t.f_stats for t in tracks], dtype=np.float64).reshape(-1, 3)
    jm = [_nanmean(js[:, k]) for k in range(3)]
    fm = [_nanmean(fs[:, k]) for k in range(3)]
    return DavisScores((jm[0] + fm[0]) / 2, *jm, *fm, n_objects=len(tracks))
