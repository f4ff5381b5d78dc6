"""SAM 2 memory probes on a sam2 checkpoint: how much tracked-frame logits change when (a) the prompt
frame is swapped for another clip's, (b) memory attention's cross-attention is zeroed; and how much
memory features vary across frames/clips compared with image features. usage: sam2_probe.py WEIGHTS.safetensors | random"""
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
    w = load_file(sys.argv[1]); m.load_state_dict({k: v.float() for k, v in w.items()})
m.eval()
src = cfg.data.sources[0]
dr = ClipDrawer(open_source_scenes(src, cfg, 0), src, cfg, seed=123)
clips = [dr.clip(i)[1] for i in range(6)]
def run(rgb, masks):
    with torch.no_grad():
        outs, tg, chosen = track_clip(m, rgb, masks, "mask", 0)
    return chosen
swap, zero, base_n = [], [], []
for j, c in enumerate(clips):
    o = clips[(j + 1) % len(clips)]
    L = run(c.rgb, c.masks)
    rgb2, m2 = c.rgb.copy(), c.masks.copy()
    rgb2[0], m2[0] = o.rgb[0], o.masks[0]
    L2 = run(rgb2, m2)
    # zero every cross-attention in memory attention
    hs = [layer.cross_attn_image.register_forward_hook(lambda mod, a, out: out * 0) for layer in m.memory_attention.layers]
    L3 = run(c.rgb, c.masks)
    for h in hs: h.remove()
    d = lambda a, b: float((a[1:] - b[1:]).abs().mean() / b[1:].abs().mean())
    swap.append(d(L2, L)); zero.append(d(L3, L))
# memory features: variation across frames vs image features
feats, imgs = [], []
h1 = m.memory_encoder.register_forward_hook(lambda mod, a, out: feats.append(out["vision_features"] if isinstance(out, dict) else out[0]))
for c in clips[:3]:
    run(c.rgb, c.masks)
h1.remove()
F = torch.stack([f.flatten() for f in feats])
rel = float((F - F.mean(0)).norm(dim=1).mean() / F.mean(0).norm())
print(json.dumps({"prompt_swap_change": float(np.mean(swap)), "zero_cross_attn_change": float(np.mean(zero)),
                  "maskmem_variation_rel_to_mean": rel, "n_mem": len(feats)}))
