"""How much the Feature Merger changes SAM 2's stride-16 feature in a trained 3AM checkpoint.

    python experiments/toy-ablation/diagnostics/merger_probe.py CKPT [N_SCENES]

On the first N evaluation scenes (default 4), frames streamed every second frame through MUSt3R
(frame 0 the reference): the relative change ||F_merged - F_2d|| / ||F_2d|| per frame (mean, max),
and the same for the merger fed another scene's MUSt3R features (does its output depend on the
geometry it is given, or is it a constant offset?). One JSON line.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from threeam.data.eval_scenes import make_eval_scenes
from threeam.models.must3r.session import Must3rStreamingSession
from threeam.train.export import load_for_eval
from threeam.train.vos import encode_frames, frame_to_model_input

torch.set_num_threads(1)
ckpt, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4
model = load_for_eval(ckpt, task="3am")
scenes = make_eval_scenes("lookalike", n, cache_dir="runs/toy-ablation/scenes")
S = model.sam2.image_size


def scene_pass(scene):
    frames = list(range(0, len(scene), 2))
    rgb = np.stack([scene.frame(t).rgb for t in frames])
    session = Must3rStreamingSession(model.must3r, model.stream_config)
    geometry = [session.add_frame(f) for f in rgb]
    backbone = encode_frames(model.sam2, torch.stack([frame_to_model_input(f, S) for f in rgb]))
    return rgb, geometry, backbone


rel, rel_other = [], []
with torch.no_grad():
    passes = [scene_pass(s) for s in scenes]
    for k, (rgb, geometry, backbone) in enumerate(passes):
        other = passes[(k + 1) % len(passes)][1]
        for t in range(len(geometry)):
            one = {"backbone_fpn": [f[t:t + 1] for f in backbone["backbone_fpn"]],
                   "vision_pos_enc": [p[t:t + 1] for p in backbone["vision_pos_enc"]]}
            f2d = one["backbone_fpn"][-1]
            hw = rgb.shape[1:3]
            merged = model.merge_backbone_output(one, geometry[t], hw)["backbone_fpn"][-1]
            swapped = model.merge_backbone_output(one, other[t % len(other)], hw)["backbone_fpn"][-1]
            rel.append(float((merged - f2d).norm() / f2d.norm()))
            rel_other.append(float((merged - swapped).norm() / (merged - f2d).norm().clamp_min(1e-12)))
print(json.dumps({"checkpoint": ckpt, "frames": len(rel), "merger_change_mean": float(np.mean(rel)),
                  "merger_change_max": float(np.max(rel)),
                  "other_scene_geometry_change_of_the_offset": float(np.mean(rel_other))}))
