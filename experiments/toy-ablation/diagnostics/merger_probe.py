"""How much the Feature Merger changes SAM 2's stride-16 feature in a trained 3AM checkpoint.

    python experiments/toy-ablation/diagnostics/merger_probe.py CKPT [N_SCENES]

On the first N evaluation scenes (default 4), frames streamed every second frame through MUSt3R
(frame 0 the reference): the relative change ||F_merged - F_2d|| / ||F_2d|| per frame (mean, max),
and the same for the merger fed another scene's MUSt3R features (does its output depend on the
geometry it is given, or is it a constant offset?). Then, stage by stage through the merger, the
RMS of each stage's output and its spread over frames (RMS of the deviation from the mean over all
frames, relative to the RMS): where the frame-to-frame (geometry) signal is lost. One JSON line.
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
merger = model.merger


def scene_pass(scene):
    frames = list(range(0, len(scene), 2))
    rgb = np.stack([scene.frame(t).rgb for t in frames])
    session = Must3rStreamingSession(model.must3r, model.stream_config)
    geometry = [session.add_frame(f) for f in rgb]
    backbone = encode_frames(model.sam2, torch.stack([frame_to_model_input(f, S) for f in rgb]))
    return rgb, geometry, backbone


# stage outputs of the merger, per frame (recorded only while `recording` is set)
stages: dict[str, list[torch.Tensor]] = {}
recording = False


def record(name):
    def hook(module, inputs, output):
        if recording:
            stages.setdefault(name, []).append(output.detach()[0].float())
    return hook


named = [("enc_proj", merger.enc_proj), ("pe3d", merger.pe3d)]
named += [(f"init_block{k}", b) for k, b in enumerate(merger.init_blocks)]
named += [(f"level{k}", blocks[-1]) for k, blocks in enumerate(merger.levels)]
named += [("norm_out", merger.norm_out), ("up_conv", merger.up_conv), ("fuse", merger.fuse)]
b0 = merger.init_blocks[0]
named += [("init_block0.attn", b0.attn), ("init_block0.mlp", b0.mlp)]
for name, module in named:
    module.register_forward_hook(record(name))

rel, rel_other = [], []
with torch.no_grad():
    passes = [scene_pass(s) for s in scenes]
    for k, (rgb, geometry, backbone) in enumerate(passes):
        other = passes[(k + 1) % len(passes)][1]
        for t in range(len(geometry)):
            one = {"backbone_fpn": [f[t:t + 1] for f in backbone["backbone_fpn"]],
                   "vision_pos_enc": [p[t:t + 1] for p in backbone["vision_pos_enc"]]}
            f2d = one["backbone_fpn"][-1]
            stages.setdefault("f2d", []).append(f2d[0].float())
            hw = rgb.shape[1:3]
            recording = True
            merged = model.merge_backbone_output(one, geometry[t], hw)["backbone_fpn"][-1]
            recording = False
            swapped = model.merge_backbone_output(one, other[t % len(other)], hw)["backbone_fpn"][-1]
            rel.append(float((merged - f2d).norm() / f2d.norm()))
            rel_other.append(float((merged - swapped).norm() / (merged - f2d).norm().clamp_min(1e-12)))


def rms_and_spread(xs: list[torch.Tensor]) -> list[float]:
    x = torch.stack(xs)
    rms = float(x.pow(2).mean().sqrt())
    return [round(rms, 4), round(float((x - x.mean(0, keepdim=True)).pow(2).mean().sqrt()) / max(rms, 1e-12), 4)]


print(json.dumps({"checkpoint": ckpt, "frames": len(rel), "merger_change_mean": float(np.mean(rel)),
                  "merger_change_max": float(np.max(rel)),
                  "other_scene_geometry_change_of_the_offset": float(np.mean(rel_other)),
                  "stage_rms_and_spread_over_frames": {k: rms_and_spread(v) for k, v in stages.items()}}))
