"""The look-alike gate (`lookalike_gate`, as gate.py) on the first N TRAINING scenes of the
must3r-pretrain-synthetic preset (seed 0) instead of the held-out ones: train vs held-out pick rate
says whether the MUSt3R is data-bound (overfits its 512 scenes) or capacity/steps-bound.
usage: gate_train.py CKPT [N=20] [res=64]"""
import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
from threeam.data.scene_store import cached_scene, train_scene_seed
from threeam.train.clips import synthetic_scene_config
from threeam.train.export import load_for_eval
from threeam.train.must3r_task import lookalike_gate
from threeam.train.recipes import get_train_config

n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
res = int(sys.argv[3]) if len(sys.argv) > 3 else 64
tc = get_train_config("must3r-pretrain-synthetic")
sc = synthetic_scene_config(tc)
scenes = [cached_scene(sc, train_scene_seed(tc.seed, "synthetic", j), Path("runs/toy-ablation/scenes")) for j in range(n)]
g = lookalike_gate(load_for_eval(sys.argv[1], task="must3r"), scenes, res)
print(json.dumps({"ckpt": sys.argv[1], "split": "train", **g["summary"], "memory_use": g["memory_use"]}))
