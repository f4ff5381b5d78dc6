"""The on-device small-component search (no host synchronisation, for hole filling in the per-frame
loop on CUDA) finds exactly the components scipy's 8-connected labelling finds, on random masks and
on shapes whose large components do not converge in ``max_area`` rounds (snakes, rings)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeam.predictor.postprocess import fill_holes_in_mask_scores, small_components


def _both(binary, max_area):
    dev = small_components(binary, max_area, on_device=True)
    cpu = small_components(binary, max_area, on_device=False)
    return dev, cpu


@pytest.mark.parametrize("density", [0.2, 0.45, 0.55, 0.8])
def test_random_masks(density):
    rng = np.random.default_rng(int(density * 100))
    binary = torch.from_numpy(rng.random((3, 1, 37, 29)) < density)
    found = 0
    for cls in (binary, ~binary):  # foreground specks and background holes
        for max_area in (1, 2, 3, 5, 8, 13):
            dev, cpu = _both(cls, max_area)
            assert torch.equal(dev, cpu), f"density {density}, max_area {max_area}"
            found += int(cpu.sum())
    assert found > 0  # the comparison saw small components


def test_snakes_and_rings_larger_than_the_rounds():
    m = np.zeros((1, 1, 24, 24), dtype=bool)
    m[0, 0, 2, 1:20] = True            # a 19-pixel line: not converged after 8 rounds
    m[0, 0, 5:12, 3] = True            # a 7-pixel line: small
    m[0, 0, 15:20, 15:20] = True       # a ring of 16 pixels around a 3x3 hole of the other class
    m[0, 0, 16:19, 16:19] = False
    m[0, 0, 22, 22] = True             # one pixel
    m[0, 0, 21, 0], m[0, 0, 22, 1], m[0, 0, 23, 2] = True, True, True  # diagonal: one 8-connected component
    binary = torch.from_numpy(m)
    for max_area in (1, 3, 7, 8, 9, 16, 19):
        dev, cpu = _both(binary, max_area)
        assert torch.equal(dev, cpu), f"max_area {max_area}"
    dev, _ = _both(binary, 8)
    assert dev[0, 0, 5:12, 3].all() and not dev[0, 0, 2].any() and dev[0, 0, 22, 22] and dev[0, 0, 23, 2]
    holes, _ = _both(~binary, 9)  # the 3x3 hole inside the ring is a background component of 9 pixels
    assert holes[0, 0, 16:19, 16:19].all()


def test_fill_holes_values_do_not_depend_on_the_path(monkeypatch):
    import threeam.predictor.postprocess as pp

    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(size=(2, 1, 32, 32)).astype(np.float32))
    ref = fill_holes_in_mask_scores(logits, 8)
    real = pp.small_components
    monkeypatch.setattr(pp, "small_components", lambda b, a: real(b, a, on_device=True))
    assert torch.equal(fill_holes_in_mask_scores(logits, 8), ref)
    assert not torch.equal(ref, logits)
