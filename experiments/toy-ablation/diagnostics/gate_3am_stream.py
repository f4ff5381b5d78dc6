"""Look-alike pick rate of a MUSt3R in the stream 3AM runs it with, not the gate's stream.

    python experiments/toy-ablation/diagnostics/gate_3am_stream.py CKPT [SET] [MAX_KEYFRAMES] [--out OUT]

The gate (`gate.py`) streams every second frame of a scene into an unbounded memory (`stream_clip`, as MUSt3R
trains). A 3AM predictor instead streams every frame through `Must3rStreamingSession` with the ``3am_tiny``
preset's policy (a keyframe every second frame, at most 8 keyframes in memory; ``MAX_KEYFRAMES`` overrides the
bound) at the checkpoint's input size (`stream_res` of its training config: 64 px for a tiny MUSt3R). Same trials rule (`lookalike_picks`), on every
streamed frame, so about twice the gate's trial count. SET: scene set (default ``lookalike-confirm``); the scenes
are read from the experiment folder OUT (default ``runs/toy-ablation``; rendered there when missing). One JSON line.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from threeam.experiments.toy_ablation import ToyAblationConfig, eval_scenes
from threeam.models.must3r.session import Must3rStreamingSession
from threeam.models.three_am import get_three_am_config
from threeam.train.config import config_from_dict
from threeam.train.export import load_for_eval, training_state_dict
from threeam.train.must3r_task import _to_frame, lookalike_picks, network_pixel_grid, stream_res, summarize_trials

torch.set_num_threads(1)
argv = sys.argv[1:]
out = Path("runs/toy-ablation")
if "--out" in argv:
    i = argv.index("--out")
    out, argv = Path(argv[i + 1]), argv[:i] + argv[i + 2:]
ckpt = argv[0]
eval_set = argv[1] if len(argv) > 1 else "lookalike-confirm"
stream = dataclasses.replace(get_three_am_config("3am_tiny").stream,
                             res=stream_res(config_from_dict(training_state_dict(ckpt)[1]["config"])))
if len(argv) > 2:
    stream = dataclasses.replace(stream, max_keyframes=int(argv[2]))
must3r = load_for_eval(ckpt, task="must3r")
t0 = time.time()
trials = []
for scene in eval_scenes(out, ToyAblationConfig(eval_set=eval_set)):
    fr = [scene.frame(t) for t in range(len(scene))]
    H, W = fr[0].rgb.shape[:2]
    rows, cols = network_pixel_grid(H, W, stream.res)
    session = Must3rStreamingSession(must3r, stream)
    with torch.no_grad():
        outs = [session.add_frame(f.rgb) for f in fr]
    pts, oks = zip(*[_to_frame(o.pts_ref[0], rows, cols, H, W) for o in outs])
    trials += lookalike_picks([f.instance_ids for f in fr], pts, scene.meta, valid=oks)
print(json.dumps({"ckpt": ckpt, "set": eval_set, "res": stream.res, "keyframe_interval": stream.keyframe_interval,
                  "max_keyframes": stream.max_keyframes, **summarize_trials(trials), "seconds": round(time.time() - t0)}))
