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


def test_one_random_weights_rule_through_every_entry_point():
    """Same preset + seed -> the same SAM 2 weights whoever builds them (CLI, eval, 3AM, classmethods)."""
    import torch

    from threeam.eval.methods import EvalContext
    from threeam.models.three_am import debug_sam2_config, get_three_am_config
    from threeam.predictor.build import build_sam2_model, build_three_am_model
    from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor

    cfg = debug_sam2_config()
    ref = build_sam2_model(cfg, random_weights=True, seed=5).state_dict()
    others = {
        "build_predictor": build_predictor("sam2", preset=cfg, random_weights=True, seed=5, progress=False).model,
        "from_pretrained": VideoPredictor.from_pretrained(cfg, random_weights=True, seed=5, progress=False).model,
        "eval context": EvalContext(model_preset=cfg, random_weights=True, seed=5).sam2_model(),
        "3am (sam2 config)": build_three_am_model(cfg, random_weights=True, seed=5).sam2,
        "3am preset": build_three_am_model("3am_tiny", random_weights=True, seed=5).sam2,
        "3am classmethod": ThreeAMVideoPredictor.from_pretrained("3am_tiny", random_weights=True, seed=5).model,
    }
    assert get_three_am_config("3am_tiny").sam2 == cfg
    for name, model in others.items():
        own = model.state_dict()
        assert own.keys() == ref.keys(), name
        assert all(torch.equal(own[k], ref[k]) for k in ref), name
    other_seed = build_sam2_model(cfg, random_weights=True, seed=6).state_dict()
    assert any(not torch.equal(other_seed[k], ref[k]) for k in ref)


def test_weights_from_exactly_one_source_and_hub_ids_are_checkpoints(monkeypatch):
    from threeam.models.sam2 import checkpoint as ck
    from threeam.predictor.build import build_sam2_model

    with pytest.raises(InputError, match="not both"):
        build_sam2_model("sam2.1_hiera_t", checkpoint="x.pt", random_weights=True)
    with pytest.raises(InputError, match="no weights"):
        VideoPredictor.from_pretrained("sam2.1_hiera_t")
    seen = []

    def fake_load(model, source, **kw):  # a hub id as the model name must be downloaded, never random
        seen.append(source)
        raise InputError("offline")

    monkeypatch.setattr(ck, "load_sam2_weights", fake_load)
    with pytest.raises(InputError, match="offline"):
        VideoPredictor.from_pretrained("facebook/sam2.1-hiera-tiny")
    assert seen == ["facebook/sam2.1-hiera-tiny"]
