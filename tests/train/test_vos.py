"""SAM 2's training clip forward (`threeam.train.vos`): SAM 2's prompt plan (several conditioning
frames, corrections on tracked frames that then join the conditioning frames, conditioning frames
processed first) and the frame-0 rule it generalises."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeam.models.sam2.tracking import COND
from threeam.train.prompts import ClipPromptPlan, PromptSimConfig
from threeam.train.vos import clip_prompt_plan, track_clip


@pytest.fixture(scope="module")
def sam2():
    from threeam.models.three_am import debug_sam2_config
    from threeam.predictor.build import build_sam2_model

    return build_sam2_model(debug_sam2_config(), random_weights=True, seed=0)


def _clip(T: int = 5, absent: tuple[int, ...] = (2,)):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (T, 48, 64, 3), dtype=np.uint8)
    masks = np.zeros((T, 48, 64), bool)
    masks[:, 10:30, 20:40] = True
    for t in absent:
        masks[t] = False
    return rgb, masks


def test_the_sam2_plan_prompts_and_corrects_only_frames_that_show_the_object():
    _, masks = _clip(8, absent=(1, 2, 5))
    seen_init, seen_corr, kinds, extra = set(), set(), set(), 0
    for seed in range(60):
        plan = clip_prompt_plan(masks, PromptSimConfig(), seed)
        extra += bool(set(plan.frames_to_correct) - set(plan.init_cond_frames))
        assert plan.init_cond_frames[0] == 0
        seen_init.update(plan.init_cond_frames)
        seen_corr.update(plan.frames_to_correct)
        kinds.update(plan.frame_kinds.values())
        assert set(plan.frame_kinds) == set(plan.init_cond_frames)
    assert seen_init - {0} and not seen_init & {1, 2, 5}
    assert extra > 0  # some clips correct a tracked frame too, never an absent one
    assert not seen_corr & {1, 2, 5}
    assert kinds == {"mask", "box", "clicks"}
    masks_only = [clip_prompt_plan(masks, PromptSimConfig(masks_only=True), s) for s in range(20)]
    assert all(not p.use_points and not p.frames_to_correct for p in masks_only)


def test_conditioning_frames_go_first_and_a_corrected_tracked_frame_joins_them(sam2, monkeypatch):
    rgb, masks = _clip(5, absent=())
    calls = []
    real = type(sam2).track_frame

    def spy(self, features, t, memory, T, **kw):
        calls.append((t, kw.get("is_init_cond_frame"), kw.get("point_inputs") is not None, sorted(memory[COND])))
        return real(self, features, t, memory, T, **kw)

    monkeypatch.setattr(type(sam2), "track_frame", spy)
    plan = ClipPromptPlan(True, [0, 3], [0, 3, 1], {0: "clicks", 3: "box"})
    with torch.no_grad():
        outputs, targets, chosen = track_clip(sam2, rgb, masks, "mask", 7, correction_clicks=2, plan=plan)
    order = [c[0] for c in calls if not c[2] or c[0] in (0, 3)]
    assert [t for t, *_ in calls][0] == 0 and order.index(3) < order.index(1)  # frame 3 before frame 1
    assert [len(o.masks) for o in outputs] == [3, 3, 1, 3, 1]  # corrected frames: 1 + 2 supervised steps
    first_on_1 = next(c for c in calls if c[0] == 1)
    assert first_on_1[1] is False and first_on_1[2] is False  # tracked from memory, no prompt yet
    assert first_on_1[3] == [0, 3]
    on_2 = next(c for c in calls if c[0] == 2)
    assert on_2[3] == [0, 1, 3]  # the corrected frame 1 is a conditioning memory now
    assert chosen.shape == (5, 1, sam2.image_size, sam2.image_size) and targets.shape == chosen.shape


def test_the_frame0_rule_is_the_plan_with_one_prompt_on_frame_0(sam2):
    rgb, masks = _clip(4)
    for kind in ("mask", "point"):
        a = track_clip(sam2, rgb, masks, kind, 3, correction_clicks=2)
        plan = ClipPromptPlan(kind != "mask", [0], [0] if kind != "mask" else [], {0: kind})
        b = track_clip(sam2, rgb, masks, kind, 3, correction_clicks=2, plan=plan)
        assert [len(o.masks) for o in a[0]] == [len(o.masks) for o in b[0]] == ([1, 1, 1, 1] if kind == "mask"
                                                                                   else [3, 1, 1, 1])
        assert torch.equal(a[2], b[2])


def test_sam2_task_uses_the_plan_only_when_configured():
    from threeam.train.config import apply_overrides
    from threeam.train.recipes import get_train_config
    from threeam.train.sam2_task import prompt_plan_for

    _, masks = _clip(6, absent=())
    batch = {"masks": masks, "prompt_seed": 4, "prompt_kinds": ("mask", "point", "box")}
    cfg = get_train_config("sam2-pretrain-synthetic")
    plans = [prompt_plan_for(apply_overrides(cfg, ["data.prompt_plan=sam2"]), {**batch, "prompt_seed": s})
             for s in range(30)]
    assert all(isinstance(p, ClipPromptPlan) for p in plans) and any(len(p.init_cond_frames) == 2 for p in plans)
    assert prompt_plan_for(apply_overrides(cfg, ["data.prompt_plan=frame0"]), batch) is None
    assert prompt_plan_for(apply_overrides(cfg, ["data.prompt_plan=sam2"]), {**batch, "eval": True}) is None
    assert all(not p.use_points for p in (prompt_plan_for(apply_overrides(cfg, ["data.prompt_plan=sam2"]),
                                                          {**batch, "prompt_kinds": ("mask",), "prompt_seed": s})
                                          for s in range(10)))
    from threeam.errors import InputError
    with pytest.raises(InputError, match="prompt_plan"):
        apply_overrides(cfg, ["data.prompt_plan=all"])


def test_a_mask_plan_keeps_a_tracked_frame_so_the_clip_has_a_gradient(sam2):
    # a 2-frame clip drawing 2 mask-prompted conditioning frames would supervise nothing trainable
    # (the crash that stopped the first SAM 2 pretraining with the plan)
    rgb, masks = _clip(2, absent=())
    plans = [clip_prompt_plan(masks, PromptSimConfig(masks_only=True), s) for s in range(40)]
    assert all(p.init_cond_frames == [0] for p in plans)
    from threeam.train.losses import SAM2Loss

    outputs, targets, _ = track_clip(sam2, rgb, masks, "mask", 0, plan=plans[0])
    assert SAM2Loss()(outputs, targets)["total"].requires_grad
    three = [clip_prompt_plan(_clip(3, absent=())[1], PromptSimConfig(masks_only=True), s) for s in range(40)]
    assert any(len(p.init_cond_frames) == 2 for p in three)  # longer clips still get two
