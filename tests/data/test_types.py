"""`threeam.data.types.frame_index`: the one frame-index rule of every reader."""
from __future__ import annotations

import pytest

from threeam.data.types import frame_index
from threeam.errors import InputError


def test_frame_index_counts_from_the_end_like_a_list():
    assert [frame_index(i, 3, "s") for i in (0, 2, -1, -3)] == [0, 2, 2, 0]
    for bad in (3, -4):
        with pytest.raises(InputError, match=rf"frame index {bad} out of range for room0 \(3 frames\)"):
            frame_index(bad, 3, "room0")
