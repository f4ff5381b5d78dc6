"""regr_ref of a must3r checkpoint on covisible clips (tau 0.5, 8 frames) drawn from the 20 held-out
eval scenes, against the identity-pose answer with GT depth, and the same on training scenes."""
import sys, json, numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from threeam.experiments.toy_ablation import ToyAblationConfig, eval_scenes
from threeam.train.export import load_for_eval
from threeam.train.recipes import get_train_config
from threeam.train.config import apply_overrides
from threeam.train.clips import ClipDrawer, open_source_scenes
from threeam.train.must3r_task import gt_pointmaps, stream_clip, pointmap_loss
from threeam.models.must3r.postprocess import Must3rPointmaps
m = load_for_eval(sys.argv[1], task="must3r")
cfg = apply_overrides(get_train_config("must3r-pretrain-synthetic"), ["data.scene_cache=runs/toy-ablation/scenes",
      "data.sources.synthetic.sampler=covisible", "data.sources.synthetic.fov_prob=1", "data.fov_tau=0.5", "data.scenes_per_source=32"])
src = cfg.data.sources[0]
res = {}
for name, scenes in (("eval", eval_scenes(Path("runs/toy-ablation"), ToyAblationConfig())), ("train", open_source_scenes(src, cfg, 0))):
    dr = ClipDrawer(scenes, src, cfg, seed=999)
    e, ei, em = [], [], []
    for i in range(40):
        clip, data, _ = dr.clip(i)
        gt = gt_pointmaps(data.rgb, data.depth, data.K, data.cam_to_world, 64)
        with torch.no_grad():
            pred = stream_clip(m, gt.images)
        e.append(float(pointmap_loss(pred, gt)["regr_ref"]))
        T = gt.pts_ref.shape[0]
        ident = [Must3rPointmaps(gt.pts_self[t:t+1], gt.pts_self[t:t+1], torch.ones(1, *gt.valid.shape[1:])) for t in range(T)]
        ei.append(float(pointmap_loss(ident, gt)["regr_ref"]))
        own = [Must3rPointmaps(p.pts_self, p.pts_self, p.conf) for p in pred]
        em.append(float(pointmap_loss(own, gt)["regr_ref"]))
    res[name] = {"model": round(float(np.mean(e)), 3), "identity_gt_depth": round(float(np.mean(ei)), 3),
                 "identity_own_depth": round(float(np.mean(em)), 3)}
print(sys.argv[1], json.dumps(res))
