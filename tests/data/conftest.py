"""Small synthetic scenes shared by the data tests (rendered once per session)."""
from __future__ import annotations

import pytest

from threeam.data.synth import generate_scene, get_synth_config


@pytest.fixture(scope="session")
def tiny_scene():
    """16 frames at 48x64 with a seeded layout."""
    return generate_scene(get_synth_config("tiny"), seed=7)


@pytest.fixture(scope="session")
def small_scene():
    """40 frames at 64x64, orbit trajectory (objects leave and re-enter the view)."""
    return generate_scene(get_synth_config("tiny", height=64, width=64, n_frames=40, trajectory="orbit"), seed=11)
