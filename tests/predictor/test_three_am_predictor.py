"""3AM wiring on tiny presets: a fresh 3AM equals SAM 2, MUSt3R runs once per frame, landscape and
portrait frames, the fallback switch, and the freeze rule for training (gradients only reach the
merger, memory attention and mask decoder)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeam.errors import InputError
from threeam.models.three_am import TRAINABLE_PREFIXES, ThreeAM
from threeam.predictor.build import build_three_am_model
from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor
from threeam.predictor.video_predictor import VideoPredictor


def _video(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Two coloured boxes moving over a textured background: (T, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    base = (rng.random((h, w, 3)) * 80).astype(np.uint8)
    frames = []
    for i in range(t):
        f = base.copy()
        f[h // 4 + i: h // 4 + i + h // 4, w // 5 + 2 * i: w // 5 + 2 * i + w // 5] = (220, 40, 40)
        f[h // 2: h // 2 + h // 5, w // 2 + i: w // 2 + i + w // 4] = (40, 200, 60)
        frames.append(f)
    return np.stack(frames)


@pytest.fixture(scope="module")
def tiny() -> ThreeAM:
    return build_three_am_model("3am_tiny", random_weights=True, seed=3)


def _track(predictor, video, reverse_from: int | None = None):
    state = predictor.init_state(video)
    h, w = video.shape[1:3]
    predictor.add_new_points_or_box(state, 0, 1, box=[w // 5, h // 4, w // 5 + w // 5, h // 4 + h // 4])
    predictor.add_new_points_or_box(state, 0, 2, points=[[w // 2 + w // 8, h // 2 + h // 10]], labels=[1])
    out = {t: m.clone() for t, _, m in predictor.propagate_in_video(state)}
    return state, out


@pytest.mark.parametrize("hw", [(48, 80), (80, 48)], ids=["landscape", "portrait"])
def test_fresh_3am_equals_sam2_and_must3r_runs_once_per_frame(tiny, hw):
    video = _video(5, *hw)
    sam2 = VideoPredictor(tiny.sam2, progress=False)
    three = ThreeAMVideoPredictor(tiny, progress=False)
    _, ref = _track(sam2, video)
    state, out = _track(three, video)
    assert sorted(out) == sorted(ref) == list(range(5))
    for t in ref:  # zero-initialised last projection: F_merged == F2D exactly
        assert torch.equal(out[t], ref[t]), f"frame {t}"
    geo = three.geometry(state)
    # two objects, five frames: MUSt3R ran once per frame, in visit order
    assert geo.must3r_calls == 5 and geo.visit_order == [0, 1, 2, 3, 4]
    assert set(geo.merged) == set(range(5))


def test_trained_merger_changes_the_masks_and_fallback_restores_sam2(tiny):
    video = _video(4, 48, 80)
    model = ThreeAM("3am_tiny")
    model.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        model.merger.last_conv.weight.normal_(0, 0.5)
    three = ThreeAMVideoPredictor(model.eval(), progress=False)
    _, ref = _track(VideoPredictor(model.sam2, progress=False), video)
    _, out = _track(three, video)
    assert any(not torch.equal(out[t], ref[t]) for t in ref)

    # the paper's sequence-level fallback: a motion detector that flags the video -> plain SAM 2
    calls = []
    fallback = ThreeAMVideoPredictor(model, progress=False, motion_detector=lambda frames: calls.append(len(frames)) or True)
    state, out = _track(fallback, video)
    assert calls == [4]
    assert not fallback.geometry(state).use_geometry and fallback.geometry(state).must3r_calls == 0
    for t in ref:
        assert torch.equal(out[t], ref[t])
    # switching after tracking is refused
    with pytest.raises(InputError, match="before anything is tracked"):
        fallback.set_use_geometry(state, True)


def test_middle_frame_forward_then_backward_keeps_must3r_consistent(tiny):
    video = _video(6, 48, 80)
    three = ThreeAMVideoPredictor(tiny, progress=False)
    state = three.init_state(video)
    three.add_new_points_or_box(state, 3, 1, points=[[40, 25]], labels=[1])
    fwd = [t for t, _, _ in three.propagate_in_video(state, start_frame_idx=3)]
    back = [t for t, _, _ in three.propagate_in_video(state, start_frame_idx=3, reverse=True)]
    geo = three.geometry(state)
    assert fwd == [3, 4, 5] and back == [3, 2, 1, 0]
    # the prompted frame is MUSt3R's reference; each frame was seen by MUSt3R exactly once
    assert geo.visit_order == [3, 4, 5, 2, 1, 0] and geo.must3r_calls == 6
    before = {t: v.clone() for t, v in geo.merged.items()}
    three.reset_state(state)
    three.add_new_points_or_box(state, 3, 1, points=[[40, 25]], labels=[1])
    list(three.propagate_in_video(state, start_frame_idx=3))
    assert geo.must3r_calls == 6  # re-propagation reuses the cached geometry
    assert all(torch.equal(before[t], geo.merged[t]) for t in before)


def test_gradients_reach_only_merger_memory_attention_and_mask_decoder(tiny):
    model = ThreeAM("3am_tiny")
    model.load_state_dict(tiny.state_dict())
    with torch.no_grad():  # a merger that has trained a little (zero-init would pass gradient to one conv only)
        model.merger.last_conv.weight.normal_(0, 0.1)
    model.freeze_for_training()
    model.train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(TRAINABLE_PREFIXES) for n in trainable)
    assert not any(p.requires_grad for p in model.sam2.image_encoder.parameters())
    assert not any(p.requires_grad for p in model.must3r.parameters())

    predictor = ThreeAMVideoPredictor(model, progress=False)
    video = _video(3, 48, 80)
    state = predictor.init_state(video)
    sam2 = model.sam2
    memory = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    loss = torch.zeros(())
    with torch.enable_grad():
        for t in range(3):
            image = state.images[t].unsqueeze(0).float()
            with torch.no_grad():  # the image encoder and MUSt3R stay frozen / no-grad
                backbone = sam2.forward_image(image)
                must3r_out = predictor.geometry(state).stream.add_frame(predictor.geometry(state).frames[t])
            # the one 3AM fusion step, with gradients in the merger
            features = sam2.prepare_frame_features(model.merge_backbone_output(backbone, must3r_out, video.shape[1:3]))
            point_inputs = None
            if t == 0:
                point_inputs = {"point_coords": torch.tensor([[[100.0, 90.0]]]),
                                "point_labels": torch.tensor([[1]], dtype=torch.int32)}
            out = sam2.track_frame(features, t, memory, 3, is_init_cond_frame=t == 0, point_inputs=point_inputs)
            key = "cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"
            memory[key][t] = out.memory_entry()
            loss = loss + out.pred_masks.sigmoid().mean() + out.object_score_logits.mean()
        loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad <= trainable
    for prefix in TRAINABLE_PREFIXES:
        assert any(n.startswith(prefix) for n in with_grad), f"no gradient reached {prefix}"
    assert all(p.grad is None for p in model.sam2.image_encoder.parameters())
    assert all(p.grad is None for p in model.must3r.parameters())


def _trained(tiny) -> ThreeAM:
    """The tiny 3AM with a merger whose output layer is not zero (the geometry changes the masks)."""
    model = ThreeAM("3am_tiny")
    model.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        model.merger.last_conv.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    return model.eval()


def test_reset_session_starts_a_fresh_must3r_stream_reset_state_keeps_it(tiny):
    video = _video(6, 48, 80)
    three = ThreeAMVideoPredictor(_trained(tiny), progress=False)
    state = three.init_state(video)
    three.add_new_points_or_box(state, 3, 1, points=[[40, 25]], labels=[1])
    first = {t: m.clone() for t, _, m in three.propagate_in_video(state, start_frame_idx=3)}
    geo = three.geometry(state)
    three.reset_state(state)  # prompts and memories only: the stream and its reference (frame 3) stay
    assert geo.visit_order == [3, 4, 5] and len(geo.merged) == 3 and state.obj_ids == []
    three.reset_session(state)  # also MUSt3R's stream and the merged-feature cache
    assert geo.visit_order == [] and geo.merged == {} and geo.must3r_calls == 0 and state.cached_features == {}
    three.add_new_points_or_box(state, 5, 1, points=[[40, 25]], labels=[1])
    list(three.propagate_in_video(state, start_frame_idx=5, reverse=True))
    assert geo.visit_order == [5, 4, 3, 2, 1, 0]  # the new prompted frame is the new reference
    # a fresh session on the same video reproduces the first session exactly after reset_session
    three.reset_session(state)
    three.add_new_points_or_box(state, 3, 1, points=[[40, 25]], labels=[1])
    again = {t: m for t, _, m in three.propagate_in_video(state, start_frame_idx=3)}
    assert all(torch.equal(first[t], again[t]) for t in first)


def test_predictor_is_a_drop_in_for_sam2_video_predictor_code(tiny):
    three = ThreeAMVideoPredictor(_trained(tiny), progress=False)
    video = _video(3, 48, 80)
    state = three.init_state(video_path=video)  # the official keyword
    assert three.to("cpu") is three and three.eval() is three
    assert three.num_maskmem == three.model.num_maskmem and three.image_encoder is three.model.image_encoder
    assert three.remove_object(state, 99) == ([], [])  # official default: unknown ids are ignored
    with pytest.raises(InputError, match="99"):
        three.remove_object(state, 99, strict=True)
    with pytest.raises(InputError, match="once"):
        three.init_state(video, video=video)


def test_eval_protocol_masks_do_not_depend_on_other_objects_or_pass_order(tiny):
    """The reproduction of the pass-order leak: two objects with conditioning frames 5 and 8; each
    (object group, direction) must start from a fresh MUSt3R stream whose reference is its
    conditioning frame."""
    from threeam.eval.protocol import track_objects

    video = _video(12, 48, 80)
    three = ThreeAMVideoPredictor(_trained(tiny), progress=False)
    a = np.zeros(video.shape[1:3], bool)
    a[12:24, 16:32] = True
    b = np.zeros(video.shape[1:3], bool)
    b[24:33, 44:64] = True
    together = track_objects(three, video, {1: (5, a), 2: (8, b)})
    alone = track_objects(three, video, {1: (5, a)})
    assert together.masks[1].any()
    assert np.array_equal(together.masks[1], alone.masks[1])
    alone_b = track_objects(three, video, {2: (8, b)})
    assert np.array_equal(together.masks[2], alone_b.masks[2])

    # backward before forward gives the same masks as forward before backward
    def pass_masks(reverse: bool, state) -> dict:
        three.reset_session(state)
        three.add_new_mask(state, 5, 1, a)
        return {t: m.clone() for t, _, m in three.propagate_in_video(state, start_frame_idx=5, reverse=reverse)}

    state = three.init_state(video)
    fwd1, back1 = pass_masks(False, state), pass_masks(True, state)
    back2, fwd2 = pass_masks(True, state), pass_masks(False, state)
    assert all(torch.equal(fwd1[t], fwd2[t]) for t in fwd1) and all(torch.equal(back1[t], back2[t]) for t in back1)
    # and the protocol's backward half is exactly that backward pass
    for t in range(5):
        assert np.array_equal(alone.masks[1][t], (back1[t][0, 0] > 0).numpy())
