"""2D proposals on keyframes: the `ProposalSource` seam.

A proposal source turns one keyframe into object masks. The pipeline uses SAM 2's automatic mask
generator (`AMGProposals`); `GTProposals` reads the frame's GT instance masks instead, so that the
lifting, merging and AP code can be checked without a trained model (docs/lift3d.md).

Every source's output goes through `filter_proposals`: masks that are too small or lie mostly on
pixels without depth are dropped, the rest sorted by predicted IoU and capped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, runtime_checkable

import numpy as np

from threeam.errors import InputError
from threeam.lift3d.config import LiftConfig
from threeam.lift3d.scene import LiftFrame

__all__ = ["Proposal", "ProposalSource", "GTProposals", "AMGProposals", "filter_proposals"]


@dataclass
class Proposal:
    """One 2D object mask on a keyframe.

    Attributes:
        mask: ``(H, W)`` bool at working resolution.
        score: the generator's predicted IoU (1.0 for GT masks).
        stability: the generator's stability score (1.0 for GT masks).
        gt_id: the GT instance id for GT proposals (the GT tracker follows it), else None.
    """

    mask: np.ndarray
    score: float = 1.0
    stability: float = 1.0
    gt_id: Optional[int] = None


@runtime_checkable
class ProposalSource(Protocol):
    """``source(frame) -> list[Proposal]`` for one keyframe."""

    def __call__(self, frame: LiftFrame) -> list[Proposal]: ...


class GTProposals:
    """Each GT instance visible on the keyframe (``frame.gt_ids``) is a proposal."""

    def __call__(self, frame: LiftFrame) -> list[Proposal]:
        if frame.gt_ids is None:
            raise InputError(f"frame {frame.index} has no GT instance masks; GT proposals need a scene with "
                             "2D instance ids (generated scenes have them)")
        ids = frame.gt_ids
        return [Proposal(mask=ids == i, gt_id=int(i)) for i in np.unique(ids) if i > 0]


class AMGProposals:
    """SAM 2's automatic mask generator on the keyframe's RGB.

    Args:
        generator: an object with ``generate(image (H, W, 3) uint8) -> list[dict]`` (records with
            ``segmentation`` (H, W) bool, ``predicted_iou``, ``stability_score``), e.g.
            `threeam.predictor.mask_generator.AutomaticMaskGenerator`.
    """

    def __init__(self, generator: Any) -> None:
        if not hasattr(generator, "generate"):
            raise InputError("the proposal generator must have a generate(image) method")
        self.generator = generator

    @classmethod
    def from_predictor(cls, predictor: Any, **amg_options: Any) -> "AMGProposals":
        """The automatic mask generator over a video predictor's SAM 2 model (3AM: its SAM 2 part)."""
        try:
            from threeam.predictor.mask_generator import AutomaticMaskGenerator
        except ImportError as e:  # pragma: no cover - depends on the installed version
            raise InputError("the automatic mask generator (threeam.predictor.mask_generator) is not available "
                             f"in this installation: {e}") from e
        return cls(AutomaticMaskGenerator(predictor.model, **amg_options))

    def __call__(self, frame: LiftFrame) -> list[Proposal]:
        records = self.generator.generate(frame.rgb)
        out = []
        for r in records:
            seg = r["segmentation"]
            if isinstance(seg, dict):
                from threeam.io.masks import decode_rle

                seg = decode_rle(seg)
            out.append(Proposal(mask=np.asarray(seg, dtype=bool), score=float(r.get("predicted_iou", 1.0)),
                                stability=float(r.get("stability_score", 1.0))))
        return out


def filter_proposals(proposals: list[Proposal], frame: LiftFrame, config: LiftConfig) -> list[Proposal]:
    """Drop small masks and masks mostly without depth; sort by score; keep ``max_proposals``."""
    h, w = frame.size
    min_area = config.min_proposal_area * h * w
    keep = []
    for p in proposals:
        if p.mask.shape != (h, w):
            raise InputError(f"proposal mask has size {p.mask.shape} but frame {frame.index} is {(h, w)}")
        area = int(p.mask.sum())
        if area == 0 or area < min_area:
            continue
        if frame.depth is not None:
            d = frame.depth[p.mask]
            valid = float(((d > config.min_depth) & (d <= config.max_depth)).mean())
            if valid < config.min_proposal_depth:
                continue
        keep.append(p)
    keep.sort(key=lambda p: -p.score)
    return keep[:config.max_proposals]
