"""Look-alike pick rate (the MUSt3R gate) of a must3r checkpoint on the 20 lookalike eval scenes,
streamed every second frame, plus memory_use (`threeam.train.must3r_task.lookalike_gate`);
usage: gate.py CKPT [res] [scene set] (default lookalike, the gate's 20 scenes; lookalike-confirm: 40 scenes
never used to choose a recipe)"""
import json
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
from threeam.experiments.toy_ablation import ToyAblationConfig, eval_scenes
from threeam.train.export import load_for_eval
from threeam.train.must3r_task import lookalike_gate, summarize_trials

eval_set = sys.argv[3] if len(sys.argv) > 3 else "lookalike"
scenes = eval_scenes(Path("runs/toy-ablation"), ToyAblationConfig(eval_set=eval_set))
t0 = time.time()
res = int(sys.argv[2]) if len(sys.argv) > 2 else 64
g = lookalike_gate(load_for_eval(sys.argv[1], task="must3r"), scenes, res)
print(json.dumps({"ckpt": sys.argv[1], "set": eval_set, **g["summary"], "gt": summarize_trials(g["gt_trials"])["pick_rate"],
                  "memory_use": g["memory_use"], "seconds": time.time() - t0}))
