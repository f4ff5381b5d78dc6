"""Correspondence-supervised memory attention of the ``sam2`` task (`threeam.train.sam2_attention`):
GT token votes follow the geometry, the recorder sees SAM 2's memory in SAM 2's order (or fails
loudly), the term trains the memory encoder and attention, hooks leave no trace, and a run logs it."""
from __future__ import annotations

import numpy as np
import torch

from threeam.data.synth import generate_scene, get_synth_config
from threeam.train.config import apply_overrides
from threeam.train.recipes import get_train_config, run_training
from threeam.train.sam2_attention import MemoryAttentionRecorder, memory_attention_loss, token_votes

SMALL = ["data.scenes_per_source=1", "data.scene_frames=10", "data.scene_height=48", "data.scene_width=64",
         "data.frames_per_clip=4", "run.progress=false", "run.log_every=1", "optim.warmup_steps=0",
         "data.correction_clicks=2", "data.sources.synthetic.fov_prob=0", "data.min_present_frac=0"]


def _scene():
    return generate_scene(get_synth_config("tiny", n_frames=8, height=48, width=64), seed=3)


def test_token_votes_follow_the_geometry():
    f = _scene().frame(0)
    same = token_votes(f.depth, f.K, f.cam_to_world, f.depth, f.K, f.cam_to_world, grid=8)
    seen = same.sum(1) > 0
    assert seen.mean() > 0.9 and np.all(same.argmax(1)[seen] == np.nonzero(seen)[0])
    assert np.allclose(same.sum(1)[seen], 1.0)
    # a camera turned around sees none of it; a nearer surface in b hides it (occlusion test)
    back = f.cam_to_world.copy()
    back[:3, :3] = back[:3, :3] @ np.diag([-1.0, 1.0, -1.0])
    assert token_votes(f.depth, f.K, f.cam_to_world, f.depth, f.K, back, grid=8).sum() == 0
    assert token_votes(f.depth, f.K, f.cam_to_world, f.depth * 0.5, f.K, f.cam_to_world, grid=8).sum() == 0


def _model_and_clip(plan: str = "sam2"):
    from threeam.train.sam2_task import build_sam2_for_training

    cfg = apply_overrides(get_train_config("sam2-pretrain-synthetic"),
                          SMALL + [f"data.prompt_plan={plan}", "sam2_attn.weight=1.0", "sam2_attn.heads=2"])
    model = build_sam2_for_training(cfg)
    scene = _scene()
    frames = [scene.frame(t) for t in range(4)]
    ids = np.stack([f.instance_ids for f in frames])
    oid = int(np.bincount(ids[0][ids[0] > 0]).argmax())
    batch = {"rgb": np.stack([f.rgb for f in frames]), "masks": ids == oid, "prompt_kind": "mask",
             "prompt_kinds": ("mask", "point"), "prompt_seed": 1, "mode": "continuous",
             "depth": np.stack([f.depth for f in frames]), "K": np.stack([f.K for f in frames]),
             "cam_to_world": np.stack([f.cam_to_world for f in frames])}
    return cfg, model, batch


def test_the_term_covers_every_tracked_frame_and_trains_the_memory():
    from threeam.train.sam2_task import _sam2_forward, memory_attention_term

    cfg, model, batch = _model_and_clip()
    forward = _sam2_forward(cfg)
    with MemoryAttentionRecorder(model, heads=2) as rec:
        forward(model, batch)
    tracked = [c for c in rec.calls if c["memory"]]
    assert tracked and all(len(c["logp"]) == len(model.memory_attention.layers) for c in tracked)
    for c in tracked:  # keys of the recorded attention = spatial tokens of the recorded memory frames
        heads = min(2, model.memory_attention.layers[0].cross_attn_image.num_heads)
        assert c["logp"][0].shape[1] == heads and c["logp"][0].shape[-1] == len(c["memory"]) * c["logp"][0].shape[-2]
        assert c["frame"] not in c["memory"]
    # nothing left behind on the model
    assert model.memory_observer is None
    assert all(layer.cross_attn_image.attention_observer is None for layer in model.memory_attention.layers)
    model.zero_grad()
    (_, _, _), loss, top1 = memory_attention_term(cfg, model, batch, lambda: forward(model, batch))
    assert loss is not None and float(loss.detach()) > 0 and 0 <= float(top1) <= 1
    loss.backward()
    grads = {n: float(p.grad.abs().sum()) for n, p in model.named_parameters() if p.grad is not None}
    assert any(n.startswith("memory_encoder") and g > 0 for n, g in grads.items())
    assert any("cross_attn_image.k_proj" in n and g > 0 for n, g in grads.items())
    # not applied to FoV-sampled clips under the default clips=continuous
    _, none, _ = memory_attention_term(cfg, model, {**batch, "mode": "fov"}, lambda: forward(model, batch))
    assert none is None


def test_loss_is_the_votes_entropy_for_attention_that_follows_them():
    g = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    logp = torch.log(torch.cat([g, torch.tensor([[0.0, 0.0, 1.0, 0.0]])]).clamp_min(1e-12))[:2]
    calls = [{"frame": 1, "memory": [0], "logp": [logp[None, None]]}]
    loss, top1 = memory_attention_loss(calls, lambda a, b: g)
    assert abs(float(loss) - np.log(2)) < 1e-5 and float(top1) == 1.0


def test_sam2_training_with_the_term_logs_it(tmp_path):
    cfg = apply_overrides(get_train_config("sam2-pretrain-synthetic"),
                          SMALL + ["run.max_steps=2", "run.ckpt_every=10", "sam2_attn.weight=1.0"])
    tr = run_training(cfg, tmp_path / "run")
    logged = [h for h in tr.history if "attn_corr" in h]
    assert logged and all(h["attn_corr"] > 0 for h in logged)
