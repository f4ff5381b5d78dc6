"""Reference-frame error (regr_ref of the training loss, normalised) of a must3r checkpoint on eval-scene
streams (every 2nd frame) of growing length, against the identity-pose answer with GT depth."""
import sys, json, numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from threeam.experiments.toy_ablation import ToyAblationConfig, eval_scenes
from threeam.train.export import load_for_eval
from threeam.train.must3r_task import gt_pointmaps, stream_clip, pointmap_loss
from threeam.models.must3r.postprocess import Must3rPointmaps
scenes = eval_scenes(Path("runs/toy-ablation"), ToyAblationConfig())[:8]
m = load_for_eval(sys.argv[1], task="must3r")
out = {}
for n in (4, 8, 12, 24):
    e, ei = [], []
    for sc in scenes:
        fr = [sc.frame(t) for t in range(0, 2 * n, 2)]
        gt = gt_pointmaps(np.stack([f.rgb for f in fr]), np.stack([f.depth for f in fr]), np.stack([f.K for f in fr]),
                          np.stack([f.cam_to_world for f in fr]), 64)
        with torch.no_grad():
            pred = stream_clip(m, gt.images)
        e.append(float(pointmap_loss(pred, gt)["regr_ref"]))
        ident = [Must3rPointmaps(gt.pts_self[t:t+1], gt.pts_self[t:t+1], torch.ones(1, *gt.valid.shape[1:])) for t in range(n)]
        ei.append(float(pointmap_loss(ident, gt)["regr_ref"]))
    out[n] = (round(float(np.mean(e)), 3), round(float(np.mean(ei)), 3))
print(sys.argv[1], json.dumps(out))
