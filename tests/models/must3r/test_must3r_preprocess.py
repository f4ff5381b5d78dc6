"""MUSt3R preprocessing: sizes, portrait frames, normalisation and the to_orig mapping."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from threeam.errors import InputError
from threeam.models.must3r.preprocess import bucket_size, normalize, preprocess_frame


def _frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["crop16", "buckets"])
@pytest.mark.parametrize("hw,expected", [
    ((480, 640), (384, 512)), ((640, 480), (512, 384)), ((1440, 1920), (384, 512)),
    ((1168, 1752), (336, 512)), ((1752, 1168), (512, 336)), ((384, 512), (384, 512)),
])
def test_sizes_landscape_and_portrait(mode, hw, expected):
    out = preprocess_frame(_frame(*hw), res=512, mode=mode)
    assert out.true_shape == expected and tuple(out.image.shape) == (3, *expected)
    assert out.true_shape[0] % 16 == 0 and out.true_shape[1] % 16 == 0
    assert out.orig_hw == hw
    assert out.image.dtype == torch.float32 and -1 <= out.image.min() and out.image.max() <= 1


def test_crop16_keeps_any_aspect_but_buckets_force_trained_ones():
    wide = _frame(100, 1000)
    assert preprocess_frame(wide, mode="crop16").true_shape == (48, 512)
    assert preprocess_frame(wide, mode="buckets").true_shape == (160, 512)
    assert bucket_size(1000, 100) == (512, 160)
    assert preprocess_frame(_frame(300, 200), mode="crop16", res=224).true_shape == (224, 224)
    assert preprocess_frame(_frame(300, 200), mode="buckets", res=224).true_shape == (224, 224)
    odd = preprocess_frame(_frame(250, 333), res=256, mode="crop16")
    assert odd.true_shape == (192, 256)  # 256x192 after resize, already multiples of 16


def test_normalisation_and_identity_at_trained_size():
    frame = _frame(384, 512)
    out = preprocess_frame(Image.fromarray(frame), mode="buckets")
    torch.testing.assert_close(out.image, torch.from_numpy(frame).permute(2, 0, 1).float() / 255 * 2 - 1)
    np.testing.assert_allclose(out.to_orig, np.eye(3))
    assert normalize(np.array([[[0, 255, 51]]], dtype=np.uint8)).flatten().tolist() == pytest.approx([-1, 1, -0.6])


@pytest.mark.parametrize("mode", ["crop16", "buckets"])
def test_to_orig_maps_network_pixels_back(mode):
    # a frame whose colour encodes its original column: map network pixels back and compare
    h, w = 600, 1000
    cols = np.tile(np.linspace(0, 255, w)[None, :, None], (h, 1, 3)).astype(np.uint8)
    out = preprocess_frame(cols, res=512, mode=mode)
    H, W = out.true_shape
    for u in (W * 0.25, W * 0.5, W * 0.75):
        x0 = out.to_orig @ np.array([u, H / 2, 1.0])
        value = (out.image[0, H // 2, int(u)].item() + 1) / 2 * 255
        assert abs(value - x0[0] / (w - 1) * 255) < 3.0


def test_bad_frames_are_clear_errors():
    with pytest.raises(InputError, match="uint8"):
        preprocess_frame(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        preprocess_frame(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(InputError, match="mode"):
        preprocess_frame(_frame(32, 32), mode="stretch")
    with pytest.raises(InputError, match="res"):
        preprocess_frame(_frame(32, 32), res=500)
    with pytest.raises(InputError, match="elongated"):
        preprocess_frame(_frame(2, 2000))
