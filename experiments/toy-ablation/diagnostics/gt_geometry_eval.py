"""Evaluate a 3AM with the GT pointmap of its own or of another evaluation scene (the geometry oracle).

    python experiments/toy-ablation/diagnostics/gt_geometry_eval.py RUN OUT.json [N_SCENES] [--other-room]

The toy ablation's evaluation (its ``eval`` stage's tracks, prompts and metrics) with the merger's PE3D
input replaced by ground truth (`threeam.train.gt_geometry.use_gt_points`; MUSt3R's features stay those of
the true frames). Default: each scene's own GT, what the ``3am-continuous-gt-points`` arm's evaluation
does. ``--other-room``: the GT pointmaps of evaluation scene i+1 (cyclically; same frame count and size)
while SAM 2 and MUSt3R see scene i, so the 3-D positions are plausible but belong to another room. A
gain that survives it is not the tracked room's geometry. Writes the eval stage's JSON format.
"""
from __future__ import annotations

import json
import sys
import time

import torch

from threeam.data.eval_scenes import make_eval_scenes
from threeam.experiments.toy_ablation import _predictor, evaluate_method
from threeam.train.gt_geometry import use_gt_points

torch.set_num_threads(1)
args = [a for a in sys.argv[1:] if a != "--other-room"]
other_room = "--other-room" in sys.argv[1:]
run, out = args[0], args[1]
n = int(args[2]) if len(args) > 2 else None
scenes = make_eval_scenes("lookalike", n, cache_dir="runs/toy-ablation/scenes")
predictor = _predictor("3am", run)
from threeam.train import checkpointing
from threeam.train.config import config_from_dict
from threeam.train.three_am_task import gt_pose_noise

run_cfg = config_from_dict(checkpointing.read_state(checkpointing.find_latest(run))["config"])
set_scene = use_gt_points(predictor, gt_pose_noise(run_cfg))  # the registration error the run trained with
name = f"gt-geometry{' other-room' if other_room else ''} {run}"
rows, t0 = [], time.perf_counter()
for i, scene in enumerate(scenes):
    source = scenes[(i + 1) % len(scenes)] if other_room else scene
    rows += evaluate_method([scene], predictor, name, before_scene=lambda _s, source=source: set_scene(source))
with open(out, "w") as f:
    json.dump({"method": name, "seconds": time.perf_counter() - t0, "tracks": rows}, f)
print(out, len(rows), "tracks")
