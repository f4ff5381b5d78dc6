"""Share of object-absent frames in the training clips of each toy-ablation arm's sampler.

    python experiments/toy-ablation/diagnostics/clip_presence.py [N_CLIPS]

Draws N clips (default 300) with the arms' recipe (`toy-ablation-3am`: 32 training scenes,
8 frames, min_present_frac 0.5) for FoV-aware p = 0.8, continuous only and random p = 0.8, and
prints per sampler the share of clip frames after the first where the object is absent (the
frames that train the object-score head to say "absent"). One JSON line.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from threeam.train.clips import ClipDrawer, open_source_scenes
from threeam.train.config import apply_overrides
from threeam.train.recipes import get_train_config

n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
arms = {"3am-fov": [], "3am-continuous": ["data.sources.synthetic.fov_prob=0"],
        "3am-random": ["data.sources.synthetic.sampler=random"]}
out = {}
for arm, ov in arms.items():
    cfg = apply_overrides(get_train_config("toy-ablation-3am"),
                          ov + ["data.scene_seed=0", "data.scene_cache=runs/toy-ablation/scenes"])
    src = cfg.data.sources[0]
    drawer = ClipDrawer(open_source_scenes(src, cfg, 0), src, cfg, seed=cfg.seed)
    absent, modes = [], {}
    for i in range(n):
        clip, data, _ = drawer.clip(i)
        present = data.masks.reshape(len(data.masks), -1).any(1)
        absent.append(float(1.0 - present[1:].mean()))
        modes[clip.mode] = modes.get(clip.mode, 0) + 1
    out[arm] = {"absent_share": float(np.mean(absent)), "modes": modes}
print(json.dumps(out))
