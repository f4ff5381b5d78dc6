"""The image predictor and the mask generator get their weights through the one builder:
never random unless asked for by name, a hub id is downloaded (see predictor/build.py)."""
import pytest
import torch

from threeam.errors import InputError
from threeam.models.three_am import debug_sam2_config
from threeam.predictor.build import build_sam2_model
from threeam.predictor.image_predictor import ImagePredictor, SAM2ImagePredictor
from threeam.predictor.mask_generator import AutomaticMaskGenerator

BUILDERS = {"image predictor": ImagePredictor.from_pretrained,
            "image predictor (official name)": SAM2ImagePredictor.from_pretrained,
            "mask generator": AutomaticMaskGenerator.from_pretrained}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_no_weights_is_an_error_not_a_random_model(name):
    with pytest.raises(InputError, match="no weights"):
        BUILDERS[name]("sam2.1_hiera_t")


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_hub_id_is_downloaded_never_random(name, monkeypatch):
    from threeam.models.sam2 import checkpoint as ck

    seen = []

    def fake_load(model, source, **kw):
        seen.append(source)
        raise InputError("offline")

    monkeypatch.setattr(ck, "load_sam2_weights", fake_load)
    with pytest.raises(InputError, match="offline"):
        BUILDERS[name]("facebook/sam2.1-hiera-tiny")
    assert seen == ["facebook/sam2.1-hiera-tiny"]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_random_weights_by_name_follow_the_one_rule(name):
    cfg = debug_sam2_config()
    ref = build_sam2_model(cfg, random_weights=True, seed=4).state_dict()
    built = BUILDERS[name](cfg, random_weights=True, seed=4)
    own = built.model.state_dict()
    assert own.keys() == ref.keys()
    assert all(torch.equal(own[k], ref[k]) for k in ref)
    with pytest.raises(InputError, match="not both"):
        BUILDERS[name](cfg, checkpoint="x.pt", random_weights=True)
