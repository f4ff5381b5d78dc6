"""regr_ref of the 'identity pose' answer (GT own-frame points as reference-frame points) on the
training clips of a must3r recipe: usage identity_baseline.py [overrides...]"""
import sys, numpy as np, torch
from threeam.train.recipes import get_train_config
from threeam.train.config import apply_overrides
from threeam.train.clips import ClipDrawer, open_source_scenes
from threeam.train.must3r_task import gt_pointmaps, pointmap_loss
from threeam.models.must3r.postprocess import Must3rPointmaps
cfg = apply_overrides(get_train_config("must3r-pretrain-synthetic"), ["data.scene_cache=runs/toy-ablation/scenes"] + sys.argv[1:])
src = cfg.data.sources[0]
dr = ClipDrawer(open_source_scenes(src, cfg, 0), src, cfg, seed=cfg.seed)
errs = []
for i in range(60):
    clip, data, _ = dr.clip(i)
    gt = gt_pointmaps(data.rgb, data.depth, data.K, data.cam_to_world, 64)
    T = gt.pts_ref.shape[0]
    pred = [Must3rPointmaps(gt.pts_self[t:t+1], gt.pts_self[t:t+1], torch.ones(1, *gt.valid.shape[1:])) for t in range(T)]
    errs.append(float(pointmap_loss(pred, gt)["regr_ref"]))
print(sys.argv[1:], "identity regr_ref mean %.3f" % np.mean(errs))
