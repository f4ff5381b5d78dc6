"""Generated scenes for the lifting tests (a plain module: test files import it by this unique name)."""
from __future__ import annotations

import torch

from threeam.data.synth import generate_scene, get_synth_config


def make_scene(seed: int, height: int = 64, width: int = 80, frames: int = 20):
    """A generated scene (tiny preset) at the given size, rendered with one torch thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return generate_scene(get_synth_config("tiny", height=height, width=width, n_frames=frames), seed=seed)
    finally:
        torch.set_num_threads(before)
