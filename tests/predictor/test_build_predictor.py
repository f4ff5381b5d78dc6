import pytest

from threeam.errors import InputError
from threeam.predictor.build import build_predictor
from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor
from threeam.predictor.video_predictor import VideoPredictor


def test_build_3am_tiny_random():
    p = build_predictor("3am", preset="3am_tiny", random_weights=True, progress=False)
    assert isinstance(p, ThreeAMVideoPredictor)


def test_build_sam2_random_is_deterministic():
    from threeam.models.three_am import debug_sam2_config

    a = build_predictor("sam2", preset=debug_sam2_config(), random_weights=True, seed=3, progress=False)
    b = build_predictor("sam2", preset=debug_sam2_config(), random_weights=True, seed=3, progress=False)
    assert type(a) is VideoPredictor
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all((sa[k] == sb[k]).all() for k in sa)


def test_build_errors():
    with pytest.raises(InputError):
        build_predictor("sam3", random_weights=True)
    with pytest.raises(InputError):
        build_predictor("sam2")
