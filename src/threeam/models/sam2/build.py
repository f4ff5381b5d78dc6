"""Build SAM 2 / SAM 2.1 models from typed configs (see :mod:`threeam.models.sam2.config`).

    model = build_sam2("sam2.1_hiera_t", checkpoint="sam2.1_hiera_tiny.pt")   # eval mode, CPU
    model = build_sam2(cfg, device="meta")                                  # shapes only, no memory

With a checkpoint the model is built on the meta device and the checkpoint tensors are assigned
directly (no random initialisation), then moved to `device`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from threeam.errors import InputError
from threeam.models.sam2.config import (
    ImageEncoderConfig,
    MemoryAttentionConfig,
    MemoryEncoderConfig,
    PositionEncodingConfig,
    RoPEAttentionConfig,
    SAM2Config,
    VideoPredictorConfig,
    _kwargs,
    get_sam2_config,
)
from threeam.models.sam2.hiera import Hiera
from threeam.models.sam2.image_encoder import FpnNeck, ImageEncoder
from threeam.models.sam2.position_encoding import PositionEmbeddingSine

__all__ = [
    "build_position_encoding",
    "build_image_encoder",
    "build_memory_attention",
    "build_memory_encoder",
    "build_sam2",
    "build_sam2_from_state_dict",
    "as_sam2_config",
]


def as_sam2_config(config: Union[SAM2Config, str]) -> SAM2Config:
    """A :class:`SAM2Config` from a config object or a preset name/alias."""
    if isinstance(config, SAM2Config):
        return config
    if isinstance(config, str):
        return get_sam2_config(config)
    raise InputError(f"expected a SAM2Config or a preset name, got {type(config).__name__}")


def build_position_encoding(cfg: PositionEncodingConfig) -> PositionEmbeddingSine:
    return PositionEmbeddingSine(**_kwargs(cfg))


def build_image_encoder(cfg: ImageEncoderConfig) -> ImageEncoder:
    """Hiera trunk + FPN neck. Raises InputError if the trunk widths and the neck's channel list disagree."""
    trunk_widths = list(cfg.trunk.channel_list)
    if trunk_widths != list(cfg.neck.backbone_channel_list):
        raise InputError(
            f"image encoder config: trunk stage widths {trunk_widths} (lowest resolution first) do not match "
            f"neck.backbone_channel_list {list(cfg.neck.backbone_channel_list)}"
        )
    trunk = Hiera(**_kwargs(cfg.trunk))
    neck = FpnNeck(
        position_encoding=build_position_encoding(cfg.neck.position_encoding),
        **_kwargs(cfg.neck, skip=("position_encoding",)),
    )
    return ImageEncoder(trunk=trunk, neck=neck, scalp=cfg.scalp)


def _rope_attention(cfg: RoPEAttentionConfig) -> nn.Module:
    from threeam.models.sam2.transformer import RoPEAttention

    return RoPEAttention(**_kwargs(cfg))


def build_memory_attention(cfg: MemoryAttentionConfig) -> nn.Module:
    from threeam.models.sam2.memory_attention import MemoryAttention, MemoryAttentionLayer

    layer_cfg = cfg.layer
    layer = MemoryAttentionLayer(
        self_attention=_rope_attention(layer_cfg.self_attention),
        cross_attention=_rope_attention(layer_cfg.cross_attention),
        **_kwargs(layer_cfg, skip=("self_attention", "cross_attention")),
    )
    return MemoryAttention(layer=layer, **_kwargs(cfg, skip=("layer",)))


def build_memory_encoder(cfg: MemoryEncoderConfig) -> nn.Module:
    from threeam.models.sam2.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder

    fuser = Fuser(layer=CXBlock(**_kwargs(cfg.fuser.layer)), **_kwargs(cfg.fuser, skip=("layer",)))
    return MemoryEncoder(
        out_dim=cfg.out_dim,
        mask_downsampler=MaskDownSampler(**_kwargs(cfg.mask_downsampler)),
        fuser=fuser,
        position_encoding=build_position_encoding(cfg.position_encoding),
        in_dim=cfg.in_dim,
    )


def _construct(cfg: SAM2Config) -> nn.Module:
    from threeam.models.sam2.sam2_base import SAM2Base

    return SAM2Base(
        image_encoder=build_image_encoder(cfg.image_encoder),
        memory_attention=build_memory_attention(cfg.memory_attention),
        memory_encoder=build_memory_encoder(cfg.memory_encoder),
        **cfg.base_kwargs(),
    )


def _has_meta_tensors(model: nn.Module) -> bool:
    return any(t.is_meta for t in model.parameters()) or any(t.is_meta for t in model.buffers())


def build_sam2(
    config: Union[SAM2Config, str],
    checkpoint: Union[str, Path, None] = None,
    device: Union[str, torch.device] = "cpu",
    *,
    video_config: Optional[VideoPredictorConfig] = None,
    mode: str = "eval",
) -> nn.Module:
    """Build a ``SAM2Base`` for `config` (a :class:`SAM2Config` or a preset name such as ``"sam2.1_hiera_b+"``).

    Args:
        checkpoint: a local ``.pt`` / ``.safetensors`` file or a hub id (``facebook/sam2.1-hiera-large``);
            see :func:`threeam.models.sam2.checkpoint.load_sam2_weights`. None leaves the random init.
        device: where the model ends up; ``"meta"`` builds shapes only (no memory, no checkpoint).
        video_config: when given, the SAM2Base flag ``binarize_mask_from_pts_for_mem_enc`` is taken
            from it (the official video predictor turns it on).
        mode: ``"eval"`` (default) or ``"train"``.

    Raises InputError for a bad config or mode, CheckpointError / OfflineError for checkpoint problems.
    """
    cfg = as_sam2_config(config)
    if video_config is not None:
        cfg = cfg.copy(binarize_mask_from_pts_for_mem_enc=video_config.binarize_mask_from_pts_for_mem_enc)
    if mode not in ("eval", "train"):
        raise InputError(f"mode must be 'eval' or 'train', got {mode!r}")
    device = torch.device(device)

    if checkpoint is None:
        with torch.device(device):
            model = _construct(cfg)
    else:
        if device.type == "meta":
            raise InputError("a checkpoint cannot be loaded onto the meta device; pass device='cpu' or 'cuda'")
        from threeam.models.sam2.checkpoint import load_sam2_weights

        with torch.device("meta"):
            model = _construct(cfg)
        load_sam2_weights(model, checkpoint, assign=True)
        if _has_meta_tensors(model):  # a tensor the checkpoint does not carry: build for real instead
            model = _construct(cfg)
            load_sam2_weights(model, checkpoint)
        model = model.to(device)
    return model.train(mode == "train")


def build_sam2_from_state_dict(
    config: Union[SAM2Config, str],
    state_dict: dict,
    device: Union[str, torch.device] = "cpu",
    *,
    video_config: Optional[VideoPredictorConfig] = None,
    mode: str = "eval",
) -> nn.Module:
    """Like :func:`build_sam2` but from an in-memory official state dict (``{key: tensor}``).

    The model's parameters share storage with the float32 tensors of `state_dict` (no copy);
    pass a copy if you keep modifying the dict.
    """
    cfg = as_sam2_config(config)
    if video_config is not None:
        cfg = cfg.copy(binarize_mask_from_pts_for_mem_enc=video_config.binarize_mask_from_pts_for_mem_enc)
    if mode not in ("eval", "train"):
        raise InputError(f"mode must be 'eval' or 'train', got {mode!r}")
    from threeam.models.sam2.checkpoint import apply_state_dict

    with torch.device("meta"):
        model = _construct(cfg)
    apply_state_dict(model, state_dict, source="<state dict>", assign=True)
    if _has_meta_tensors(model):
        model = _construct(cfg)
        apply_state_dict(model, state_dict, source="<state dict>")
    return model.to(torch.device(device)).train(mode == "train")
