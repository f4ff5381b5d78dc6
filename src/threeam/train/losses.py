"""SAM 2 training losses (the recipe 3AM keeps unchanged).

Per frame and per object, the model produces, for every prompting step (the initial
prompt plus each correction click), ``M`` candidate mask logits (M = 3 with multimask
output, else 1), ``M`` predicted IoUs and one object-score logit. The loss is:

* **mask**: sigmoid focal loss (alpha 0.25, gamma 2), averaged over pixels, weight 20;
* **dice**: ``1 - (2 |p g| + 1) / (|p| + |g| + 1)`` on sigmoid probabilities, weight 1;
* **iou**: L1 between the predicted IoU and the actual IoU of the binarised mask
  (logit > 0) with the ground truth, weight 1 (SAM 2.1's decoder predicts the IoU
  through a sigmoid, so the prediction lies in [0, 1]);
* **class**: binary cross-entropy with logits on the object-score logit against
  "the object has at least one pixel in this frame", weight 1.

Rules (those of SAM 2's ``MultiStepMultiMasksAndIous`` as configured for SAM 2.1):

* With ``M > 1`` only the candidate with the lowest ``20 * focal + 1 * dice`` receives
  the mask and dice losses (min-loss rule); the IoU loss is averaged over all ``M``
  candidates (``supervise_all_iou``).
* Mask, dice and IoU losses are multiplied by "object present", so frames where the
  object is absent only supervise the object score.
* Every term is divided by the number of objects ``N`` (at least 1), then summed over
  objects, prompting steps and frames; the total is the weighted sum of the four terms.

Shapes: ``N`` objects, ``M`` candidates, ``H x W`` the mask resolution (SAM 2 compares at
the input image resolution, e.g. 1024 x 1024, after upsampling the low-res logits).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from threeam.errors import InputError

__all__ = [
    "LossWeights",
    "FrameOutputs",
    "sigmoid_focal_loss",
    "dice_loss",
    "iou_l1_loss",
    "object_score_loss",
    "multimask_losses",
    "SAM2Loss",
]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the four SAM 2 loss terms (defaults: SAM 2.1 training configs)."""

    mask: float = 20.0
    """Sigmoid focal loss on mask logits (official key ``loss_mask``)."""
    dice: float = 1.0
    """Dice loss on mask probabilities (``loss_dice``)."""
    iou: float = 1.0
    """L1 (or MSE) between predicted and actual IoU (``loss_iou``)."""
    object_score: float = 1.0
    """BCE with logits on the object-score logit (``loss_class``)."""

    def __post_init__(self) -> None:
        for name in ("mask", "dice", "iou", "object_score"):
            value = getattr(self, name)
            if not (value >= 0.0):
                raise InputError(f"loss weight {name!r} must be >= 0, got {value}")


def _check_4d(name: str, t: torch.Tensor) -> None:
    if t.dim() != 4:
        raise InputError(f"{name} must have shape (N, M, H, W), got {tuple(t.shape)}")


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Focal loss per candidate mask, averaged over pixels.

    logits, targets: (N, M, H, W) (targets in {0, 1}, float). Returns (N, M).
    ``alpha < 0`` disables the class-balancing factor.
    """
    _check_4d("logits", logits)
    return _focal_elementwise(logits, targets, alpha, gamma).flatten(2).mean(-1)


def _focal_elementwise(logits: torch.Tensor, targets: torch.Tensor, alpha: float,
                       gamma: float) -> torch.Tensor:
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_true = prob * targets + (1.0 - prob) * (1.0 - targets)
    loss = ce * (1.0 - p_true) ** gamma if gamma != 0 else ce
    if alpha >= 0:
        loss = loss * (alpha * targets + (1.0 - alpha) * (1.0 - targets))
    return loss


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss per candidate mask with +1 smoothing.

    logits, targets: (N, M, H, W). Returns (N, M):
    ``1 - (2 sum(p g) + 1) / (sum(p) + sum(g) + 1)`` with ``p = sigmoid(logits)``.
    """
    _check_4d("logits", logits)
    p = logits.sigmoid().flatten(2)
    g = targets.flatten(2)
    return 1.0 - (2.0 * (p * g).sum(-1) + 1.0) / (p.sum(-1) + g.sum(-1) + 1.0)


def iou_l1_loss(logits: torch.Tensor, targets: torch.Tensor, pred_iou: torch.Tensor,
                use_l1: bool = True) -> torch.Tensor:
    """IoU-head loss per candidate.

    logits, targets: (N, M, H, W); pred_iou: (N, M). The actual IoU compares
    ``logits > 0`` with ``targets > 0`` (union clamped to at least 1 pixel, so an empty
    prediction of an empty target has IoU 0). Returns (N, M): ``|pred - actual|``
    (or the squared error when ``use_l1`` is False). No gradient flows into the masks.
    """
    _check_4d("logits", logits)
    if pred_iou.shape != logits.shape[:2]:
        raise InputError(f"pred_iou must have shape {tuple(logits.shape[:2])}, got {tuple(pred_iou.shape)}")
    pred = logits.detach().flatten(2) > 0
    gt = targets.flatten(2) > 0
    inter = (pred & gt).sum(-1).to(pred_iou.dtype)
    union = (pred | gt).sum(-1).to(pred_iou.dtype)
    actual = inter / union.clamp(min=1.0)
    if use_l1:
        return F.l1_loss(pred_iou, actual, reduction="none")
    return F.mse_loss(pred_iou, actual, reduction="none")


def object_score_loss(object_score_logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """BCE with logits per object. object_score_logits, present: (N, 1). Returns (N,)."""
    return F.binary_cross_entropy_with_logits(object_score_logits, present, reduction="none").mean(-1)


def multimask_losses(mask_logits: torch.Tensor, pred_iou: torch.Tensor,
                     object_score_logits: torch.Tensor | None, target: torch.Tensor,
                     num_objects: float, weights: LossWeights = LossWeights(),
                     focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                     supervise_all_iou: bool = True, iou_use_l1: bool = True) -> dict[str, torch.Tensor]:
    """The four loss terms of one prompting step of one frame (unweighted, / num_objects).

    mask_logits: (N, M, H, W); pred_iou: (N, M); object_score_logits: (N, 1) or None
    (no object-score head: every object counts as present and ``class`` is 0);
    target: (N, H, W) binary ground truth. Returns scalars ``mask``, ``dice``, ``iou``,
    ``class`` (each already divided by ``num_objects`` and summed over objects).
    """
    _check_4d("mask_logits", mask_logits)
    n, m = mask_logits.shape[:2]
    if target.dim() != 3 or target.shape[0] != n or target.shape[-2:] != mask_logits.shape[-2:]:
        raise InputError(f"target must have shape ({n}, {mask_logits.shape[-2]}, {mask_logits.shape[-1]}) "
                         f"to match mask_logits {tuple(mask_logits.shape)}, got {tuple(target.shape)}")
    tgt = target.to(mask_logits.dtype).unsqueeze(1).expand_as(mask_logits)
    focal = sigmoid_focal_loss(mask_logits, tgt, focal_alpha, focal_gamma)  # (N, M)
    dice = dice_loss(mask_logits, tgt)  # (N, M)
    iou = iou_l1_loss(mask_logits, tgt, pred_iou, use_l1=iou_use_l1)  # (N, M)

    if object_score_logits is None:
        present = torch.ones(n, 1, dtype=mask_logits.dtype, device=mask_logits.device)
        cls = mask_logits.new_zeros(())
    else:
        if object_score_logits.shape != (n, 1):
            raise InputError(f"object_score_logits must have shape ({n}, 1), got {tuple(object_score_logits.shape)}")
        present = (target.flatten(1) > 0).any(-1, keepdim=True).to(mask_logits.dtype)
        cls = object_score_loss(object_score_logits, present).sum() / num_objects

    if m > 1:
        combo = focal * weights.mask + dice * weights.dice
        best = combo.argmin(-1, keepdim=True)  # (N, 1)
        focal_sel = focal.gather(1, best)
        dice_sel = dice.gather(1, best)
        iou_sel = iou.mean(-1, keepdim=True) if supervise_all_iou else iou.gather(1, best)
    else:
        focal_sel, dice_sel, iou_sel = focal, dice, iou

    return {
        "mask": (focal_sel * present).sum() / num_objects,
        "dice": (dice_sel * present).sum() / num_objects,
        "iou": (iou_sel * present).sum() / num_objects,
        "class": cls,
    }


@dataclass
class FrameOutputs:
    """What the model predicted on one frame, one entry per prompting step.

    masks: list of (N, M, H, W) mask logits at the target resolution;
    ious: list of (N, M) predicted IoUs; object_score_logits: list of (N, 1) (or empty
    when the model has no object-score head).
    """

    masks: list[torch.Tensor]
    ious: list[torch.Tensor]
    object_score_logits: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def from_official(cls, outputs: Mapping[str, Sequence[torch.Tensor]]) -> "FrameOutputs":
        """Build from SAM 2 training's per-frame dict (``multistep_pred_multimasks_high_res``,
        ``multistep_pred_ious``, ``multistep_object_score_logits``)."""
        return cls(masks=list(outputs["multistep_pred_multimasks_high_res"]),
                   ious=list(outputs["multistep_pred_ious"]),
                   object_score_logits=list(outputs.get("multistep_object_score_logits", [])))


class SAM2Loss:
    """SAM 2's multi-step multi-mask loss over a clip.

    ``loss(outputs, targets)`` with ``outputs`` a sequence of :class:`FrameOutputs` (one
    per frame) and ``targets`` (T, N, H, W) binary masks returns a dict of scalars:
    ``mask``, ``dice``, ``iou``, ``class`` (unweighted sums over frames and steps, each
    divided by the number of objects) and ``total`` (their weighted sum).
    """

    def __init__(self, weights: LossWeights = LossWeights(), focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, supervise_all_iou: bool = True, iou_use_l1: bool = True,
                 predict_object_score: bool = True) -> None:
        self.weights = weights
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.supervise_all_iou = supervise_all_iou
        self.iou_use_l1 = iou_use_l1
        self.predict_object_score = predict_object_score

    def __call__(self, outputs: Sequence[FrameOutputs], targets: torch.Tensor,
                 num_objects: float | None = None) -> dict[str, torch.Tensor]:
        if targets.dim() != 4:
            raise InputError(f"targets must have shape (T, N, H, W), got {tuple(targets.shape)}")
        if len(outputs) != targets.shape[0]:
            raise InputError(f"got outputs for {len(outputs)} frames but targets for {targets.shape[0]}")
        n_obj = float(max(targets.shape[1], 1) if num_objects is None else max(num_objects, 1.0))
        totals: dict[str, torch.Tensor] = {}
        for frame_out, frame_target in zip(outputs, targets):
            steps = len(frame_out.masks)
            if len(frame_out.ious) != steps or (self.predict_object_score
                                                and len(frame_out.object_score_logits) != steps):
                raise InputError("each frame needs one mask, IoU and object-score entry per prompting step, got "
                                 f"{steps} masks, {len(frame_out.ious)} IoUs, "
                                 f"{len(frame_out.object_score_logits)} object scores")
            for s in range(steps):
                obj = frame_out.object_score_logits[s] if self.predict_object_score else None
                step = multimask_losses(frame_out.masks[s], frame_out.ious[s], obj, frame_target, n_obj,
                                        self.weights, self.focal_alpha, self.focal_gamma,
                                        self.supervise_all_iou, self.iou_use_l1)
                for key, value in step.items():
                    totals[key] = totals[key] + value if key in totals else value
        if not totals:
            zero = targets.new_zeros((), dtype=torch.float32)
            totals = {"mask": zero, "dice": zero, "iou": zero, "class": zero}
        w = self.weights
        totals["total"] = (w.mask * totals["mask"] + w.dice * totals["dice"] + w.iou * totals["iou"]
                           + w.object_score * totals["class"])
        return totals
