"""Pick trials split by whether the trial frame and the target's first frame overlap stream frame 0."""
import sys, json, numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from threeam.experiments.toy_ablation import ToyAblationConfig, eval_scenes
from threeam.train.export import load_for_eval
from threeam.train.must3r_task import gt_pointmaps, stream_clip, _to_frame, _families
from threeam.data.sampling import view_overlap
scenes = eval_scenes(Path("runs/toy-ablation"), ToyAblationConfig())
m = load_for_eval(sys.argv[1], task="must3r")
res = {"both": [], "one": [], "none": []}
for sc in scenes:
    frames = list(range(0, len(sc), 2))
    fr = [sc.frame(t) for t in frames]
    gt = gt_pointmaps(np.stack([f.rgb for f in fr]), np.stack([f.depth for f in fr]), np.stack([f.K for f in fr]),
                      np.stack([f.cam_to_world for f in fr]), 64)
    with torch.no_grad():
        pred = stream_clip(m, gt.images)
    H, W = fr[0].rgb.shape[:2]
    pts, oks = zip(*[_to_frame(pred[t].pts_ref[0], gt.rows, gt.cols, H, W) for t in range(len(fr))])
    ov = [view_overlap(f, fr[0]) > 0.3 for f in fr]
    ids = [f.instance_ids for f in fr]
    for fam in _families(sc.meta):
        for a in fam:
            target = None
            for t in range(len(ids)):
                vis = {mm: (ids[t] == mm) & oks[t] for mm in fam}
                vis = {mm: v for mm, v in vis.items() if v.sum() >= 20}
                if a not in vis:
                    continue
                if target is None:
                    target, t0 = pts[t][vis[a]].mean(0), t
                    continue
                if len(vis) < 2:
                    continue
                cents = {mm: pts[t][v].mean(0) for mm, v in vis.items()}
                pick = min(cents, key=lambda mm: float(np.linalg.norm(cents[mm] - target)))
                k = "both" if ov[t] and ov[t0] else ("one" if ov[t] or ov[t0] else "none")
                res[k].append(pick == a)
print(json.dumps({k: (len(v), round(float(np.mean(v)), 3) if v else None) for k, v in res.items()}))
