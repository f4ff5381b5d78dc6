"""Evaluate a trained 3AM with the wrong geometry: does its gain come from MUSt3R's view of the scene?

    python experiments/toy-ablation/diagnostics/wrong_geometry_eval.py RUN OUT.json [N_SCENES] [--fixed] [--cache DIR]
        [--set NAME]

The toy ablation's evaluation (the same tracks, prompts and metrics as its ``eval`` stage), except that
MUSt3R streams the frames of ANOTHER evaluation scene (scene i+1 for scene i, cyclically; same frame
count and size) while SAM 2 sees the true frames: the merger gets a plausible, frame-varying geometry
that belongs to a different room. A gain over the SAM-2-only control that survives this is not the
geometry's. ``--fixed``: MUSt3R streams the same scene for every evaluation scene, the first held-out
scene of the run's training data (what ``model.geometry_input=fixed_scene`` trains with).
``--cache DIR``: the scene cache (default: the ``scenes`` folder of the experiment that holds RUN, i.e.
``RUN/../../scenes``, when it exists, else ``runs/toy-ablation/scenes``). ``--set NAME``: the evaluation scene set
(default ``lookalike``; ``lookalike-confirm``: the 40 confirmation scenes).
Writes the eval stage's JSON format (``tracks``) atomically, so `paired_arms.py`-style comparisons apply.
"""
from __future__ import annotations

import json
import sys
import time

from pathlib import Path

import numpy as np
import torch

from threeam.data.eval_scenes import make_eval_scenes
from threeam.experiments.toy_ablation import _predictor, evaluate_method
from threeam.io.atomic import atomic_write_text
from threeam.predictor.three_am_predictor import RawFrames

torch.set_num_threads(1)
argv = sys.argv[1:]
cache, eval_set = None, "lookalike"
if "--cache" in argv:
    i = argv.index("--cache")
    cache, argv = argv[i + 1], argv[:i] + argv[i + 2:]
if "--set" in argv:
    i = argv.index("--set")
    eval_set, argv = argv[i + 1], argv[:i] + argv[i + 2:]
args = [a for a in argv if a != "--fixed"]
fixed = "--fixed" in argv
run, out = args[0], args[1]
n = int(args[2]) if len(args) > 2 else None
if cache is None:
    beside = Path(run).absolute().parent.parent / "scenes"
    cache = str(beside) if beside.is_dir() else "runs/toy-ablation/scenes"
scenes = make_eval_scenes(eval_set, n, cache_dir=cache)
if fixed:
    from threeam.experiments.geometry_check import validation_scenes
    from threeam.train.config import config_from_dict
    from threeam.train.export import resolve_checkpoint

    decoy = validation_scenes(config_from_dict(resolve_checkpoint(run)[1]["config"]), 1, cache)[0]
predictor = _predictor("3am", run)
original_warm_up = predictor.warm_up
other_frames: dict = {}


def warm_up(state):
    original_warm_up(state)
    geo = state.three_am
    if len(other_frames["rgb"]) != len(geo.frames):
        raise SystemExit("scenes differ in length")
    geo.frames = RawFrames(other_frames["rgb"])  # MUSt3R now streams the other room


predictor.warm_up = warm_up
rows, t0 = [], time.perf_counter()
for i, scene in enumerate(scenes):
    other = decoy if fixed else scenes[(i + 1) % len(scenes)]
    other_frames["rgb"] = np.stack([other.frame(t).rgb for t in range(len(other))])
    rows += evaluate_method([scene], predictor, f"wrong-geometry {run}")
atomic_write_text(out, json.dumps({"method": f"wrong-geometry {run}", "seconds": time.perf_counter() - t0,
                                   "tracks": rows}))
print(out, len(rows), "tracks")
