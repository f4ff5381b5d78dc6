"""The 3AM training task on generated scenes (tiny-synthetic recipe, CPU): exact resume, the freeze
rule, every prompt kind. The overfitting check lives in test_trainer.py (OVERFIT_CHECKS["3am"])."""
from __future__ import annotations

import torch

from threeam.train.config import apply_overrides
from threeam.train.recipes import get_train_config, run_training
from threeam.train.three_am_task import build_model, clip_forward

FAST = ["run.progress=false", "data.frames_per_clip=2", "run.log_every=1", "optim.warmup_steps=0"]


def test_resumed_3am_run_reproduces_the_uninterrupted_losses(tmp_path):
    cfg = apply_overrides(get_train_config("tiny-synthetic"), FAST + ["run.max_steps=4", "run.ckpt_every=2"])
    full = run_training(cfg, tmp_path / "full")
    run_training(cfg, tmp_path / "split", until=2)
    resumed = run_training(cfg, tmp_path / "split", resume=True)
    losses = [r["loss"] for r in full.history]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert [r["loss"] for r in resumed.history] == losses[2:]
    a, b = full.bare_model.state_dict(), resumed.bare_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_only_merger_memory_attention_and_mask_decoder_change(tmp_path):
    cfg = apply_overrides(get_train_config("tiny-synthetic"), FAST + ["run.max_steps=2", "run.ckpt_every=10"])
    from threeam.train.distributed import DistContext
    from threeam.train.recipes import build_task
    from threeam.train.trainer import Trainer, seed_everything

    seed_everything(cfg.seed)
    task = build_task(cfg, DistContext())
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    trainer = Trainer(task.model, task.step_fn, task.sources, cfg, tmp_path / "run")
    trainer.fit()
    after = trainer.bare_model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "training changed nothing"
    assert all(k.startswith(("merger.", "sam2.memory_attention.", "sam2.sam_mask_decoder.")) for k in changed), \
        sorted(k for k in changed if not k.startswith(("merger.", "sam2.memory_attention.", "sam2.sam_mask_decoder.")))
    assert any(k.startswith("merger.") for k in changed)
    assert any(k.startswith("sam2.memory_attention.") for k in changed)
    assert any(k.startswith("sam2.sam_mask_decoder.") for k in changed)


def test_every_prompt_kind_gives_finite_losses_with_gradients():
    from threeam.data.synth import generate_scene, get_synth_config
    from threeam.train.losses import SAM2Loss

    cfg = get_train_config("tiny-synthetic")
    model = build_model(cfg)
    scene = generate_scene(get_synth_config("tiny", n_frames=3, height=48, width=64), seed=2)
    rgb = torch.stack([torch.from_numpy(scene.frame(i).rgb) for i in range(3)]).numpy()
    oid = scene.object_ids()[0]
    masks = torch.stack([torch.from_numpy(scene.frame(i).instance_ids == oid) for i in range(3)]).numpy()
    for kind in ("mask", "box", "point"):
        model.zero_grad()
        outputs, targets = clip_forward(model, rgb, masks, kind, prompt_seed=1)
        assert len(outputs) == 3 and targets.shape == (3, 1, 256, 256)
        loss = SAM2Loss(cfg.loss)(outputs, targets)["total"]
        assert torch.isfinite(loss)
        loss.backward()
        assert model.sam2.sam_mask_decoder.iou_token.weight.grad is not None, kind


def test_corrective_clicks_add_supervised_steps_on_the_prompted_frame():
    from threeam.data.synth import generate_scene, get_synth_config
    from threeam.train.losses import SAM2Loss

    cfg = get_train_config("tiny-synthetic")
    model = build_model(cfg)
    scene = generate_scene(get_synth_config("tiny", n_frames=2, height=48, width=64), seed=2)
    oid = scene.object_ids()[0]
    rgb = torch.stack([torch.from_numpy(scene.frame(i).rgb) for i in range(2)]).numpy()
    masks = torch.stack([torch.from_numpy(scene.frame(i).instance_ids == oid) for i in range(2)]).numpy()
    outputs, targets = clip_forward(model, rgb, masks, "point", prompt_seed=3, correction_clicks=3)
    assert len(outputs[0].masks) == 4 and len(outputs[1].masks) == 1  # 1 + 3 steps on frame 0 only
    plain, _ = clip_forward(model, rgb, masks, "point", prompt_seed=3, correction_clicks=0)
    assert torch.equal(plain[0].masks[0], outputs[0].masks[0])  # the first step is the same
    assert torch.isfinite(SAM2Loss(cfg.loss)(outputs, targets)["total"])
    masked, _ = clip_forward(model, rgb, masks, "mask", prompt_seed=3, correction_clicks=3)
    assert len(masked[0].masks) == 1  # mask prompts get no clicks


def test_the_sam2_prompt_plan_reaches_the_3am_step(monkeypatch):
    from threeam.data.synth import generate_scene, get_synth_config
    from threeam.train.prompts import ClipPromptPlan
    from threeam.train.three_am_task import make_step_fn

    cfg = apply_overrides(get_train_config("tiny-synthetic"), ["data.prompt_plan=sam2", "data.correction_clicks=2"])
    model = build_model(cfg)
    scene = generate_scene(get_synth_config("tiny", n_frames=4, height=48, width=64), seed=2)
    oid = scene.object_ids()[0]
    rgb = torch.stack([torch.from_numpy(scene.frame(i).rgb) for i in range(4)]).numpy()
    masks = torch.stack([torch.from_numpy(scene.frame(i).instance_ids == oid) for i in range(4)]).numpy()
    masks[:] = masks[0]  # present everywhere, so every frame may be prompted
    step = make_step_fn(cfg)
    seen = []
    import threeam.train.vos as vos

    real = vos.track_clip

    def spy(*args, plan=None, **kw):
        seen.append(plan)
        return real(*args, plan=plan, **kw)

    monkeypatch.setattr(vos, "track_clip", spy)
    for seed in range(6):
        out = step(model, {"rgb": rgb, "masks": masks, "prompt_kind": "mask", "prompt_seed": seed,
                           "prompt_kinds": ("mask", "point", "box")})
        assert torch.isfinite(out["loss"])
    assert all(isinstance(p, ClipPromptPlan) for p in seen)
    assert any(len(p.init_cond_frames) == 2 for p in seen) or any(p.use_points for p in seen)


def test_fixed_scene_geometry_gives_every_clip_the_same_must3r_input(monkeypatch):
    """``model.geometry_input=fixed_scene`` (the capacity control): MUSt3R streams the first held-out
    scene for every clip, never the clip itself; ``clip`` (default) streams the clip."""
    import pytest

    from threeam.data.synth import generate_scene, get_synth_config
    from threeam.errors import InputError
    from threeam.train import three_am_task as task

    small = ["data.scene_frames=4", "data.scene_height=48", "data.scene_width=64"]
    cfg = apply_overrides(get_train_config("tiny-synthetic"), small + ["model.geometry_input=fixed_scene"])
    model = build_model(cfg)
    seen = []
    real = task.clip_forward

    def spy(net, rgb, masks, kind, seed, geometry, *rest):
        seen.append(geometry)
        return real(net, rgb, masks, kind, seed, geometry, *rest)

    monkeypatch.setattr(task, "clip_forward", spy)
    step = task.make_step_fn(cfg)
    for scene_seed in (2, 3):
        scene = generate_scene(get_synth_config("tiny", n_frames=3, height=48, width=64), seed=scene_seed)
        oid = scene.object_ids()[0]
        rgb = torch.stack([torch.from_numpy(scene.frame(i).rgb) for i in range(3)]).numpy()
        masks = torch.stack([torch.from_numpy(scene.frame(i).instance_ids == oid) for i in range(3)]).numpy()
        out = step(model, {"rgb": rgb, "masks": masks, "prompt_kind": "mask", "prompt_seed": 0})
        assert torch.isfinite(out["loss"])
    assert len(seen) == 2 and seen[0] is seen[1] and len(seen[0]) == 3  # one geometry, computed once
    expected = task.fixed_scene_geometry(cfg, model, 3, (48, 64))
    assert torch.equal(expected[2].pts_ref, seen[0][2].pts_ref)
    default = task.make_step_fn(apply_overrides(get_train_config("tiny-synthetic"), small))
    default(model, {"rgb": rgb, "masks": masks, "prompt_kind": "mask", "prompt_seed": 0})
    assert seen[-1] is None  # the clip's own frames go through MUSt3R inside clip_forward
    with pytest.raises(InputError, match="geometry_input"):
        apply_overrides(get_train_config("tiny-synthetic"), ["model.geometry_input=other"])


def test_must3r_res_reaches_the_3am_model():
    """``model.must3r_res`` sets the size the 3AM model streams MUSt3R at (default: 3am_tiny's 64)."""
    from threeam.train.three_am_task import three_am_config_for

    base = get_train_config("toy-ablation-3am")
    assert three_am_config_for(base).resolved()[3].res == 64
    cfg = apply_overrides(base, ["model.must3r_res=128"])
    assert three_am_config_for(cfg).resolved()[3].res == 128
    assert build_model(cfg).stream_config.res == 128
