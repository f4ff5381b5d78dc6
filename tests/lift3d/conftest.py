"""Shared fixtures of the lifting tests: small generated scenes, one torch thread (tiny tensors)."""
from __future__ import annotations

import pytest
import torch

from threeam.lift3d.scene import from_synthetic

from lift_scenes import make_scene


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def gt_scenes():
    """Four generated scenes (64x80, 20 frames; orbit and walk trajectories) as LiftScenes."""
    return [from_synthetic(make_scene(seed)) for seed in range(4)]


@pytest.fixture(scope="session")
def small_scene():
    """One generated scene with 8 frames at 48x64 (the tiny-model runs)."""
    return make_scene(2, height=48, width=64, frames=8)
