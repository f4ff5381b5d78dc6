"""CPU hole filling and sprinkle removal on mask logits."""
from __future__ import annotations

import pytest
import torch

from threeam.errors import InputError
from threeam.predictor.postprocess import connected_components, fill_holes_in_mask_scores, remove_sprinkles


def _ring_with_hole():
    """A 12x12 foreground square (logit 5) with a 2x2 hole (logit -3) on a -5 background."""
    m = torch.full((1, 1, 20, 20), -5.0)
    m[..., 4:16, 4:16] = 5.0
    m[..., 8:10, 8:10] = -3.0
    return m


def test_connected_components_eight_connectivity():
    m = torch.zeros(2, 1, 5, 5, dtype=torch.bool)
    m[0, 0, 0, 0] = m[0, 0, 1, 1] = True  # diagonal neighbours: one component under 8-connectivity
    m[0, 0, 4, 4] = True
    labels, areas = connected_components(m)
    assert labels[0, 0, 0, 0] == labels[0, 0, 1, 1] != labels[0, 0, 4, 4]
    assert areas[0, 0, 0, 0] == 2 and areas[0, 0, 4, 4] == 1 and areas[0, 0, 2, 2] == 0
    assert labels[1].max() == 0 and areas[1].max() == 0


def test_fill_small_hole_only():
    m = _ring_with_hole()
    out = fill_holes_in_mask_scores(m, max_area=4)
    assert torch.all(out[..., 8:10, 8:10] == 0.1)
    # the big outer background (400-144 px) is untouched, and so is the foreground
    assert torch.equal(out[..., 0, :], m[..., 0, :])
    assert torch.equal(out[..., 4, 4:16], m[..., 4, 4:16])
    # a hole larger than max_area stays
    assert torch.equal(fill_holes_in_mask_scores(m, max_area=3), m)


def test_remove_small_sprinkle():
    m = torch.full((1, 1, 10, 10), -2.0)
    m[..., 1:7, 1:7] = 3.0  # 36 px object
    m[..., 8, 8] = 1.0  # 1 px speck
    out = remove_sprinkles(m, max_area=5)
    assert out[0, 0, 8, 8] == -10.0
    assert torch.equal(out[..., 1:7, 1:7], m[..., 1:7, 1:7])


def test_bad_arguments():
    with pytest.raises(InputError, match="max_area"):
        fill_holes_in_mask_scores(_ring_with_hole(), max_area=0)
    with pytest.raises(InputError, match=r"\(N, 1, H, W\)"):
        connected_components(torch.zeros(3, 3, dtype=torch.bool))
