"""The look-alike pick test of two must3r checkpoints on the same trials (the 20 lookalike evaluation
scenes streamed every second frame, as gate.py: `lookalike_gate`), with the paired difference and its 95% interval;
usage: gate_paired.py CKPT_A CKPT_B [res] [scene set] (default lookalike; lookalike-confirm: the 40
confirmation scenes). The trials are fixed by the scenes' GT (which frames show
an object and its copy), so trial k is the same question for both."""
import json
import sys

import numpy as np
import torch

torch.set_num_threads(1)
from pathlib import Path

from threeam.experiments.toy_ablation import ToyAblationConfig, eval_scenes
from threeam.train.export import load_for_eval
from threeam.train.must3r_task import lookalike_gate

eval_set = sys.argv[4] if len(sys.argv) > 4 else "lookalike"
scenes = eval_scenes(Path("runs/toy-ablation"), ToyAblationConfig(eval_set=eval_set))
res = int(sys.argv[3]) if len(sys.argv) > 3 else 64
picks = []
for ckpt in sys.argv[1:3]:
    m = load_for_eval(ckpt, task="must3r")
    picks.append(np.array([c for c, _ in lookalike_gate(m, scenes, res, memory_scenes=0)["trials"]], dtype=float))
a, b = picks
if a.shape != b.shape:
    raise SystemExit(f"the two runs saw different trials ({a.size} vs {b.size})")
d = a - b
se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else float("nan")
print(json.dumps({"a": sys.argv[1], "b": sys.argv[2], "set": eval_set, "trials": int(d.size), "pick_rate_a": float(a.mean()),
                  "pick_rate_b": float(b.mean()), "diff": float(d.mean()),
                  "ci95": [float(d.mean() - 1.96 * se), float(d.mean() + 1.96 * se)],
                  "only_a_right": int((d > 0).sum()), "only_b_right": int((d < 0).sum())}))
