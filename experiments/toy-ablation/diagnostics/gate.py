"""Look-alike pick rate (the MUSt3R gate) of a must3r checkpoint on the 20 lookalike eval scenes,
streamed every second frame, plus memory_use; usage: gate.py CKPT [res]"""
import sys, json, time
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from threeam.experiments.toy_ablation import ToyAblationConfig, eval_scenes
from threeam.train.export import load_for_eval
from threeam.train.must3r_task import evaluate_stream, summarize_trials, memory_use, _net_images
out = Path("runs/toy-ablation")
cfg = ToyAblationConfig()
scenes = eval_scenes(out, cfg)
t0 = time.time()
m = load_for_eval(sys.argv[1], task="must3r")
res = int(sys.argv[2]) if len(sys.argv) > 2 else 64
trials, gtt, uses = [], [], []
for j, sc in enumerate(scenes):
    r = evaluate_stream(m, sc, list(range(0, len(sc), 2)), res)
    trials += r["trials"]; gtt += r["gt_trials"]
clips = [_net_images(sc, [0, 1], res) for sc in scenes[:6]]
for j, c in enumerate(clips):
    uses.append(memory_use(m, c, clips[(j + 1) % 6][0]))
print(json.dumps({"ckpt": sys.argv[1], **summarize_trials(trials), "gt": summarize_trials(gtt)["pick_rate"],
                  "memory_use": float(np.mean(uses)), "seconds": time.time() - t0}))
