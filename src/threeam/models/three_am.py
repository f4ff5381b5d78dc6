"""The 3AM model: SAM 2.1 + MUSt3R + the Feature Merger.

Per frame, SAM 2's Hiera + FPN gives the stride-16 map ``F2D (1, C, S/16, S/16)``; MUSt3R (its own
streaming memory) gives the encoder tokens and decoder levels, the pointmap and the ray map; the
Feature Merger fuses them into ``F_merged`` of F2D's shape, which replaces F2D for memory attention,
the memory encoder and the mask decoder (the stride-4/8 skips stay SAM 2's). See docs/3am.md.

State-dict layout: ``sam2.*`` (the official SAM 2 keys under a ``sam2.`` prefix),
``must3r.encoder.*`` / ``must3r.decoder.*`` (the official MUSt3R keys), ``merger.*``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from threeam.errors import InputError
from threeam.models.merger import (CropGeometry, FeatureMerger, FeatureMergerConfig, Must3rFrameFeatures,
                                   get_merger_config)
from threeam.models.must3r.config import (
    Must3rConfig,
    Must3rDecoderConfig,
    Must3rEncoderConfig,
    get_must3r_config,
)
from threeam.models.must3r.model import Must3r
from threeam.models.must3r.session import Must3rFrameOutput, Must3rStreamConfig
from threeam.models.sam2.config import SAM2Config, get_sam2_config
from threeam.presets import preset_functions

# Modules the paper trains (memory attention 5e-6, mask decoder 5e-6, merger 1e-5); the rest is frozen.
TRAINABLE_PREFIXES = ("merger.", "sam2.memory_attention.", "sam2.sam_mask_decoder.")

def debug_sam2_config() -> SAM2Config:
    """A small SAM 2.1-style config (image 256, hidden 64, memory 16, Hiera embed 24) for tests and demos."""
    return SAM2Config.from_official_dict(_debug_tree())


def resolve_debug_sam2(spec: Any) -> Any:
    """``spec`` (a SAM 2 preset name or config) with the debug model's name (``sam2.1_debug_256``,
    ``debug``; not an official preset) replaced by `debug_sam2_config`; anything else unchanged."""
    from threeam.weights import is_debug_sam2_name

    return debug_sam2_config() if is_debug_sam2_name(spec) else spec


def _debug_tree() -> dict:
    """The debug SAM 2 config tree (kept in code so an installed package does not need examples/)."""
    def rope(kv: int | None = None) -> dict:
        d = {"rope_theta": 10000.0, "feat_sizes": [16, 16], "embedding_dim": 64, "num_heads": 1,
             "downsample_rate": 1, "dropout": 0.1}
        if kv is not None:
            d.update(rope_k_repeat=True, kv_in_dim=kv)
        return d

    return {
        "image_encoder": {
            "scalp": 1,
            "trunk": {"embed_dim": 24, "num_heads": 1, "stages": [1, 1, 2, 1], "global_att_blocks": [3],
                      "window_pos_embed_bkg_spatial_size": [4, 4]},
            "neck": {"position_encoding": {"num_pos_feats": 64, "normalize": True, "scale": None,
                                           "temperature": 10000},
                     "d_model": 64, "backbone_channel_list": [192, 96, 48, 24], "fpn_top_down_levels": [2, 3],
                     "fpn_interp_model": "nearest"},
        },
        "memory_attention": {
            "d_model": 64, "pos_enc_at_input": True, "num_layers": 2,
            "layer": {"activation": "relu", "dim_feedforward": 128, "dropout": 0.1, "pos_enc_at_attn": False,
                      "d_model": 64, "pos_enc_at_cross_attn_keys": True, "pos_enc_at_cross_attn_queries": False,
                      "self_attention": rope(), "cross_attention": rope(16)},
        },
        "memory_encoder": {
            "out_dim": 16, "in_dim": 64,
            "position_encoding": {"num_pos_feats": 16, "normalize": True, "scale": None, "temperature": 10000},
            "mask_downsampler": {"kernel_size": 3, "stride": 2, "padding": 1, "embed_dim": 64},
            "fuser": {"num_layers": 2, "layer": {"dim": 64, "kernel_size": 7, "padding": 3,
                                                 "layer_scale_init_value": 1e-6, "use_dwconv": True}},
        },
        "num_maskmem": 7, "image_size": 256, "sigmoid_scale_for_mem_enc": 20.0, "sigmoid_bias_for_mem_enc": -10.0,
        "use_mask_input_as_output_without_sam": True, "directly_add_no_mem_embed": True,
        "no_obj_embed_spatial": True, "use_high_res_features_in_sam": True, "multimask_output_in_sam": True,
        "iou_prediction_use_sigmoid": True, "use_obj_ptrs_in_encoder": True, "add_tpos_enc_to_obj_ptrs": True,
        "proj_tpos_enc_in_obj_ptrs": True, "use_signed_tpos_enc_to_obj_ptrs": True,
        "only_obj_ptrs_in_the_past_for_eval": True, "pred_obj_scores": True, "pred_obj_scores_mlp": True,
        "fixed_no_obj_ptr": True, "multimask_output_for_tracking": True, "use_multimask_token_for_obj_ptr": True,
        "multimask_min_pt_num": 0, "multimask_max_pt_num": 1, "use_mlp_for_obj_ptr_proj": True,
    }


TINY_MUST3R_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (48, 2, 32, 12),
    "tiny-wide": (96, 4, 64, 12),
    "tiny-wider": (96, 4, 128, 12),
}
"""(encoder width, encoder depth, decoder width, decoder depth) of each named tiny MUSt3R."""


def tiny_must3r_config(name: str = "tiny") -> Must3rConfig:
    """A tiny MUSt3R for tests, demos and the toy experiments (64 px, patch 16), by name:

    * ``tiny`` (``3am_tiny``'s): encoder 48 wide, depth 2; decoder 32 wide, 12 blocks (367k parameters).
    * ``tiny-wide``: encoder 96 wide, depth 4; decoder 64 wide, 12 blocks (about 4x the parameters), for
      the registration-bound toy experiments (docs/evidence.md).
    * ``tiny-wider``: ``tiny-wide`` with a decoder 128 wide (4.1M parameters), the next step of the
      width study.
    """
    key = name.lower()
    if key not in TINY_MUST3R_SHAPES:
        raise InputError(f"unknown tiny MUSt3R {name!r}; known: {', '.join(TINY_MUST3R_SHAPES)}")
    enc_dim, enc_depth, dec_dim, dec_depth = TINY_MUST3R_SHAPES[key]
    return Must3rConfig(
        Must3rEncoderConfig(img_size=(64, 64), embed_dim=enc_dim, depth=enc_depth, num_heads=4),
        Must3rDecoderConfig(img_size=(64, 64), enc_embed_dim=enc_dim, embed_dim=dec_dim, depth=dec_depth, num_heads=4),
    )


def is_tiny_must3r(name: Any) -> bool:
    """Whether ``name`` names a tiny MUSt3R (`tiny_must3r_config`)."""
    return isinstance(name, str) and name.lower() in TINY_MUST3R_SHAPES


@dataclass
class ThreeAMConfig:
    """What a 3AM model is made of.

    Attributes:
        sam2: SAM 2 preset name (``sam2.1_hiera_l`` in the paper) or a `SAM2Config`.
        must3r: MUSt3R preset name (``must3r_512``) or a `Must3rConfig`.
        merger: merger preset name or config; its widths (``enc_dim``, ``width``, ``sam_dim``) are
            set from the two backbones, so a preset only chooses heads, depths and conv widths.
        must3r_res: long side of MUSt3R's input (crop to a multiple of 16, aspect ratio kept);
            None uses the MUSt3R model's training size.
        stream: MUSt3R streaming options (keyframe policy, bounded memory); its feature levels are
            set to ``(0,) + merger.must3r_levels``.
    """

    sam2: Any = "sam2.1_hiera_l"
    must3r: Any = "must3r_512"
    merger: Any = "paper"
    must3r_res: int | None = None
    # 3AM reads MUSt3R's features and pointmaps only: no camera poses (Procrustes) per frame
    stream: Must3rStreamConfig = field(default_factory=lambda: Must3rStreamConfig(compute_camera=False))

    def resolved(self) -> tuple[SAM2Config, Must3rConfig, FeatureMergerConfig, Must3rStreamConfig]:
        """Typed configs of the three parts, with the merger widths taken from the backbones."""
        sam2 = get_sam2_config(self.sam2) if isinstance(self.sam2, str) else self.sam2
        must3r = get_must3r_config(self.must3r) if isinstance(self.must3r, str) else self.must3r
        merger = get_merger_config(self.merger) if isinstance(self.merger, str) else self.merger
        sam_dim = sam2.memory_attention.d_model
        merger = dataclasses.replace(merger, enc_dim=must3r.encoder.embed_dim, width=must3r.decoder.embed_dim,
                                     sam_dim=sam_dim)
        depth = must3r.decoder.depth
        bad = [lv for lv in merger.must3r_levels if not 1 <= lv <= depth]
        if bad:
            raise InputError(f"merger levels {bad} do not exist in a MUSt3R decoder of depth {depth} (valid 1..{depth})")
        res = self.must3r_res if self.must3r_res is not None else int(must3r.encoder.img_size[0])
        stream = dataclasses.replace(self.stream, feature_levels=(0,) + tuple(merger.must3r_levels), res=res)
        return sam2, must3r, merger, stream

    def to_dict(self) -> dict:
        """JSON-able description (named presets stay names, custom configs become dicts)."""
        def part(value: Any) -> Any:
            return value if isinstance(value, str) else {"custom": _as_jsonable(value)}

        return {"sam2": part(self.sam2), "must3r": part(self.must3r), "merger": part(self.merger),
                "must3r_res": self.must3r_res, "stream": _as_jsonable(self.stream)}

    @classmethod
    def from_dict(cls, d: dict) -> "ThreeAMConfig":
        def part(value: Any, kind: str) -> Any:
            if isinstance(value, str):
                return value
            custom = value["custom"]
            if kind == "sam2":
                return SAM2Config.from_dict(custom)
            if kind == "must3r":
                return Must3rConfig(Must3rEncoderConfig(**_tuples(custom["encoder"])),
                                    Must3rDecoderConfig(**_tuples(custom["decoder"])))
            return FeatureMergerConfig(**_tuples(custom))

        return cls(sam2=part(d["sam2"], "sam2"), must3r=part(d["must3r"], "must3r"),
                   merger=part(d["merger"], "merger"), must3r_res=d.get("must3r_res"),
                   stream=Must3rStreamConfig(**_tuples(d.get("stream", {}))))


def _as_jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return json.loads(json.dumps(dataclasses.asdict(value)))
    return value


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


THREE_AM_PRESETS: dict[str, ThreeAMConfig] = {
    # the paper: SAM 2.1 Large, MUSt3R 512 (decoder levels 4, 7, 11), merger as docs/merger.md
    "3am_hiera_l": ThreeAMConfig("sam2.1_hiera_l", "must3r_512", "paper"),
    "3am_hiera_b+": ThreeAMConfig("sam2.1_hiera_b+", "must3r_512", "paper"),
    "3am_hiera_t": ThreeAMConfig("sam2.1_hiera_t", "must3r_512", "paper"),
    # tests and demos: debug SAM 2 at 256, tiny MUSt3R at 64, tiny merger
    "3am_tiny": ThreeAMConfig(debug_sam2_config(), tiny_must3r_config(), "tiny", must3r_res=64,
                              stream=Must3rStreamConfig(keyframe_interval=2, max_keyframes=8, compute_camera=False)),
}
"""Named 3AM configurations."""
# 3am_tiny with the tiny-wide MUSt3R (the toy ablation's registration-bound runs; shipped weights)
THREE_AM_PRESETS["3am_tiny_wide"] = dataclasses.replace(THREE_AM_PRESETS["3am_tiny"], must3r=tiny_must3r_config("tiny-wide"))


get_three_am_config, three_am_presets = preset_functions(THREE_AM_PRESETS, "three_am", "3AM")


class ThreeAM(nn.Module):
    """SAM 2 (``sam2``: a `SAM2Base`), MUSt3R (``must3r``) and the Feature Merger (``merger``)."""

    def __init__(self, config: ThreeAMConfig | str = "3am_hiera_l", device: str | torch.device | None = None):
        super().__init__()
        from threeam.models.sam2.build import build_sam2

        self.config = get_three_am_config(config) if isinstance(config, str) else config
        sam2_cfg, must3r_cfg, merger_cfg, stream_cfg = self.config.resolved()
        self.stream_config = stream_cfg
        self.sam2 = build_sam2(sam2_cfg, device=device or "cpu")
        with torch.device(device or "cpu"):
            self.must3r = Must3r(must3r_cfg)
            self.merger = FeatureMerger(merger_cfg)

    @classmethod
    def from_pretrained(cls, source: str, device: str | torch.device = "cpu") -> "ThreeAM":
        """A `ThreeAM` from a 3AM checkpoint folder or hub id (see `threeam.models.three_am_weights`)."""
        from threeam.models.three_am_weights import load_three_am

        return load_three_am(source, device=device)

    @property
    def merger_levels(self) -> tuple[int, ...]:
        return tuple(self.merger.config.must3r_levels)

    def freeze_for_training(self) -> None:
        """The paper's rule: only the merger, memory attention and mask decoder train."""
        for name, p in self.named_parameters():
            p.requires_grad_(name.startswith(TRAINABLE_PREFIXES))

    def merger_inputs(self, out: Must3rFrameOutput, orig_hw: tuple[int, int],
                      point_scale: torch.Tensor | float | None = None) -> Must3rFrameFeatures:
        """Turn one MUSt3R streaming output into the merger's input for a frame of size ``orig_hw``.

        The pointmap for PE3D is the one in the reference (first) frame's camera, so one 3-D place
        gets one code over the whole video; rays are the frame's own unit viewing directions.
        """
        h, w = orig_hw
        res = self.stream_config.res
        geometry = CropGeometry.must3r(h, w, long_side=res, patch_size=self.merger.config.patch_size)
        if geometry.token_hw(self.merger.config.patch_size) != tuple(out.grid_hw):
            raise InputError(f"MUSt3R token grid {out.grid_hw} does not match the crop geometry "
                             f"{geometry.token_hw(self.merger.config.patch_size)} of a {h}x{w} frame")
        return Must3rFrameFeatures(
            encoder=out.feature(0), decoder=[out.feature(lv) for lv in self.merger_levels],
            pointmap=out.pts_ref, raymap=out.rays, geometry=geometry, positions=out.positions,
            point_scale=point_scale,
        )

    def merge(self, f2d: torch.Tensor, feats: Must3rFrameFeatures) -> torch.Tensor:
        """F2D (B, C, S/16, S/16) -> F_merged of the same shape."""
        return self.merger(f2d, feats)

    def merge_backbone_output(self, backbone_out: dict, must3r_out: Must3rFrameOutput,
                              orig_hw: tuple[int, int]) -> dict:
        """THE 3AM fusion step, used by the predictor and by training alike.

        Args:
            backbone_out: SAM 2's `forward_image` output for one frame (batch 1): ``backbone_fpn``
                (stride 4, 8, 16 maps, highest resolution first) and ``vision_pos_enc``.
            must3r_out: MUSt3R's streaming output for the same frame.
            orig_hw: ``(H, W)`` of the original frame MUSt3R saw.

        Returns:
            ``backbone_out`` with the stride-16 level (``backbone_fpn[-1]`` and ``vision_features``)
            replaced by F_merged ``(1, C, S/16, S/16)``; the stride-4/8 skips and the positional
            encodings stay SAM 2's.
        """
        merged = self.merge(backbone_out["backbone_fpn"][-1], self.merger_inputs(must3r_out, orig_hw))
        return self.with_merged_feature(backbone_out, merged)

    @staticmethod
    def with_merged_feature(backbone_out: dict, merged: torch.Tensor) -> dict:
        """``backbone_out`` with its stride-16 level replaced by `merged` (same shape)."""
        f2d = backbone_out["backbone_fpn"][-1]
        if merged.shape != f2d.shape:
            raise InputError(f"merged feature {tuple(merged.shape)} does not match SAM 2's stride-16 feature "
                             f"{tuple(f2d.shape)}")
        fpn = list(backbone_out["backbone_fpn"])
        fpn[-1] = merged
        return {**backbone_out, "backbone_fpn": fpn, "vision_features": merged}


def merger_parameter_breakdown(model: ThreeAM) -> dict[str, int]:
    """Parameter counts of the merger's parts (top-level children) and its total."""
    parts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.merger.named_children()}
    parts["total"] = sum(p.numel() for p in model.merger.parameters())
    return parts



