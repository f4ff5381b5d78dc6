"""Prompt simulation for training on video clips (SAM 2's recipe, reimplemented).

Coordinates follow SAM 2's prompt encoder: a point is ``(x, y)`` in pixel-index units of
the mask it was sampled from (``x`` = column, ``y`` = row; the encoder adds the half-pixel
shift itself). Labels: 1 positive click, 0 negative click, 2 / 3 the top-left /
bottom-right box corners.

All randomness comes from a ``numpy.random.Generator`` (pass an int seed or a generator),
so the same seed gives the same prompts.

Per clip (see :func:`plan_clip_prompts`, following SAM 2's ``prepare_prompt_inputs``):

* with probability ``1 - prob_point_input`` the ground-truth mask itself is the prompt on
  every initial conditioning frame and no corrections are made;
* otherwise every conditioning frame gets a box (probability ``prob_box``) or one
  positive click sampled uniformly inside the object, and correction clicks are added on
  ``frames_to_correct`` (the conditioning frames plus, at random, a few others).

Correction clicks (:func:`corrective_click`) come from the error between a prediction and
the ground truth: either at the interior point of the largest error component (``center``:
the pixel farthest from the component's boundary by Euclidean distance transform, the
image border counting as boundary) or uniformly over all error pixels (``uniform``,
SAM 2's training default). The click is positive on a false-negative region and
negative on a false-positive one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy import ndimage

from threeam.errors import InputError

__all__ = [
    "PointPrompt",
    "Prompt",
    "PromptSimConfig",
    "ClipPromptPlan",
    "as_generator",
    "mask_to_box",
    "sample_box",
    "sample_clicks",
    "corrective_click",
    "simulate_correction",
    "initial_prompt",
    "plan_clip_prompts",
]

Seed = int | np.random.Generator | None


def as_generator(rng: Seed) -> np.random.Generator:
    """An int seed (or None) becomes ``numpy.random.default_rng(seed)``; a generator passes through."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


@dataclass
class PointPrompt:
    """Points and labels for SAM 2's prompt encoder: points (K, 2) float (x, y), labels (K,) int32."""

    points: torch.Tensor
    labels: torch.Tensor

    def cat(self, other: "PointPrompt") -> "PointPrompt":
        """This prompt followed by `other` (e.g. a correction click appended to the history)."""
        return PointPrompt(torch.cat([self.points, other.points]), torch.cat([self.labels, other.labels]))


@dataclass
class Prompt:
    """One frame's prompt: exactly one of ``mask`` ((H, W) bool) or ``points`` is set."""

    kind: Literal["mask", "box", "clicks"]
    mask: torch.Tensor | None = None
    points: PointPrompt | None = None


@dataclass(frozen=True)
class PromptSimConfig:
    """Probabilities and counts of the prompt simulation (defaults: SAM 2.1 training configs).

    ``masks_only`` forces mask prompts (3AM uses masks only on ScanNet++ and ASE).
    """

    prob_point_input: float = 0.5
    prob_box: float = 0.5
    num_init_cond_frames: int = 2
    rand_init_cond_frames: bool = True
    num_frames_to_correct: int = 2
    rand_frames_to_correct: bool = True
    num_correction_clicks: int = 7
    correction_method: Literal["uniform", "center"] = "uniform"
    prob_click_from_gt: float = 0.1
    box_noise: float = 0.1
    box_noise_bound: float = 20.0
    masks_only: bool = False

    def __post_init__(self) -> None:
        for name in ("prob_point_input", "prob_box", "prob_click_from_gt"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must lie in [0, 1], got {v}")
        if self.num_init_cond_frames < 1:
            raise InputError(f"num_init_cond_frames must be >= 1, got {self.num_init_cond_frames}")
        if self.num_frames_to_correct < 0 or self.num_correction_clicks < 0:
            raise InputError("num_frames_to_correct and num_correction_clicks must be >= 0")
        if self.correction_method not in ("uniform", "center"):
            raise InputError(f"correction_method must be 'uniform' or 'center', got {self.correction_method!r}")


@dataclass
class ClipPromptPlan:
    """Which frames of a clip get which prompt.

    use_points: False means mask prompts on every initial conditioning frame;
    init_cond_frames: frame indices (the first is always the start frame);
    frames_to_correct: frames that receive correction clicks (empty with mask prompts);
    frame_kinds: for each conditioning frame, "mask", "box" or "clicks".
    """

    use_points: bool
    init_cond_frames: list[int]
    frames_to_correct: list[int]
    frame_kinds: dict[int, str] = field(default_factory=dict)


def _as_bool_mask(mask: torch.Tensor | np.ndarray, name: str = "mask") -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D (H, W) mask, got shape {arr.shape}")
    return arr > 0 if arr.dtype != np.bool_ else arr


def _point_prompt(xy: list[tuple[int, int]], labels: list[int]) -> PointPrompt:
    return PointPrompt(torch.tensor(xy, dtype=torch.float32).reshape(-1, 2),
                       torch.tensor(labels, dtype=torch.int32).reshape(-1))


def mask_to_box(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Tight box (x_min, y_min, x_max, y_max) of a non-empty (H, W) mask, inclusive pixel indices, float32 (4,)."""
    m = _as_bool_mask(mask)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        raise InputError("cannot take the box of an empty mask")
    return torch.tensor([xs.min(), ys.min(), xs.max(), ys.max()], dtype=torch.float32)


def sample_box(mask: torch.Tensor | np.ndarray, rng: Seed = None, noise: float = 0.1,
               noise_bound: float = 20.0) -> PointPrompt:
    """A box prompt from a non-empty mask, each coordinate jittered uniformly by up to
    ``min(noise * box side, noise_bound)`` pixels and clamped to the image.

    Returns 2 points (top-left, bottom-right) with labels (2, 3). ``noise=0`` gives the tight box.
    """
    gen = as_generator(rng)
    m = _as_bool_mask(mask)
    h, w = m.shape
    box = mask_to_box(m).double()
    if noise > 0:
        max_dx = min(float(box[2] - box[0]) * noise, noise_bound)
        max_dy = min(float(box[3] - box[1]) * noise, noise_bound)
        jitter = (2.0 * gen.random(4) - 1.0) * np.array([max_dx, max_dy, max_dx, max_dy])
        box = box + torch.from_numpy(jitter)
        box = torch.maximum(box, torch.zeros(4, dtype=box.dtype))
        box = torch.minimum(box, torch.tensor([w - 1, h - 1, w - 1, h - 1], dtype=box.dtype))
    return PointPrompt(box.float().reshape(2, 2), torch.tensor([2, 3], dtype=torch.int32))


def _pick(gen: np.random.Generator, region: np.ndarray, k: int) -> list[tuple[int, int]]:
    ys, xs = np.nonzero(region)
    idx = gen.choice(ys.size, size=k, replace=ys.size < k)
    return [(int(xs[i]), int(ys[i])) for i in np.atleast_1d(idx)]


def sample_clicks(mask: torch.Tensor | np.ndarray, num_positive: int = 1, num_negative: int = 0,
                  rng: Seed = None) -> PointPrompt:
    """Clicks drawn uniformly: ``num_positive`` inside the mask (label 1), then
    ``num_negative`` outside it (label 0). Pixels are drawn without replacement when the
    region is large enough. Raises InputError when a needed region is empty."""
    gen = as_generator(rng)
    m = _as_bool_mask(mask)
    if num_positive < 0 or num_negative < 0 or num_positive + num_negative == 0:
        raise InputError(f"need at least one click, got num_positive={num_positive}, num_negative={num_negative}")
    xy: list[tuple[int, int]] = []
    labels: list[int] = []
    if num_positive:
        if not m.any():
            raise InputError("cannot place a positive click on an empty mask")
        xy += _pick(gen, m, num_positive)
        labels += [1] * num_positive
    if num_negative:
        if m.all():
            raise InputError("cannot place a negative click: the mask covers the whole image")
        xy += _pick(gen, ~m, num_negative)
        labels += [0] * num_negative
    return _point_prompt(xy, labels)


def _interior_point(component: np.ndarray, gen: np.random.Generator) -> tuple[int, int]:
    """The pixel of `component` farthest from its boundary (image border counts); ties broken at random."""
    dist = ndimage.distance_transform_edt(np.pad(component, 1))[1:-1, 1:-1]
    ys, xs = np.nonzero(dist == dist.max())
    i = int(gen.integers(ys.size))
    return int(xs[i]), int(ys[i])


def corrective_click(gt_mask: torch.Tensor | np.ndarray, pred_mask: torch.Tensor | np.ndarray | None,
                     rng: Seed = None, method: Literal["center", "uniform"] = "center") -> PointPrompt:
    """One correction click from the error between a prediction and the ground truth.

    gt_mask, pred_mask: (H, W) (pred None = empty prediction). Error regions: false
    negatives ``gt & ~pred`` (a click there is positive, label 1) and false positives
    ``~gt & pred`` (negative, label 0).

    * ``center``: the largest 8-connected error component (over both kinds; ties at
      random) gets a click at its interior point (maximum Euclidean distance transform).
    * ``uniform``: a pixel drawn uniformly from all error pixels.

    With no error, a negative click goes to the background (``center``: its interior point),
    or a positive one to the object if the object fills the image.
    Returns a PointPrompt with one point.
    """
    gen = as_generator(rng)
    gt = _as_bool_mask(gt_mask, "gt_mask")
    pred = np.zeros_like(gt) if pred_mask is None else _as_bool_mask(pred_mask, "pred_mask")
    if pred.shape != gt.shape:
        raise InputError(f"pred_mask shape {pred.shape} differs from gt_mask shape {gt.shape}")
    if method not in ("center", "uniform"):
        raise InputError(f"method must be 'center' or 'uniform', got {method!r}")
    fn = gt & ~pred
    fp = ~gt & pred
    if not (fn.any() or fp.any()):
        region, label = (~gt, 0) if (~gt).any() else (gt, 1)
        xy = _interior_point(region, gen) if method == "center" else _pick(gen, region, 1)[0]
        return _point_prompt([xy], [label])
    if method == "uniform":
        error = fn | fp
        x, y = _pick(gen, error, 1)[0]
        return _point_prompt([(x, y)], [1 if fn[y, x] else 0])
    eight = np.ones((3, 3), dtype=bool)
    candidates: list[tuple[int, np.ndarray, int]] = []
    for region, label in ((fn, 1), (fp, 0)):
        lab, count = ndimage.label(region, structure=eight)
        if count:
            sizes = np.bincount(lab.ravel())[1:]
            for comp in np.flatnonzero(sizes == sizes.max()):
                candidates.append((int(sizes[comp]), lab == comp + 1, label))
    best = max(size for size, _, _ in candidates)
    tied = [c for c in candidates if c[0] == best]
    _, component, label = tied[int(gen.integers(len(tied)))]
    return _point_prompt([_interior_point(component, gen)], [label])


def simulate_correction(gt_mask: torch.Tensor | np.ndarray, pred_mask: torch.Tensor | np.ndarray | None,
                        config: PromptSimConfig = PromptSimConfig(), rng: Seed = None) -> PointPrompt:
    """A training correction click: with probability ``config.prob_click_from_gt`` the
    prediction is ignored (the click is drawn as if nothing were predicted, i.e. inside the
    object), otherwise :func:`corrective_click` with ``config.correction_method``."""
    gen = as_generator(rng)
    if gen.random() < config.prob_click_from_gt:
        pred_mask = None
    return corrective_click(gt_mask, pred_mask, gen, method=config.correction_method)


def initial_prompt(gt_mask: torch.Tensor | np.ndarray, kind: Literal["mask", "box", "clicks"],
                   rng: Seed = None, config: PromptSimConfig = PromptSimConfig()) -> Prompt:
    """The prompt of a conditioning frame.

    ``mask``: the ground truth itself; ``box``: :func:`sample_box` with the config's noise;
    ``clicks`` (alias ``point``): one click drawn uniformly inside the object (a negative
    background click if the object is absent), as SAM 2 does for its initial point.
    An empty mask cannot give a box: it falls back to ``clicks``.
    """
    gen = as_generator(rng)
    m = _as_bool_mask(gt_mask, "gt_mask")
    kind = "clicks" if kind in ("point", "points") else kind  # aliases used by training configs
    if kind == "mask":
        return Prompt("mask", mask=torch.from_numpy(m.copy()))
    if kind == "box" and m.any():
        return Prompt("box", points=sample_box(m, gen, config.box_noise, config.box_noise_bound))
    if kind not in ("box", "clicks"):
        raise InputError(f"prompt kind must be 'mask', 'box' or 'clicks', got {kind!r}")
    return Prompt("clicks", points=corrective_click(m, None, gen, method="uniform"))


def plan_clip_prompts(num_frames: int, config: PromptSimConfig = PromptSimConfig(), rng: Seed = None,
                      start_frame: int = 0) -> ClipPromptPlan:
    """Decide the prompt type and the conditioning / correction frames of one clip.

    Frame ``start_frame`` is always a conditioning frame; with ``rand_init_cond_frames`` the
    number of conditioning frames is uniform in [1, num_init_cond_frames], the others drawn
    without replacement from the remaining frames. A single-frame clip always uses points.
    """
    gen = as_generator(rng)
    if num_frames < 1 or not 0 <= start_frame < num_frames:
        raise InputError(f"need num_frames >= 1 and 0 <= start_frame < num_frames, got {num_frames}, {start_frame}")
    prob_points = 0.0 if config.masks_only else config.prob_point_input
    n_init, n_correct = config.num_init_cond_frames, config.num_frames_to_correct
    if num_frames == 1 and not config.masks_only:
        prob_points, n_init, n_correct = 1.0, 1, 1
    n_init = min(n_init, num_frames - start_frame)
    use_points = bool(gen.random() < prob_points)
    if config.rand_init_cond_frames and n_init > 1:
        n_init = int(gen.integers(1, n_init, endpoint=True))
    rest = list(range(start_frame + 1, num_frames))
    init = [start_frame] + [int(t) for t in gen.choice(rest, n_init - 1, replace=False)] if n_init > 1 \
        else [start_frame]
    if not use_points:
        return ClipPromptPlan(False, init, [], {t: "mask" for t in init})
    n_correct = min(n_correct, num_frames - start_frame)
    if config.rand_frames_to_correct and n_correct > n_init:
        n_correct = int(gen.integers(n_init, n_correct, endpoint=True))
    not_init = [t for t in range(start_frame, num_frames) if t not in init]
    extra = n_correct - n_init
    to_correct = init + ([int(t) for t in gen.choice(not_init, extra, replace=False)] if extra > 0 else [])
    if config.num_frames_to_correct == 0:
        to_correct = []
    kinds = {t: ("box" if gen.random() < config.prob_box else "clicks") for t in init}
    return ClipPromptPlan(True, init, to_correct, kinds)
