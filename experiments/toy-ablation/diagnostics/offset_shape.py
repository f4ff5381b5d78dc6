"""What the Feature Merger adds to F2D in a trained 3AM checkpoint: a bias, a fixed map, or a per-frame signal.

    python experiments/toy-ablation/diagnostics/offset_shape.py CKPT

On the training split's two held-out scenes (frames streamed every second frame through MUSt3R, as the
``geometry`` stage does), the offset ``F_merged - F2D`` (T, C, Hs, Ws) is split into its per-channel constant
(mean over frames and grid), a map constant over frames (mean over frames minus that), and the part that
changes from frame to frame; each part's RMS is printed relative to the offset's RMS. A merger that ignores
the geometry adds mostly a per-channel constant (docs/evidence.md, session 30). One JSON line.
"""
from __future__ import annotations

import json
import sys

import torch

from threeam.experiments.geometry_check import frame_backbone, stream_scene, validation_scenes
from threeam.train.export import load_for_eval
from threeam.train.recipes import get_train_config

torch.set_num_threads(1)
ckpt = sys.argv[1]
model = load_for_eval(ckpt, task="3am")
scenes = validation_scenes(get_train_config("toy-ablation-3am"), 2, "runs/toy-ablation/scenes")
offsets = []
with torch.no_grad():
    for scene in scenes:
        rgb, geometry, backbone = stream_scene(model, scene)
        for t in range(len(geometry)):
            one = frame_backbone(backbone, t)
            merged = model.merge_backbone_output(one, geometry[t], rgb.shape[1:3])["backbone_fpn"][-1]
            offsets.append((merged - one["backbone_fpn"][-1])[0].float())
x = torch.stack(offsets)  # (T, C, Hs, Ws)
rms = x.pow(2).mean().sqrt().clamp_min(1e-12)
channel = x.mean(dim=(0, 2, 3), keepdim=True)
fixed_map = x.mean(dim=0, keepdim=True) - channel
per_frame = x - x.mean(dim=0, keepdim=True)
print(json.dumps({"checkpoint": ckpt, "frames": len(offsets), "offset_rms": round(float(rms), 4),
                  **{k: round(float(v.pow(2).mean().sqrt() / rms), 4) for k, v in
                     (("channel_constant", channel), ("fixed_map", fixed_map), ("per_frame", per_frame))}}))
