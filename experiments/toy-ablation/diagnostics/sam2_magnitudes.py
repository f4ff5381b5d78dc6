"""Magnitudes inside SAM 2's memory attention on a tracked frame: the residual stream entering each
layer's cross-attention vs the cross-attention output; usage: sam2_magnitudes.py WEIGHTS|random"""
import sys, json, numpy as np, torch
torch.set_num_threads(1)
from safetensors.torch import load_file
from threeam.train.recipes import get_train_config
from threeam.train.config import apply_overrides
from threeam.train.sam2_task import build_sam2_for_training
from threeam.train.clips import ClipDrawer, open_source_scenes
from threeam.train.vos import track_clip
cfg = apply_overrides(get_train_config("sam2-pretrain-synthetic"), ["data.scene_cache=runs/toy-ablation/scenes",
      "data.sources.synthetic.fov_prob=0"])
m = build_sam2_for_training(cfg)
if sys.argv[1] != "random":
    m.load_state_dict({k: v.float() for k, v in load_file(sys.argv[1]).items()})
m.eval()
stats = {i: [] for i in range(len(m.memory_attention.layers))}
hs = []
for i, layer in enumerate(m.memory_attention.layers):
    def pre(mod, args, kwargs, i=i):
        stats[i].append({"tgt": float(args[0].norm(dim=-1).mean()) if args else float(kwargs["tgt"].norm(dim=-1).mean())})
    def post_ca(mod, args, kwargs, out, i=i):
        stats[i][-1]["ca_out"] = float(out.norm(dim=-1).mean())
        # spread over positions of one frame, relative to the mean vector's norm
        mu = out.mean(dim=1, keepdim=True)
        stats[i][-1]["ca_spread"] = float((out - mu).norm(dim=-1).mean() / mu.norm(dim=-1).mean())
    hs.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
    hs.append(layer.cross_attn_image.register_forward_hook(post_ca, with_kwargs=True))
src = cfg.data.sources[0]
dr = ClipDrawer(open_source_scenes(src, cfg, 0), src, cfg, seed=123)
for i in range(3):
    d = dr.clip(i)[1]
    with torch.no_grad():
        track_clip(m, d.rgb, d.masks, "mask", 0)
out = {i: {k: round(float(np.mean([s[k] for s in v if k in s])), 3) for k in ("tgt", "ca_out", "ca_spread")} for i, v in stats.items()}
print(sys.argv[1], json.dumps(out))
