"""Mask post-processing that runs anywhere (the official code needs a CUDA extension for it).

Connected components are labelled with 8-connectivity by `scipy.ndimage.label` on the CPU; the
result is moved back to the input's device. Mask scores are logits: foreground is ``score > 0``.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from threeam.errors import InputError

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Label the 8-connected components of binary masks.

    Args:
        mask: bool or 0/1 tensor ``(N, 1, H, W)``.

    Returns:
        labels: int32 ``(N, 1, H, W)``, 0 on background, 1..K per component (per mask);
        areas: int32 ``(N, 1, H, W)``, the pixel count of the component each pixel belongs to
            (0 on background).
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise InputError(f"masks must have shape (N, 1, H, W), got {tuple(mask.shape)}")
    binary = (mask.detach().to("cpu") > 0).numpy()
    labels = np.zeros(binary.shape, dtype=np.int32)
    areas = np.zeros(binary.shape, dtype=np.int32)
    for n in range(binary.shape[0]):
        lab, count = ndimage.label(binary[n, 0], structure=_EIGHT_CONNECTED)
        labels[n, 0] = lab
        if count:
            sizes = np.bincount(lab.ravel()).astype(np.int32)
            sizes[0] = 0
            areas[n, 0] = sizes[lab]
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(areas).to(mask.device)


def fill_holes_in_mask_scores(mask: torch.Tensor, max_area: int, fill_value: float = 0.1) -> torch.Tensor:
    """Turn small background regions into foreground, as the official video predictor does.

    Every 8-connected background region (``score <= 0``) whose area is at most ``max_area``
    pixels gets the score ``fill_value`` (a small positive logit). As in the official code this
    includes small background regions that touch the border.

    Args:
        mask: float mask logits ``(N, 1, H, W)``.
        max_area: largest region (in pixels) to fill; must be positive.

    Returns:
        A new tensor like ``mask``.
    """
    if max_area <= 0:
        raise InputError(f"max_area must be a positive number of pixels, got {max_area}")
    labels, areas = connected_components(mask <= 0)
    is_hole = (labels > 0) & (areas <= max_area)
    return torch.where(is_hole, torch.as_tensor(fill_value, dtype=mask.dtype, device=mask.device), mask)


def remove_sprinkles(mask: torch.Tensor, max_area: int, fill_value: float = -10.0) -> torch.Tensor:
    """Remove small foreground specks: 8-connected regions with ``score > 0`` of at most ``max_area``
    pixels get the score ``fill_value`` (background). This is the "sprinkle" removal the official
    image predictor applies next to hole filling.

    Args:
        mask: float mask logits ``(N, 1, H, W)``.
        max_area: largest region (in pixels) to remove; must be positive.
    """
    if max_area <= 0:
        raise InputError(f"max_area must be a positive number of pixels, got {max_area}")
    labels, areas = connected_components(mask > 0)
    is_sprinkle = (labels > 0) & (areas <= max_area)
    return torch.where(is_sprinkle, torch.as_tensor(fill_value, dtype=mask.dtype, device=mask.device), mask)
