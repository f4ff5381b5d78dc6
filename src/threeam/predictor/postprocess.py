"""Mask post-processing that runs anywhere (the official code needs a CUDA extension for it).

Small regions are found among the 8-connected components of a binary mask. Mask scores are
logits: foreground is ``score > 0``. Two exact implementations give the same regions:

* on the CPU, `scipy.ndimage.label` (`connected_components`);
* on an accelerator, `small_components`'s on-device path, so the per-frame loop never waits for
  the device: every pixel of a region takes the smallest pixel index of its region by
  ``max_area`` rounds of a 3x3 min-pooling restricted to the region's class. A component of at
  most ``max_area`` pixels has a geodesic diameter below ``max_area``, so it is then one label;
  a label whose pixels all see only their own label among same-class 8-neighbours is a whole
  component, and its pixel count is its area. Fixed work, no host synchronisation. Masks too
  large for exact float32 indices (``N*H*W >= 2**24``) or ``max_area > 256`` use the CPU path.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from threeam.errors import InputError

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_MAX_DEVICE_AREA = 256


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


def _small_components_on_device(binary: torch.Tensor, max_area: int) -> torch.Tensor:
    """`small_components` without leaving the device (see the module docstring)."""
    n, _, h, w = binary.shape
    total = n * h * w
    big = float(total + 1)
    index = torch.arange(total, device=binary.device, dtype=torch.float32).reshape(n, 1, h, w)
    label = torch.where(binary, index, big)
    for _ in range(max_area):
        label = torch.where(binary, -F.max_pool2d(-label, 3, stride=1, padding=1), big)
    lowest = -F.max_pool2d(-label, 3, stride=1, padding=1)  # other classes count as +big
    highest = F.max_pool2d(torch.where(binary, label, -1.0), 3, stride=1, padding=1)
    open_px = binary & ((lowest != label) | (highest != label))
    bins = torch.where(binary, label, float(total)).long().reshape(-1)  # other classes: a spare bin
    area = torch.zeros(total + 1, device=binary.device, dtype=torch.int32)
    area.scatter_add_(0, bins, binary.reshape(-1).to(torch.int32))
    opened = torch.zeros(total + 1, device=binary.device, dtype=torch.int32)
    opened.scatter_add_(0, bins, open_px.reshape(-1).to(torch.int32))
    small = (area[bins] <= max_area) & (opened[bins] == 0)
    return binary & small.reshape(n, 1, h, w)


def small_components(binary: torch.Tensor, max_area: int, on_device: bool | None = None) -> torch.Tensor:
    """Pixels of the 8-connected components of `binary` with at most `max_area` pixels.

    Args:
        binary: bool ``(N, 1, H, W)``.
        max_area: largest component (pixels), >= 1.
        on_device: None (default): the on-device path on accelerators, scipy on the CPU;
            True/False force one (both give the same result).

    Returns:
        bool ``(N, 1, H, W)`` on `binary`'s device.
    """
    if binary.dim() != 4 or binary.shape[1] != 1:
        raise InputError(f"masks must have shape (N, 1, H, W), got {tuple(binary.shape)}")
    binary = binary.bool()
    if on_device is None:
        on_device = binary.device.type != "cpu"
    if on_device and max_area <= _MAX_DEVICE_AREA and binary.numel() < 2**24:
        return _small_components_on_device(binary, int(max_area))
    labels, areas = connected_components(binary)
    return (labels > 0) & (areas <= max_area)


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
    is_hole = small_components(mask <= 0, max_area)
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
    is_sprinkle = small_components(mask > 0, max_area)
    return torch.where(is_sprinkle, torch.as_tensor(fill_value, dtype=mask.dtype, device=mask.device), mask)
