"""The ``sam2`` task (SAM 2 alone) and the shared SAM 2 clip forward: every trainable parameter of a
full SAM 2 pretraining step receives a gradient, the mask loss sees ungated logits, the 3AM task's
``conv_s0`` / ``conv_s1`` train, and no MUSt3R exists in a SAM-2-only run."""
from __future__ import annotations

import numpy as np
import torch

from threeam.train.config import apply_overrides
from threeam.train.distributed import DistContext
from threeam.train.losses import SAM2Loss
from threeam.train.recipes import build_task, get_train_config, run_training
from threeam.train.trainer import seed_everything

SMALL = ["data.scenes_per_source=1", "data.scene_frames=10", "data.scene_height=48", "data.scene_width=64",
         "data.frames_per_clip=3", "run.progress=false", "run.log_every=1", "optim.warmup_steps=0",
         "data.correction_clicks=2"]


def _clip(seed: int = 2, n: int = 3):
    """n consecutive frames of a generated scene and the GT masks of an object visible in all of them."""
    from threeam.data.synth import generate_scene, get_synth_config

    scene = generate_scene(get_synth_config("tiny", n_frames=12, height=48, width=64), seed=seed)
    ids = np.stack([scene.frame(i).instance_ids for i in range(len(scene))])
    best = None
    for start in range(len(scene) - n + 1):
        for o in scene.object_ids():
            a = int((ids[start:start + n] == o).sum(axis=(1, 2)).min())
            if best is None or a > best[0]:
                best = (a, start, o)
    a, start, oid = best
    assert a >= 20
    rgb = np.stack([scene.frame(i).rgb for i in range(start, start + n)])
    return rgb, ids[start:start + n] == oid


def test_every_trainable_parameter_of_sam2_pretraining_gets_a_gradient():
    from threeam.train.optim import assign_parameters
    from threeam.train.vos import track_clip

    cfg = apply_overrides(get_train_config("sam2-pretrain-synthetic"), SMALL)
    seed_everything(0)
    task = build_task(cfg, DistContext())
    model = task.model
    assignment = assign_parameters(model, cfg.optim)
    trainable = {n for items in assignment.trainable.values() for n, _ in items}
    # pretraining trains every module; SAM 2.1 (directly_add_no_mem_embed) never reads no_mem_pos_enc
    assert trainable == {n for n, _ in model.named_parameters()} - {"no_mem_pos_enc"}
    model.train()
    rgb, masks = _clip()
    masks_absent = masks.copy()
    masks_absent[1] = False  # an object-absent frame exercises the "no object" embeddings
    seen: dict[str, float] = {}
    loss_fn = SAM2Loss(cfg.loss)
    head = model.sam_mask_decoder.pred_obj_score_head
    last = head.layers[-1] if hasattr(head, "layers") else head
    bias = last.bias.detach().clone()
    for kind, m, seed, says_absent in (("mask", masks_absent, 1, False), ("point", masks, 2, False),
                                       ("box", masks_absent, 3, False), ("mask", masks, 4, True),
                                       ("point", masks, 5, False), ("box", masks, 6, False), ("point", masks, 7, False)):
        # (several clicks/boxes: each multimask candidate's output MLP learns when it is the min-loss one)
        # no_obj_ptr / no_obj_embed_spatial act only where the tracker predicts "absent": one pass
        # with the object-score head pushed to "absent" covers them
        with torch.no_grad():
            last.bias.copy_(bias - 50.0 if says_absent else bias)
        model.zero_grad()
        outputs, targets, _ = track_clip(model, rgb, m, kind, seed, correction_clicks=3)
        loss_fn(outputs, targets)["total"].backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                seen[n] = max(seen.get(n, 0.0), float(p.grad.abs().max()))
    missing = sorted(n for n in trainable if seen.get(n, 0.0) == 0.0)
    assert not missing, missing


def test_mask_loss_reads_ungated_logits_when_the_model_says_absent():
    """A SAM 2 whose object score says "absent" everywhere still gets a mask gradient on present frames."""
    from threeam.train.sam2_task import build_sam2_for_training
    from threeam.train.vos import track_clip

    cfg = get_train_config("sam2-pretrain-synthetic")
    model = build_sam2_for_training(cfg)
    head = model.sam_mask_decoder.pred_obj_score_head
    last = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-20.0)  # object score logit -20: every tracked frame gated to -1024
    rgb, masks = _clip()
    outputs, targets, chosen = track_clip(model, rgb, masks, "mask", 0)
    assert masks[1:].any(axis=(1, 2)).all()
    assert float(chosen[1:].max()) <= -1000  # the tracker's output is gated ...
    loss = SAM2Loss(cfg.loss)([o for o in outputs[1:]], targets[1:])
    model.zero_grad()
    (loss["mask"] + loss["dice"]).backward()
    g = model.sam_mask_decoder.output_hypernetworks_mlps[1].layers[0].weight.grad
    assert g is not None and float(g.abs().max()) > 0  # ... but the mask loss still teaches masks


def test_sam2_task_builds_no_must3r_and_trains(tmp_path):
    cfg = apply_overrides(get_train_config("toy-ablation-sam2"), SMALL + ["run.max_steps=2", "run.ckpt_every=10"])
    seed_everything(0)
    task = build_task(cfg, DistContext())
    assert not any("must3r" in n or "merger" in n for n, _ in task.model.named_parameters())
    trainer = run_training(cfg, tmp_path / "run")
    assert trainer.step == 2 and np.isfinite(trainer.history[-1]["loss"])


def test_3am_task_trains_conv_s0_and_conv_s1():
    from threeam.train.three_am_task import build_model, clip_forward

    cfg = get_train_config("toy-ablation-3am")
    model = build_model(cfg)
    model.freeze_for_training()
    rgb, masks = _clip()
    outputs, targets = clip_forward(model, rgb, masks, "mask", 0)
    SAM2Loss(cfg.loss)(outputs, targets)["total"].backward()
    for name in ("conv_s0", "conv_s1"):
        g = getattr(model.sam2.sam_mask_decoder, name).weight.grad
        assert g is not None and float(g.abs().max()) > 0, name
    assert all(p.grad is None for p in model.sam2.image_encoder.parameters())


def test_held_out_vos_metrics_are_logged(tmp_path):
    import json

    cfg = apply_overrides(get_train_config("sam2-pretrain-synthetic"),
                          SMALL + ["run.max_steps=2", "run.eval_every=2", "run.eval_items=2", "run.ckpt_every=10"])
    run_training(cfg, tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2]
    assert 0.0 <= lines[0]["vos_iou"] <= 1.0 and "vos_false_positive_rate" in lines[0]
