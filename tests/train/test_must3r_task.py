"""The ``must3r`` task: GT pointmaps, the confidence-aware regression, gradients everywhere, a tiny
MUSt3R overfitting one clip, and the look-alike pick metric (GT points pick right every time)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeam.data.synth import generate_scene, get_synth_config
from threeam.errors import InputError
from threeam.train.config import apply_overrides
from threeam.train.must3r_task import (build_must3r_for_training, gt_pointmaps, lookalike_picks, pointmap_loss,
                                       stream_clip)
from threeam.train.recipes import get_train_config, run_training

SMALL = ["data.scenes_per_source=1", "data.scene_frames=8", "data.scene_height=48", "data.scene_width=64",
         "data.frames_per_clip=3", "run.progress=false", "run.log_every=1", "optim.warmup_steps=0",
         "data.sources.synthetic.fov_prob=0"]


def _scene(n=4, seed=3):
    return generate_scene(get_synth_config("tiny", n_frames=n, height=48, width=64), seed=seed)


def _gt(scene, frames):
    fr = [scene.frame(t) for t in frames]
    return gt_pointmaps(np.stack([f.rgb for f in fr]), np.stack([f.depth for f in fr]), np.stack([f.K for f in fr]),
                        np.stack([f.cam_to_world for f in fr]), 64)


def test_gt_pointmaps_follow_the_cameras():
    scene = _scene()
    gt = _gt(scene, [0, 2, 3])
    assert gt.images.shape == (3, 3, 48, 64) and gt.pts_ref.shape == (3, 48, 64, 3)
    v = gt.valid[0]
    assert torch.allclose(gt.pts_ref[0][v], gt.pts_self[0][v], atol=1e-5)  # frame 0 is the reference
    # own-frame points project back onto the original pixels they came from
    f = scene.frame(2)
    p = gt.pts_self[1].double().numpy()
    uvw = p @ f.K.T
    ok = gt.valid[1].numpy()
    assert np.allclose(uvw[ok][:, 0] / uvw[ok][:, 2], np.broadcast_to(gt.cols, ok.shape)[ok], atol=1e-4)
    # the same world point: reference-frame points of frame 2 mapped to the world equal the world points
    c0, c2 = scene.frame(0).cam_to_world, f.cam_to_world
    w_from_ref = gt.pts_ref[1].double().numpy() @ c0[:3, :3].T + c0[:3, 3]
    w_from_self = p @ c2[:3, :3].T + c2[:3, 3]
    assert np.allclose(w_from_ref[ok], w_from_self[ok], atol=1e-4)


def test_loss_is_minimal_for_the_gt_and_grows_with_error():
    from threeam.models.must3r.postprocess import Must3rPointmaps

    gt = _gt(_scene(), [0, 1, 2])

    def as_pred(ref, self_, conf):
        return [Must3rPointmaps(ref[t:t + 1], self_[t:t + 1], conf[t:t + 1]) for t in range(ref.shape[0])]

    conf = torch.full(gt.valid.shape, 2.0)
    exact = pointmap_loss(as_pred(gt.pts_ref * 3.0, gt.pts_self * 0.5, conf), gt)  # scale-free
    noisy = pointmap_loss(as_pred(gt.pts_ref + 0.3 * torch.randn_like(gt.pts_ref), gt.pts_self, conf), gt)
    assert float(exact["regr_ref"]) < 1e-5 and float(exact["regr_self"]) < 1e-5
    assert float(noisy["regr_ref"]) > 0.05 and float(noisy["loss"]) > float(exact["loss"])


def test_ref_weight_scales_only_the_reference_frame_term():
    from threeam.models.must3r.postprocess import Must3rPointmaps

    gt = _gt(_scene(), [0, 1, 2])
    g = torch.Generator().manual_seed(0)
    ref = gt.pts_ref + 0.3 * torch.randn(gt.pts_ref.shape, generator=g)
    self_ = gt.pts_self + 0.2 * torch.randn(gt.pts_self.shape, generator=g)
    pred = [Must3rPointmaps(ref[t:t + 1], self_[t:t + 1], torch.full((1,) + gt.valid.shape[1:], 1.5))
            for t in range(3)]
    one, three, zero = (float(pointmap_loss(pred, gt, ref_weight=w)["loss"]) for w in (1.0, 3.0, 0.0))
    ref_term = one - zero  # the reference-frame term alone
    assert ref_term > 0.05 and abs((three - zero) - 3.0 * ref_term) < 1e-4
    with pytest.raises(InputError, match="ref_weight"):
        apply_overrides(get_train_config("must3r-pretrain-synthetic"), ["must3r_loss.ref_weight=-1"])


def test_every_must3r_parameter_gets_a_gradient():
    cfg = get_train_config("must3r-pretrain-synthetic")
    model = build_must3r_for_training(cfg)
    gt = _gt(_scene(), [0, 1, 2, 3])
    pointmap_loss(stream_clip(model, gt.images), gt)["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or float(p.grad.abs().max()) == 0]
    assert not missing, missing


def test_tiny_must3r_overfits_one_clip(tmp_path):
    cfg = apply_overrides(get_train_config("must3r-pretrain-synthetic"),
                          SMALL + ["run.max_steps=40", "data.num_clips=1", "optim.schedule=constant",
                                   "optim.groups.encoder.lr=2e-3", "optim.groups.decoder.lr=2e-3",
                                   "run.ckpt_every=1000"])
    tr = run_training(cfg, tmp_path / "run")
    r = [h["regr_ref"] for h in tr.history]
    assert np.mean(r[-5:]) < 0.6 * np.mean(r[:5]), r


def test_lookalike_picks_with_gt_points_are_all_right_and_shuffled_points_are_not():
    scene = generate_scene(get_synth_config("lookalike", n_frames=24, height=48, width=64), seed=11)
    ids = [scene.frame(t).instance_ids for t in range(len(scene))]
    H, W = ids[0].shape
    world = []
    for t in range(len(scene)):
        f = scene.frame(t)
        rows, cols = np.mgrid[0:H, 0:W]
        pix = np.stack([cols, rows, np.ones_like(cols)], -1).reshape(-1, 3).astype(np.float64)
        p = (pix @ np.linalg.inv(f.K).T) * f.depth.reshape(-1, 1)
        world.append((p @ f.cam_to_world[:3, :3].T + f.cam_to_world[:3, 3]).reshape(H, W, 3))
    trials = lookalike_picks(ids, world, scene.meta, min_pixels=10)
    assert len(trials) >= 3 and all(c for c, _ in trials)
    # a geometry that carries no information (every point at the origin) picks by tie order: not always right
    blind = lookalike_picks(ids, [np.zeros_like(w) for w in world], scene.meta, min_pixels=10)
    assert len(blind) == len(trials) and not all(c for c, _ in blind)


def test_memory_use_is_zero_when_the_decoder_ignores_its_memory_and_large_at_random_weights():
    import pytest

    from threeam.errors import InputError
    from threeam.train.config import apply_overrides
    from threeam.train.must3r_task import memory_use
    from threeam.train.recipes import get_train_config

    cfg = apply_overrides(get_train_config("must3r-pretrain-synthetic"), ["seed=3"])
    model = build_must3r_for_training(cfg).eval()
    g = torch.Generator().manual_seed(0)
    clip = torch.rand(2, 3, 48, 64, generator=g) * 2 - 1
    other = torch.rand(3, 48, 64, generator=g) * 2 - 1
    assert memory_use(model, clip, other) > 0.05
    assert memory_use(model, clip, clip[0]) == 0.0  # the same reference: nothing changes
    hooks = [b.cross_attn.register_forward_hook(lambda m, i, o: o * 0) for b in model.decoder.blocks_dec]
    try:
        assert memory_use(model, clip, other) < 1e-6  # no cross-attention: the reference cannot matter
    finally:
        for h in hooks:
            h.remove()
    with pytest.raises(InputError, match="memory_use"):
        memory_use(model, clip[:1], other)


def test_lookalike_gate_pools_the_scenes_trials_in_order_and_measures_memory_use():
    from threeam.train.must3r_task import evaluate_stream, lookalike_gate

    scenes = [generate_scene(get_synth_config("lookalike", n_frames=12, height=48, width=64), seed=s) for s in (11, 12)]
    model = build_must3r_for_training(apply_overrides(get_train_config("must3r-pretrain-synthetic"), ["seed=3"])).eval()
    g = lookalike_gate(model, scenes, 64, stride=3)
    expect = [evaluate_stream(model, sc, list(range(0, len(sc), 3)), 64) for sc in scenes]
    assert g["trials"] == expect[0]["trials"] + expect[1]["trials"] and len(g["trials"]) > 0
    assert g["gt_trials"] == expect[0]["gt_trials"] + expect[1]["gt_trials"]
    assert all(c for c, _ in g["gt_trials"])  # the control: true world points always pick right
    assert g["summary"]["trials"] == len(g["trials"]) and g["memory_use"] > 0.05  # random weights read memory
    assert np.isnan(lookalike_gate(model, scenes[:1], 64, stride=3)["memory_use"])  # no second scene to swap in
    with pytest.raises(InputError, match="stride"):
        lookalike_gate(model, scenes, 64, stride=0)


def test_held_out_must3r_metrics_include_memory_use(tmp_path):
    import json

    cfg = apply_overrides(get_train_config("must3r-pretrain-synthetic"),
                          ["data.scenes_per_source=1", "data.scene_frames=6", "data.scene_height=48",
                           "data.scene_width=64", "data.frames_per_clip=2", "run.progress=false", "run.max_steps=1",
                           "run.eval_every=1", "run.eval_items=2", "run.ckpt_every=10", "optim.warmup_steps=0"])
    run_training(cfg, tmp_path / "run")
    row = json.loads((tmp_path / "run" / "eval.jsonl").read_text().splitlines()[0])
    assert row["step"] == 1 and row["memory_use"] > 0.0 and "lookalike_pick_rate" in row


def _targets(frames, mode="reference_first"):
    from threeam.train.must3r_task import attention_targets

    scene = _scene(6)
    fr = [scene.frame(t) for t in frames]
    K, C = np.stack([f.K for f in fr]), np.stack([f.cam_to_world for f in fr])
    gt = gt_pointmaps(np.stack([f.rgb for f in fr]), np.stack([f.depth for f in fr]), K, C, 64)
    return gt, attention_targets(gt, K, C, 16, mode=mode)


def test_attention_targets_match_patches_through_the_gt_geometry():
    gt, tg = _targets([0, 0, 3], mode="all")
    assert [tuple(t.shape) for t in tg] == [(12, 12), (12, 24)]
    # the same camera twice: every patch's votes fall (almost all) on the same patch of frame 0
    assert tg[0].argmax(1).tolist() == list(range(12)) and float(tg[0].diagonal().min()) > 0.8
    for t in tg:  # rows are distributions or empty (patch seen in no earlier frame)
        s = t.sum(1)
        assert torch.all(((s - 1).abs() < 1e-5) | (s == 0)) and float(t.min()) >= 0
    # clip frame 2 sees clip frames 0 and 1 alike (the same camera): identical halves of its votes
    assert torch.allclose(tg[1][:, :12], tg[1][:, 12:])
    # reference first: a patch seen in frame 0 votes for frame 0 only; the others keep every frame's votes
    _, ref_first = _targets([0, 0, 3])
    seen0 = tg[1][:, :12].sum(1) > 0
    assert torch.all(ref_first[1][seen0, 12:] == 0) and torch.allclose(ref_first[1][seen0, :12].sum(1), torch.ones(1))
    assert torch.allclose(ref_first[1][~seen0], tg[1][~seen0])
    # earliest: every patch votes in the first frame that sees it only (here frame 0 where it can)
    _, ea = _targets([0, 0, 3], mode="earliest")
    assert torch.equal(ea[0], ref_first[0])
    assert torch.allclose(ea[1][seen0], ref_first[1][seen0]) and torch.all(ea[1][~seen0, :12] == 0)
    _, all3 = _targets([0, 3, 3, 5], mode="all")
    _, ea3 = _targets([0, 3, 3, 5], mode="earliest")
    for t, (a, e) in enumerate(zip(all3, ea3), start=1):
        frames_a, frames_e = a.reshape(12, t, 12).sum(2) > 0, e.reshape(12, t, 12).sum(2) > 0
        assert torch.equal(frames_e.sum(1) <= 1, torch.ones(12, dtype=torch.bool))  # one frame per patch
        first = torch.where(frames_a.any(1), frames_a.float().argmax(1), torch.full((12,), -1))
        assert torch.equal(torch.where(frames_e.any(1), frames_e.float().argmax(1), torch.full((12,), -1)), first)
    # clip frames 1 and 2 share a camera: clip frame 3 is matched in frame 1 wherever frame 2 sees it too
    assert float(all3[2].reshape(12, 3, 12).sum(2)[:, 2].sum()) > 0
    assert float(ea3[2].reshape(12, 3, 12).sum(2)[:, 2].sum()) == 0
    with pytest.raises(InputError, match="mode"):
        _targets([0, 3], mode="nearest")
    # the wider the baseline, the fewer patches have a counterpart in frame 0 (this path: 12, 8, 3, 0)
    seen = [int((_targets([0, f])[1][0].sum(1) > 0).sum()) for f in (1, 2, 3, 5)]
    assert seen == sorted(seen, reverse=True) and seen[0] == 12 and seen[-1] == 0 and 0 < seen[2] < 12


def test_attention_correspondence_loss_trains_the_cross_attention():
    from threeam.train.must3r_task import CrossAttentionRecorder, attention_correspondence_loss

    cfg = get_train_config("must3r-pretrain-synthetic")
    model = build_must3r_for_training(cfg)
    depth = len(model.decoder.blocks_dec)
    gt, tg = _targets([0, 2, 4])
    with CrossAttentionRecorder(model, heads=2) as rec:
        stream_clip(model, gt.images)
    assert len(rec.records) == 3 * depth and tuple(rec.records[depth].shape[:2]) == (1, 2)
    loss, top1 = attention_correspondence_loss(rec.records, tg, depth)
    assert float(loss.detach()) > 0 and 0.0 <= float(top1) <= 1.0
    loss.backward()
    for blk in model.decoder.blocks_dec:
        assert float(blk.cross_attn.projq.weight.grad.abs().sum()) > 0
        assert float(blk.cross_attn.projk.weight.grad.abs().sum()) > 0
    # hooks are removed on exit: a later forward records nothing
    stream_clip(model, gt.images)
    assert len(rec.records) == 3 * depth
    # attention that follows the targets exactly has the targets' entropy as its loss, and top-1 = 1
    perfect = []
    for t in range(3):
        for _ in range(depth):
            g = tg[t - 1] if t else torch.eye(12)
            perfect.append(torch.log(g.clamp_min(1e-12))[None, None])
    ploss, ptop = attention_correspondence_loss(perfect, tg, depth)
    ent = np.mean([float(-(g[g.sum(1) > 0] * torch.log(g[g.sum(1) > 0].clamp_min(1e-12))).sum(1).mean())
                   for g in tg])
    assert abs(float(ploss) - ent) < 1e-4 and float(ptop) == 1.0


def test_must3r_training_with_the_attention_term_logs_it(tmp_path):
    cfg = apply_overrides(get_train_config("must3r-pretrain-synthetic"),
                          SMALL + ["run.max_steps=2", "run.ckpt_every=10", "must3r_loss.attn_corr=1.0"])
    tr = run_training(cfg, tmp_path / "run")
    assert all("attn_corr" in h and "attn_top1" in h for h in tr.history)
    assert all(h["attn_corr"] > 0 for h in tr.history)


def test_must3r_res_sets_the_training_input_size(tmp_path, monkeypatch):
    """``model.must3r_res`` is the long side MUSt3R trains at (default 64 for the tiny model); bad values
    are refused by the config."""
    import threeam.train.must3r_task as must3r_task

    seen = []
    real = must3r_task.gt_pointmaps

    def spy(*args):
        out = real(*args)
        seen.append((args[-1], tuple(out.images.shape[-2:])))
        return out

    monkeypatch.setattr(must3r_task, "gt_pointmaps", spy)
    base = get_train_config("must3r-pretrain-synthetic")
    assert must3r_task.stream_res(base) == 64
    cfg = apply_overrides(base, SMALL + ["run.max_steps=1", "run.ckpt_every=10", "run.eval_every=0",
                                         "model.must3r_res=32"])
    assert must3r_task.stream_res(cfg) == 32
    run_training(cfg, tmp_path / "run")
    assert seen and all(r == 32 and hw == (16, 32) for r, hw in seen), seen  # 48x64 frames -> 24x32 -> crop 16x32
    with pytest.raises(InputError, match="must3r_res"):
        apply_overrides(base, ["model.must3r_res=8"])


def test_tiny_wide_must3r_trains_and_builds_into_a_3am_model():
    from threeam.models.three_am import ThreeAM, tiny_must3r_config
    from threeam.predictor.build import three_am_config_from_sam2
    from threeam.train.must3r_task import stream_res
    from threeam.train.three_am_task import three_am_config_for

    wide = tiny_must3r_config("tiny-wide")
    assert (wide.encoder.embed_dim, wide.encoder.depth, wide.decoder.embed_dim) == (96, 4, 64)
    wider = tiny_must3r_config("tiny-wider")
    assert (wider.decoder.enc_embed_dim, wider.decoder.embed_dim, wider.decoder.depth) == (96, 128, 12)
    cfg = apply_overrides(get_train_config("must3r-pretrain-synthetic"), ["model.must3r=tiny-wide"])
    model = build_must3r_for_training(cfg)
    assert sum(p.numel() for p in model.parameters()) > 3 * sum(
        p.numel() for p in build_must3r_for_training(get_train_config("must3r-pretrain-synthetic")).parameters())
    assert stream_res(cfg) == 64
    gt = _gt(_scene(), [0, 1, 2])
    pointmap_loss(stream_clip(model, gt.images), gt)["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    # the 3AM task builds the same MUSt3R (the merger's widths follow it); its weights load into it
    tcfg = apply_overrides(get_train_config("toy-ablation-3am"), ["model.must3r=tiny-wide"])
    three = ThreeAM(three_am_config_for(tcfg))
    three.must3r.load_state_dict(model.state_dict())  # strict: same keys and shapes
    assert three.must3r.encoder.patch_embed.proj.weight.shape[0] == 96
    assert three_am_config_from_sam2("sam2.1_hiera_t", "tiny-wide").must3r_res == 64
    with pytest.raises(InputError, match="unknown tiny MUSt3R"):
        tiny_must3r_config("tiny-huge")


def test_network_pixel_grid_is_the_crop_gt_frame_points_uses():
    """The crop grid alone (no depth, no poses) equals the rows / cols of `gt_frame_points` for the same frame."""
    import numpy as np

    from threeam.train.must3r_task import gt_frame_points, network_pixel_grid

    for H, W in ((48, 64), (96, 128), (70, 50)):
        rgb = np.zeros((H, W, 3), np.uint8)
        depth = np.ones((H, W), np.float32)
        K = np.array([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]])
        *_, rows, cols = gt_frame_points(rgb, depth, K, np.eye(4), np.eye(4), res=64)
        got_rows, got_cols = network_pixel_grid(H, W, 64)
        assert np.array_equal(got_rows, rows) and np.array_equal(got_cols, cols)
        assert got_rows.max() < H and got_cols.max() < W
