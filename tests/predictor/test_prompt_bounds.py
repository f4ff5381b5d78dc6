"""The prompt-coordinate rule of both predictors (docs/tracking.md, "Prompts outside the frame"):
box corners may lie up to one frame size outside the frame on any side and are used as given
(never clipped, as the official predictors do), points up to one frame size past the right/bottom
edge; negative points, anything farther and boxes that miss the frame are refused; a mask prompt of another size with the frame's
aspect ratio is resized. Tiny SAM 2 with deterministic random weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeam.errors import InputError
from threeam.models.three_am import debug_sam2_config
from threeam.predictor.build import build_predictor
from threeam.predictor.image_predictor import ImagePredictor

H, W = 48, 64


@pytest.fixture(scope="module")
def video_predictor():
    return build_predictor("sam2", preset=debug_sam2_config(), random_weights=True, seed=1, progress=False)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    f = rng.integers(0, 60, (3, H, W, 3), dtype=np.uint8)
    f[:, 10:30, 20:44] = (220, 40, 40)
    return f


def _fresh(p, frames):
    return p.init_state(frames)


# ----------------------------------------------------------------------------- video predictor
def test_a_box_past_the_frame_is_used_as_given(video_predictor, frames):
    p = video_predictor
    state = _fresh(p, frames)
    _, _, past = p.add_new_points_or_box(state, 0, 1, box=[-10, -5, W + 20, 30])
    corners = state.point_inputs_per_obj[0][0]["point_coords"][0, :2]
    want = torch.tensor([[-10.0, -5.0], [W + 20.0, 30.0]]) / torch.tensor([W, H]) * p.image_size
    assert torch.allclose(corners, want)  # not clipped to [0, W] x [0, H]
    _, _, inside = p.add_new_points_or_box(_fresh(p, frames), 0, 1, box=[0, 0, W, 30])
    assert not torch.equal(past, inside)
    state = _fresh(p, frames)
    p.add_new_points_or_box(state, 0, 1, box=[0.1, 0.2, 1.3, 0.9], normalize_coords=False)
    corners = state.point_inputs_per_obj[0][0]["point_coords"][0, :2]
    assert torch.allclose(corners, torch.tensor([[0.1, 0.2], [1.3, 0.9]]) * p.image_size)
    for box in ([-W, -H, 2 * W, 2 * H], [-W, 0, 0, 10]):  # the band's edges; touching the frame's edge
        p.add_new_points_or_box(_fresh(p, frames), 0, 1, box=box)


@pytest.mark.parametrize("box, words", [
    ([-W - 1, 0, 10, 10], "outside the frame"),        # a corner more than one frame size out
    ([0, 0, 10, 2 * H + 1], "outside the frame"),
    ([W + 1, 0, W + 10, 10], "misses the frame"),         # entirely right of the frame
    ([0, -20, 10, -1], "misses the frame"),
])
def test_boxes_clearly_outside_are_refused(video_predictor, frames, box, words):
    state = _fresh(video_predictor, frames)
    with pytest.raises(InputError, match=words):
        video_predictor.add_new_points_or_box(state, 0, 1, box=box)
    assert list(state.obj_ids) == []


def test_points_past_the_edge_are_accepted_negative_or_far_ones_refused(video_predictor, frames):
    p = video_predictor
    for point in ([W + 0.5, 10], [W, H], [2 * W, 2 * H]):
        _, ids, masks = p.add_new_points_or_box(_fresh(p, frames), 0, 1, points=[point], labels=[1])
        assert ids == [1] and masks.shape == (1, 1, H, W)
    for point in ([-1, 10], [10, -0.5], [2 * W + 1, 10], [10, 2 * H + 3]):
        state = _fresh(p, frames)
        with pytest.raises(InputError, match=r"outside the frame.*no negative"):
            p.add_new_points_or_box(state, 0, 1, points=[point], labels=[1])
        assert list(state.obj_ids) == []
    with pytest.raises(InputError, match=r"\[0, 2\] x \[0, 2\]"):
        p.add_new_points_or_box(_fresh(p, frames), 0, 1, points=[[0.5, 2.5]], labels=[1], normalize_coords=False)


def test_a_mask_with_the_frames_aspect_ratio_is_resized(video_predictor, frames):
    p = video_predictor
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:44] = True
    _, _, full = p.add_new_mask(_fresh(p, frames), 0, 1, mask)
    double = np.repeat(np.repeat(mask, 2, 0), 2, 1)  # (2H, 2W): the same mask at twice the size
    state = _fresh(p, frames)
    _, _, big = p.add_new_mask(state, 0, 1, double)
    assert big.shape == full.shape == (1, 1, H, W)
    a, b = full[0, 0] > 0, big[0, 0] > 0
    assert (a & b).sum() / max(1, (a | b).sum()) > 0.95
    assert state.mask_inputs_per_obj[0][0].shape[-2:] == (p.image_size, p.image_size)
    near = np.zeros((H * 2, W * 2 + 1), bool)  # aspect 129/96 vs 64/48: within 1%
    p.add_new_mask(_fresh(p, frames), 0, 1, near)
    for shape in ((H, W + 5), (W, H), (p.image_size, p.image_size)):
        with pytest.raises(InputError, match=r"same aspect ratio"):
            p.add_new_mask(_fresh(p, frames), 0, 1, np.zeros(shape, bool))


# ----------------------------------------------------------------------------- image predictor
@pytest.fixture(scope="module")
def image_predictor(frames):
    ip = ImagePredictor.from_pretrained(debug_sam2_config(), random_weights=True, seed=1)
    ip.set_image(frames[0])
    return ip


def test_image_predictor_uses_boxes_as_given_and_the_same_point_rule(image_predictor, monkeypatch):
    ip = image_predictor
    seen = []
    real = ip.transform_boxes

    def spy(b, **kwargs):
        seen.append(b.clone())
        return real(b, **kwargs)

    monkeypatch.setattr(ip, "transform_boxes", spy)
    a = ip.predict(box=[-10, -5, W + 20, 30], multimask_output=False, return_logits=True)
    assert torch.equal(seen[-1].cpu(), torch.tensor([[-10.0, -5.0, W + 20.0, 30.0]]))  # not clipped
    b = ip.predict(box=[0, 0, W, 30], multimask_output=False, return_logits=True)
    assert not np.array_equal(a[0], b[0])
    batch = ip.predict(box=[[-10, -5, W + 20, 30], [5, 5, 20, 20]], multimask_output=False, return_logits=True)
    assert np.allclose(batch[0][0], a[0], atol=1e-4)  # batched: float32 rounding only
    ip.predict(point_coords=[[W + 3, H + 3]], point_labels=[1])
    for kwargs, words in ((dict(point_coords=[[-1, 3]], point_labels=[1]), "outside the image"),
                          (dict(point_coords=[[2 * W + 1, 3]], point_labels=[1]), "outside the image"),
                          (dict(box=[0, 0, 10, 2 * H + 1]), "outside the image"),
                          (dict(box=[W + 1, 0, W + 9, 9]), "misses the image")):
        with pytest.raises(InputError, match=words):
            ip.predict(**kwargs)


# ----------------------------------------------------------------------------- threeam track's checks
def test_track_prompts_follow_the_same_rule():
    from threeam.predictor.track_job import ObjectPrompt, VideoInfo, check_prompts

    info = VideoInfo(num_frames=3, height=H, width=W)
    check_prompts([ObjectPrompt(1, box=[-10, -5, W + 20, 30]), ObjectPrompt(2, points=[[W + 1, 5]], labels=[1]),
                   ObjectPrompt(3, mask=np.ones((2 * H, 2 * W), bool))], info)
    for prompt, words in ((ObjectPrompt(1, points=[[-1, 5]], labels=[1]), "outside the frame"),
                          (ObjectPrompt(1, box=[0, 0, 2 * W + 1, 9]), "outside the frame"),
                          (ObjectPrompt(1, box=[W + 1, 0, W + 9, 9]), "misses the frame"),
                          (ObjectPrompt(1, mask=np.ones((H, W + 9), bool)), "same aspect ratio")):
        with pytest.raises(InputError, match=words):
            check_prompts([prompt], info)
