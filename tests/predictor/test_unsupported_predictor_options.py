"""`clear_non_cond_mem_for_multi_obj=True` is refused with one clear line wherever it is set
(nothing reads it: `clear_non_cond_mem_around_input` clears each object's memories around its
own inputs, for one object or many)."""
from __future__ import annotations

from pathlib import Path

import pytest

from threeam.errors import InputError
from threeam.models.sam2.config import VideoPredictorConfig
from threeam.predictor.build import build_predictor
from threeam.predictor.sam2_compat import build_sam2_video_predictor

DEBUG_JSON = Path(__file__).resolve().parents[2] / "examples" / "sam2.1_debug_256.json"
WORDS = r"clear_non_cond_mem_for_multi_obj=True is not supported"


def test_the_official_builder_refuses_it():
    with pytest.raises(InputError, match=WORDS):
        build_sam2_video_predictor(str(DEBUG_JSON), device="cpu", random_weights=True,
                                   hydra_overrides_extra=["++model.clear_non_cond_mem_around_input=true",
                                                          "++model.clear_non_cond_mem_for_multi_obj=true"])
    ok = build_sam2_video_predictor(str(DEBUG_JSON), device="cpu", random_weights=True, progress=False,
                                    hydra_overrides_extra=["++model.clear_non_cond_mem_for_multi_obj=false"])
    assert ok.fill_hole_area == 8


def test_every_other_entry_point_refuses_it():
    from threeam.models.three_am import debug_sam2_config

    with pytest.raises(InputError, match=WORDS):
        VideoPredictorConfig(clear_non_cond_mem_for_multi_obj=True)
    with pytest.raises(InputError, match=WORDS):
        build_predictor("sam2", preset=debug_sam2_config(), random_weights=True,
                        clear_non_cond_mem_for_multi_obj=True)
    with pytest.raises(InputError, match=WORDS):
        VideoPredictorConfig.from_official_dict({"model": {"clear_non_cond_mem_for_multi_obj": True}})
