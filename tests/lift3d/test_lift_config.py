"""LiftConfig presets, overrides and validation."""
from __future__ import annotations

import pytest

from threeam.errors import InputError
from threeam.lift3d.config import LIFT_PRESETS, LiftConfig, get_lift_config


def test_presets_are_valid_and_round_trip():
    for name, cfg in LIFT_PRESETS.items():
        assert LiftConfig.from_dict(cfg.to_dict()) == cfg, name
    assert get_lift_config("paper").frame_skip == 5 and get_lift_config("fast").frame_skip == 10
    assert get_lift_config("synthetic", erode_px=1).erode_px == 1


@pytest.mark.parametrize("bad", [dict(frame_skip=0), dict(merge_iou=1.5), dict(keyframe_mode="random"),
                                 dict(superpoint_priority="largest"), dict(depth_tol_abs=-1.0),
                                 dict(min_depth=2.0, max_depth=1.0), dict(confidence_terms=("luck",)),
                                 dict(max_frames=0), dict(amg=3), dict(track_horizon=1.5)])
def test_bad_values_raise_input_error(bad):
    with pytest.raises(InputError):
        LiftConfig(**bad)


def test_unknown_names():
    with pytest.raises(InputError, match="unknown lift option"):
        get_lift_config("paper", bogus=1)
    with pytest.raises(InputError, match="unknown lift preset"):
        get_lift_config("nope")
