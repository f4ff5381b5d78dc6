"""SAM 2 presets and typed configs: every preset builds the official state-dict layout exactly."""
from __future__ import annotations

import json

import pytest
import torch

from threeam.errors import InputError
from threeam.models.sam2.build import build_sam2
from threeam.models.sam2.config import (
    SAM2_PRESET_ALIASES,
    SAM2_PRESETS,
    HieraConfig,
    SAM2Config,
    VideoPredictorConfig,
    get_sam2_config,
    resolve_preset_name,
)

VARIANTS = [
    "sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l",
    "sam2_hiera_t", "sam2_hiera_s", "sam2_hiera_b+", "sam2_hiera_l",
]


def _manifest(golden_dir, name):
    return json.loads((golden_dir / "sam2" / f"manifest_{name}.json").read_text())["shapes"]


def test_presets_are_the_eight_official_variants():
    assert sorted(SAM2_PRESETS) == sorted(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_preset_state_dict_matches_manifest(golden_dir, name):
    model = build_sam2(name, device="meta")
    assert type(model).__name__ == "SAM2Base"
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    ref = _manifest(golden_dir, name)
    assert sorted(set(ref) - set(got)) == []  # missing keys
    assert sorted(set(got) - set(ref)) == []  # unexpected keys
    assert {k: v for k, v in got.items() if v != ref[k]} == {}
    assert all(p.is_meta for p in model.parameters())
    assert not model.training


@pytest.mark.parametrize(
    "alias,name",
    [
        ("sam2.1_hiera_tiny", "sam2.1_hiera_t"),
        ("sam2.1_hiera_small", "sam2.1_hiera_s"),
        ("sam2.1_hiera_base_plus", "sam2.1_hiera_b+"),
        ("sam2.1_hiera_large", "sam2.1_hiera_l"),
        ("sam2_hiera_large", "sam2_hiera_l"),
        ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_b+"),
        ("facebook/sam2.1-hiera-base-plus", "sam2.1_hiera_b+"),
        ("SAM2_Hiera_S", "sam2_hiera_s"),
    ],
)
def test_aliases_resolve(alias, name):
    assert resolve_preset_name(alias) == name
    assert get_sam2_config(alias) == SAM2_PRESETS[name]
    assert alias in SAM2_PRESET_ALIASES or resolve_preset_name(alias) == name


def test_unknown_preset_lists_the_presets():
    with pytest.raises(InputError) as info:
        get_sam2_config("sam3_hiera_xl")
    msg = str(info.value)
    assert "sam3_hiera_xl" in msg
    for name in VARIANTS:
        assert name in msg


def test_get_config_returns_independent_copies():
    a = get_sam2_config("sam2.1_hiera_t")
    a.image_encoder.trunk.embed_dim = 8
    assert get_sam2_config("sam2.1_hiera_t").image_encoder.trunk.embed_dim == 96


def test_version_differences():
    v21, v2 = get_sam2_config("sam2.1_hiera_l"), get_sam2_config("sam2_hiera_l")
    assert v21.no_obj_embed_spatial and v21.proj_tpos_enc_in_obj_ptrs and v21.use_signed_tpos_enc_to_obj_ptrs
    assert not (v2.no_obj_embed_spatial or v2.add_tpos_enc_to_obj_ptrs or v2.proj_tpos_enc_in_obj_ptrs)
    assert v21.image_encoder.trunk.window_spec == (8, 4, 16, 8)
    assert v21.image_encoder.neck.backbone_channel_list == (1152, 576, 288, 144)
    assert v21.sam_mask_decoder_extra_args.dynamic_multimask_via_stability


def test_hiera_channel_list():
    assert HieraConfig(embed_dim=112).channel_list == [896, 448, 224, 112]
    assert HieraConfig(embed_dim=16, stages=(1, 1, 2, 1)).channel_list == [128, 64, 32, 16]


def test_from_official_dict_small_case(golden_dir):
    js = json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())
    cfg = SAM2Config.from_official_dict(js["config"])
    assert cfg == SAM2Config.from_official_dict({"model": js["config"]})
    trunk = cfg.image_encoder.trunk
    assert (trunk.embed_dim, trunk.stages, trunk.global_att_blocks) == (16, (1, 1, 2, 1), (3,))
    assert trunk.window_spec == (8, 4, 14, 7)  # constructor default, not given in the tree
    assert cfg.image_size == 256 and cfg.memory_encoder.out_dim == 16
    assert cfg.memory_attention.layer.cross_attention.kv_in_dim == 16
    assert cfg.memory_encoder.mask_downsampler.embed_dim == 64
    assert cfg.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh == 0.98
    assert cfg.binarize_mask_from_pts_for_mem_enc is True
    model = build_sam2(cfg, device="meta")
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert got == {k: list(v) for k, v in js["shapes"].items()}


def test_official_tree_of_tiny_1024_is_the_preset(golden_dir):
    js = json.loads((golden_dir / "sam2" / "case_tiny1024_v21.json").read_text())
    cfg = SAM2Config.from_official_dict(js["config"])
    # the golden tree is the video predictor's: binarize on, otherwise the preset itself
    assert cfg == get_sam2_config("sam2.1_hiera_t").copy(binarize_mask_from_pts_for_mem_enc=True)
    video = VideoPredictorConfig.from_official_dict(js["config"])
    assert video.fill_hole_area == 0 and video.binarize_mask_from_pts_for_mem_enc


def test_from_official_dict_rejects_unknown_options():
    tree = get_sam2_config("sam2.1_hiera_t").to_dict()
    tree["image_encoder"]["trunk"]["embed_dims"] = 96
    with pytest.raises(InputError, match="embed_dims"):
        SAM2Config.from_official_dict(tree)


def test_to_dict_round_trip():
    for name in VARIANTS:
        cfg = get_sam2_config(name)
        assert SAM2Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_video_predictor_defaults_are_official():
    v = VideoPredictorConfig()
    assert (v.fill_hole_area, v.non_overlap_masks, v.binarize_mask_from_pts_for_mem_enc) == (8, False, True)
    assert not v.add_all_frames_to_correct_as_cond and not v.clear_non_cond_mem_around_input


def test_video_config_sets_binarize_flag():
    model = build_sam2("sam2.1_hiera_t", device="meta", video_config=VideoPredictorConfig())
    assert model.binarize_mask_from_pts_for_mem_enc is True
    assert build_sam2("sam2.1_hiera_t", device="meta").binarize_mask_from_pts_for_mem_enc is False


def test_trunk_neck_mismatch_is_a_clear_error():
    cfg = get_sam2_config("sam2.1_hiera_t")
    cfg.image_encoder.trunk.embed_dim = 112
    with pytest.raises(InputError, match="backbone_channel_list"):
        build_sam2(cfg, device="meta")


def test_bad_mode_and_type():
    with pytest.raises(InputError):
        build_sam2("sam2.1_hiera_t", device="meta", mode="inference")
    with pytest.raises(InputError):
        build_sam2(42, device="meta")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        build_sam2("sam2.1_hiera_t", checkpoint="x.pt", device=torch.device("meta"))
