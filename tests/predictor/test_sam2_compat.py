"""The official SAM 2 builders' names and arguments: config names, checkpoints, overrides, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from threeam.errors import InputError, OfflineError
from threeam.models.sam2.config import get_sam2_config
from threeam.predictor.build import build_sam2_model
from threeam.predictor.sam2_compat import (
    apply_hydra_overrides,
    build_sam2,
    build_sam2_hf,
    build_sam2_video_predictor,
    build_sam2_video_predictor_hf,
    resolve_official_config,
)
from threeam.predictor.video_predictor import VideoPredictor

DEBUG_JSON = Path(__file__).resolve().parents[2] / "examples" / "sam2.1_debug_256.json"


@pytest.mark.parametrize("name, preset", [
    ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_t"),
    ("sam2.1_hiera_t.yaml", "sam2.1_hiera_t"),
    ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_b+"),
    ("configs/sam2/sam2_hiera_l.yaml", "sam2_hiera_l"),
    ("sam2_hiera_s.yaml", "sam2_hiera_s"),
    ("facebook/sam2.1-hiera-large", "sam2.1_hiera_l"),
    ("sam2.1_hiera_small", "sam2.1_hiera_s"),
])
def test_official_config_names_map_to_presets(name, preset):
    cfg, video = resolve_official_config(name)
    # the official YAML configs carry no post-processing; the builders add it
    assert cfg == get_sam2_config(preset).copy(sam_mask_decoder_extra_args=None)
    assert video.fill_hole_area == 0 and video.binarize_mask_from_pts_for_mem_enc is False
    others = [p for p in ("sam2.1_hiera_t", "sam2.1_hiera_l", "sam2_hiera_l") if p != preset]
    assert all(cfg != get_sam2_config(p).copy(sam_mask_decoder_extra_args=None) for p in others)


def test_unknown_config_name():
    with pytest.raises(InputError, match="sam2.1_hiera_q.yaml"):
        resolve_official_config("configs/sam2.1/sam2.1_hiera_q.yaml")
    with pytest.raises(InputError, match="config_file"):
        resolve_official_config(12)


def test_postprocessing_overrides_as_the_official_builders():
    from threeam.predictor.sam2_compat import POSTPROCESSING_OVERRIDES, VIDEO_POSTPROCESSING_OVERRIDES

    cfg, video = resolve_official_config("sam2.1_hiera_t.yaml")
    pcfg, pvideo, vos = apply_hydra_overrides(cfg, video, VIDEO_POSTPROCESSING_OVERRIDES)
    assert not vos
    assert pcfg == get_sam2_config("sam2.1_hiera_t").copy(binarize_mask_from_pts_for_mem_enc=True)
    assert pvideo.fill_hole_area == 8 and pvideo.binarize_mask_from_pts_for_mem_enc is True
    icfg, ivideo, _ = apply_hydra_overrides(cfg, video, POSTPROCESSING_OVERRIDES)
    assert icfg.sam_mask_decoder_extra_args.dynamic_multimask_via_stability is True
    assert ivideo.fill_hole_area == 0 and icfg.binarize_mask_from_pts_for_mem_enc is False
    # the inputs are not modified
    assert cfg.sam_mask_decoder_extra_args is None and video.fill_hole_area == 0


def test_overrides_map_onto_the_configs():
    cfg, video = resolve_official_config("configs/sam2.1/sam2.1_hiera_t.yaml")
    cfg, video, vos = apply_hydra_overrides(cfg, video, [
        "++model.image_encoder.trunk.embed_dim=48",
        "model.image_size=512",
        "+model.non_overlap_masks=true",
        "++model.fill_hole_area=3",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.1",
        "++model.image_encoder.trunk.stages=[1,2,3,4]",
        "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictorVOS",
    ])
    assert cfg.image_encoder.trunk.embed_dim == 48 and cfg.image_size == 512
    assert cfg.image_encoder.trunk.stages == (1, 2, 3, 4)
    assert video.non_overlap_masks is True and video.fill_hole_area == 3
    assert cfg.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta == pytest.approx(0.1)
    assert vos is True
    cfg, _, _ = apply_hydra_overrides(get_sam2_config("sam2.1_hiera_t"), video, ["~model.sam_mask_decoder_extra_args"])
    assert cfg.sam_mask_decoder_extra_args is None


def test_bad_overrides_are_named():
    cfg, video = resolve_official_config("sam2.1_hiera_t.yaml")
    bad = ["++model.not_an_option=1", "++model.image_encoder.trunk.nope=2", "++trainer.max_epochs=3",
           "++model._target_=somewhere.Else"]
    with pytest.raises(InputError) as info:
        apply_hydra_overrides(cfg, video, ["++model.fill_hole_area=2"] + bad)
    msg = str(info.value)
    assert all(b in msg for b in bad) and "fill_hole_area=2'" not in msg
    with pytest.raises(InputError, match="wrong type"):
        apply_hydra_overrides(cfg, video, ["++model.fill_hole_area=true"])
    with pytest.raises(InputError, match="cannot read"):
        apply_hydra_overrides(cfg, video, ["model.image_size"])
    with pytest.raises(InputError, match="list of strings"):
        apply_hydra_overrides(cfg, video, "++model.image_size=512")


@pytest.fixture(scope="module")
def debug_checkpoint(tmp_path_factory):
    """An official-format checkpoint ({"model": state_dict}) of the debug config, written by the test."""
    cfg, _ = resolve_official_config(DEBUG_JSON)
    model = build_sam2_model(cfg, random_weights=True, seed=7)
    path = tmp_path_factory.mktemp("ckpt") / "debug.pt"
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"model": sd}, path)
    return path, sd


def test_video_predictor_from_a_local_checkpoint(debug_checkpoint):
    path, sd = debug_checkpoint
    predictor = build_sam2_video_predictor(str(DEBUG_JSON), str(path), device="cpu")
    assert isinstance(predictor, VideoPredictor)
    own = predictor.model.state_dict()
    assert set(own) == set(sd) and all(torch.equal(own[k], sd[k]) for k in sd)
    assert not predictor.model.training and predictor.vos_optimized is False
    # apply_postprocessing (default True): the three official additions
    assert predictor.fill_hole_area == 8
    assert predictor.model.binarize_mask_from_pts_for_mem_enc is True
    extra = predictor.model.sam_mask_decoder.dynamic_multimask_via_stability
    assert extra is True
    plain = build_sam2_video_predictor(str(DEBUG_JSON), str(path), device="cpu", apply_postprocessing=False,
                                       hydra_overrides_extra=["++model.non_overlap_masks=true"], vos_optimized=True,
                                       mode="train")
    assert plain.fill_hole_area == 0 and plain.model.binarize_mask_from_pts_for_mem_enc is False
    assert plain.model.sam_mask_decoder.dynamic_multimask_via_stability is False
    assert plain.non_overlap_masks is True and plain.vos_optimized is True and plain.model.training
    assert plain.compiled and not predictor.compiled  # vos_optimized: the compiled mode (compiled on first use)
    # as the official code, post-processing is applied after the extra overrides
    later = build_sam2_video_predictor(str(DEBUG_JSON), str(path), device="cpu",
                                       hydra_overrides_extra=["++model.fill_hole_area=0"])
    assert later.fill_hole_area == 8


def test_image_model_builder(debug_checkpoint):
    path, sd = debug_checkpoint
    model = build_sam2(str(DEBUG_JSON), str(path), device="cpu")
    assert isinstance(model, torch.nn.Module) and not isinstance(model, VideoPredictor)
    assert all(torch.equal(model.state_dict()[k], sd[k]) for k in sd)
    assert model.sam_mask_decoder.dynamic_multimask_via_stability is True
    assert model.binarize_mask_from_pts_for_mem_enc is False  # image builder: no video post-processing
    random = build_sam2(str(DEBUG_JSON), device="cpu", random_weights=True, seed=7)
    assert all(torch.equal(random.state_dict()[k], sd[k]) for k in sd)  # the one random-weights rule


def test_no_weights_unknown_kwargs_and_device():
    with pytest.raises(InputError, match="random_weights=True"):
        build_sam2_video_predictor(str(DEBUG_JSON), device="cpu")
    with pytest.raises(InputError, match="not both"):
        build_sam2_video_predictor(str(DEBUG_JSON), "x.pt", device="cpu", random_weights=True)
    with pytest.raises(InputError, match="colour"):
        build_sam2_video_predictor(str(DEBUG_JSON), device="cpu", random_weights=True, colour="red")
    with pytest.raises(InputError, match="mode"):
        build_sam2_video_predictor(str(DEBUG_JSON), device="cpu", random_weights=True, mode="predict")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            build_sam2_video_predictor(str(DEBUG_JSON), random_weights=True)  # official default device="cuda"
    with pytest.raises(InputError, match="facebook/sam2.1-hiera-tiny"):
        build_sam2_video_predictor_hf("facebook/sam3-hiera-tiny", device="cpu")


def test_hub_id_offline_gives_the_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    url = "https://huggingface.co/facebook/sam2.1-hiera-tiny/resolve/main/sam2.1_hiera_tiny.pt"
    for build in (lambda: build_sam2_video_predictor_hf("facebook/sam2.1-hiera-tiny", device="cpu"),
                  lambda: build_sam2_hf("facebook/sam2.1-hiera-tiny", device="cpu"),
                  lambda: build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml",
                                                     "facebook/sam2.1-hiera-tiny", device="cpu")):
        with pytest.raises(OfflineError) as info:
            build()
        assert url in str(info.value)


def test_the_notebook_calls_run_unchanged(debug_checkpoint, tmp_path):
    """init_state(video_path=...), a click, propagate, remove_object with the official default."""
    path, _ = debug_checkpoint
    predictor = build_sam2_video_predictor(str(DEBUG_JSON), str(path), device="cpu", progress=False)
    folder = tmp_path / "frames"
    folder.mkdir()
    yy, xx = np.mgrid[0:48, 0:64]
    for t in range(3):
        frame = np.zeros((48, 64, 3), dtype=np.uint8)
        frame[((yy - 24) ** 2 + (xx - 20 - 4 * t) ** 2) < 100] = 220
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg")
    state = predictor.init_state(video_path=str(folder))
    _, obj_ids, logits = predictor.add_new_points_or_box(inference_state=state, frame_idx=0, obj_id=1,
                                                         points=np.array([[20, 24]], dtype=np.float32),
                                                         labels=np.array([1], np.int32))
    assert obj_ids == [1] and logits.shape == (1, 1, 48, 64)
    seen = [t for t, _, _ in predictor.propagate_in_video(state)]
    assert seen == [0, 1, 2]
    predictor.remove_object(state, 99)  # unknown id: ignored, as the official default strict=False
    predictor.reset_state(state)
