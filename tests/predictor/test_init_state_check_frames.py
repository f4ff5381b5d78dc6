"""`init_state(..., check_all_frames=True)` reports a corrupt frame of a frames folder up front, as
the official synchronous loader does; by default (streaming) it is reported when tracking reaches it."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from threeam.errors import VideoError


@pytest.fixture(scope="module")
def predictor():
    from threeam.models.three_am import debug_sam2_config
    from threeam.predictor.build import build_predictor

    return build_predictor("sam2", preset=debug_sam2_config(), random_weights=True, progress=False)


def _folder(tmp_path, corrupt: bool):
    rng = np.random.default_rng(0)
    folder = tmp_path / ("bad" if corrupt else "good")
    folder.mkdir()
    for i in range(4):
        Image.fromarray((rng.random((32, 48, 3)) * 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg")
    if corrupt:
        (folder / "00002.jpg").write_bytes(b"\xff\xd8 truncated, not a jpeg")
    return folder


def test_check_all_frames_finds_a_corrupt_frame_up_front(predictor, tmp_path):
    bad = _folder(tmp_path, corrupt=True)
    with pytest.raises(VideoError, match="00002.jpg"):
        predictor.init_state(str(bad), check_all_frames=True)
    with pytest.raises(VideoError, match="00002.jpg"):
        predictor.init_state(video_path=str(bad), check_all_frames=True)
    # streaming default: the session opens, the frame fails when tracking reaches it
    state = predictor.init_state(str(bad))
    predictor.add_new_points_or_box(state, 0, 1, box=[4, 4, 20, 20])
    seen = []
    with pytest.raises(VideoError, match="00002.jpg"):
        for t, _, _ in predictor.propagate_in_video(state):
            seen.append(t)
    assert seen == [0, 1]
    good = predictor.init_state(str(_folder(tmp_path, corrupt=False)), check_all_frames=True)
    assert good.num_frames == 4
