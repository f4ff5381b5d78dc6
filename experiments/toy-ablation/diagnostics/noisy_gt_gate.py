"""The gate's look-alike pick rate of the GT reference-frame pointmap with registration errors (`PoseNoise`).

    python experiments/toy-ablation/diagnostics/noisy_gt_gate.py TRANS ROT_DEG [RES]

The gate's streams (every second frame of the 20 evaluation scenes, stream frame 0 the reference), with the
GT points at MUSt3R's network resolution (RES, default 64) moved by ``PoseNoise(TRANS, ROT_DEG)`` as the
oracle arm's merger would see them. Says which noise level matches a MUSt3R's pick rate. One JSON line.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from threeam.experiments.toy_ablation import ToyAblationConfig, eval_scenes
from threeam.train.gt_geometry import PoseNoise
from threeam.train.must3r_task import _to_frame, gt_frame_points, lookalike_picks, summarize_trials

import torch

noise = PoseNoise(float(sys.argv[1]), float(sys.argv[2]))
res = int(sys.argv[3]) if len(sys.argv) > 3 else 64
t0 = time.time()
trials = []
for scene in eval_scenes(Path("runs/toy-ablation"), ToyAblationConfig()):
    fr = [scene.frame(t) for t in range(0, len(scene), 2)]
    pts, oks = [], []
    for f in fr:
        _, _, p_ref, valid, rows, cols = gt_frame_points(f.rgb, f.depth, f.K, f.cam_to_world, fr[0].cam_to_world, res)
        rel = np.linalg.inv(fr[0].cam_to_world) @ f.cam_to_world
        p_ref, _ = noise.apply(p_ref, rel, valid, f.cam_to_world, fr[0].cam_to_world)
        p, ok = _to_frame(torch.from_numpy(p_ref.astype(np.float32)), rows, cols, *f.rgb.shape[:2])
        pts.append(p)
        oks.append(ok)
    trials += lookalike_picks([f.instance_ids for f in fr], pts, scene.meta, valid=oks)
print(json.dumps({"trans": noise.trans, "rot_deg": noise.rot_deg, "res": res, **summarize_trials(trials),
                  "seconds": round(time.time() - t0, 1)}))
