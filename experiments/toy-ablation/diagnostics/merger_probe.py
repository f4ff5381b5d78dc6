"""How much the Feature Merger changes SAM 2's stride-16 feature in a trained 3AM checkpoint.

    python experiments/toy-ablation/diagnostics/merger_probe.py CKPT [N_SCENES] [--scenes eval|validation]

On the first N evaluation scenes (default 4; ``--scenes validation``: the training split's two held-out
scenes, which is what a choice between runs may look at), frames streamed every second frame through MUSt3R
(frame 0 the reference): the relative change ||F_merged - F_2d|| / ||F_2d|| per frame (mean, max),
and the same for the merger fed another scene's MUSt3R features (does its output depend on the
geometry it is given, or is it a constant offset?). Then, stage by stage through the merger, the
RMS of each stage's output and its spread over frames (RMS of the deviation from the mean over all
frames, relative to the RMS): where the frame-to-frame (geometry) signal is lost. One JSON line.
The first numbers are `threeam.experiments.geometry_check`'s (the toy ablation's ``geometry`` stage);
this script adds the eval-scene option and the stage-by-stage spreads.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from threeam.data.eval_scenes import make_eval_scenes
from threeam.experiments.geometry_check import frame_backbone, stream_scene, validation_scenes
from threeam.train.export import load_for_eval
from threeam.train.recipes import get_train_config

torch.set_num_threads(1)
parser = argparse.ArgumentParser()
parser.add_argument("ckpt")
parser.add_argument("n", nargs="?", type=int, default=4)
parser.add_argument("--scenes", choices=("eval", "validation"), default="eval")
args = parser.parse_args()
ckpt, n = args.ckpt, args.n
model = load_for_eval(ckpt, task="3am")
CACHE = "runs/toy-ablation/scenes"
if args.scenes == "eval":
    scenes = make_eval_scenes("lookalike", n, cache_dir=CACHE)
else:  # the training split's held-out scenes (seed space of their own, never evaluation seeds)
    scenes = validation_scenes(get_train_config("toy-ablation-3am"), min(n, 2), CACHE)
merger = model.merger


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
    passes = [stream_scene(model, s) for s in scenes]
    for k, (rgb, geometry, backbone) in enumerate(passes):
        other = passes[(k + 1) % len(passes)][1]
        for t in range(len(geometry)):
            one = frame_backbone(backbone, t)
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


print(json.dumps({"checkpoint": ckpt, "scenes": args.scenes, "frames": len(rel), "merger_change_mean": float(np.mean(rel)),
                  "merger_change_max": float(np.max(rel)),
                  "other_scene_geometry_change_of_the_offset": float(np.mean(rel_other)),
                  "stage_rms_and_spread_over_frames": {k: rms_and_spread(v) for k, v in stages.items()}}))
