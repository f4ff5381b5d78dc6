"""SAM 2 gate on the first N evaluation scenes: a sam2 checkpoint vs the prompt-frame-only predictor
(the paper's protocol, every track); usage: sam2_gate_partial.py CKPT [N]"""
import sys, json, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from threeam.experiments.toy_ablation import ToyAblationConfig, eval_scenes, evaluate_method, _predictor, _summary
n = int(sys.argv[2]) if len(sys.argv) > 2 else 4
scenes = eval_scenes(Path("runs/toy-ablation"), ToyAblationConfig())[:n]
t0 = time.time()
res = {}
for name, pred in (("prompt-only", None), ("sam2", _predictor("sam2", sys.argv[1]))):
    s = _summary(evaluate_method(scenes, pred, name))
    res[name] = {k: {m: round(v, 4) for m, v in s[k].items() if isinstance(v, (int, float))} for k in ("whole", "selected")}
print(json.dumps({"ckpt": sys.argv[1], "scenes": n, **res, "seconds": round(time.time() - t0)}))
