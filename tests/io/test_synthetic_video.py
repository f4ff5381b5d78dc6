"""The generated long video: deterministic frames made on demand, and its mp4 writer."""
from __future__ import annotations

import numpy as np
import pytest

from threeam.errors import InputError
from threeam.io.synthetic_video import SyntheticVideo, write_mp4
from threeam.io.video import load_video_frames, read_video


def test_frames_are_deterministic_and_show_the_moving_disc():
    video = SyntheticVideo(1000, 64, 96, seed=3)
    assert len(video) == 1000 and video[999].shape == (64, 96, 3) and video[0].dtype == np.uint8
    np.testing.assert_array_equal(video[123], SyntheticVideo(1000, 64, 96, seed=3)[123])
    assert not np.array_equal(video[0], video[10])  # the disc moves
    m = video.mask(10)
    assert m.any() and (video[10][m] == video[10][m][0]).all()  # the disc has one colour
    x0, y0, x1, y1 = video.box(10)
    ys, xs = np.nonzero(m)
    assert x0 <= xs.min() and xs.max() <= x1 + 1 and y0 <= ys.min() and ys.max() <= y1 + 1
    np.testing.assert_array_equal(video[-1], video[999])
    with pytest.raises(IndexError):
        video[1000]
    with pytest.raises(InputError):
        SyntheticVideo(0)


def test_lazy_source_and_mp4(tmp_path):
    video = SyntheticVideo(8, 32, 48, seed=1)
    loaded = load_video_frames(video, 16)
    assert loaded.num_frames == 8 and (loaded.video_height, loaded.video_width) == (32, 48)
    np.testing.assert_array_equal(loaded.images.raw(5), video[5])
    path = write_mp4(tmp_path / "v.mp4", (video[t] for t in range(8)), fps=10)
    decoded = read_video(path)
    assert decoded.shape == (8, 32, 48, 3)
    assert np.abs(decoded.astype(int) - np.stack([video[t] for t in range(8)]).astype(int)).mean() < 12
