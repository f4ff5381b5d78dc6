"""`track_video` tracks under the predictor's own autocast setting (``autocast_context()``), never
a bf16 autocast forced on CUDA: a predictor built with ``autocast=False`` stays float32."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from threeam.predictor.track_job import ObjectPrompt, track_video

from .test_track_job_streaming import StubPredictor


class _OwnAutocast(StubPredictor):
    """A predictor on CUDA (as far as `track_video` can tell) with its own autocast choice; it
    records whether its context was entered and whether any autocast was on while it tracked."""

    device = torch.device("cuda")

    def __init__(self, autocast: bool):
        super().__init__()
        self.autocast = autocast
        self.entered = 0
        self.autocast_seen: list[bool] = []

    @contextlib.contextmanager
    def autocast_context(self):
        self.entered += 1
        yield

    def propagate_in_video(self, state, start_frame_idx=0, reverse=False):
        for item in super().propagate_in_video(state, start_frame_idx, reverse):
            self.autocast_seen.append(torch.is_autocast_enabled("cuda"))
            yield item


def test_track_video_uses_the_predictor_autocast_context(tmp_path, forced_autocast):
    forced = forced_autocast
    video = (np.random.default_rng(0).random((4, 96, 128, 3)) * 255).astype(np.uint8)
    p = _OwnAutocast(autocast=False)
    res = track_video(p, video, [ObjectPrompt(obj_id=1, frame=0, box=[5, 5, 30, 30])], tmp_path / "out",
                      direction="forward", overlay=False)
    assert res.frames == [0, 1, 2, 3]
    assert forced == []  # no autocast chosen by track_video
    assert p.entered == 1 and p.autocast_seen and not any(p.autocast_seen)
