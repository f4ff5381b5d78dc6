"""The 3AM Feature Merger: MUSt3R geometry features fused into SAM 2's stride-16 features.

Per frame (batch B = frames or objects of one video, all the same size):

* inputs on MUSt3R's token grid (h, w) (e.g. 24 x 32 landscape, 32 x 24 portrait at long
  side 512): the encoder output (B, h*w, enc_dim), decoder features of the levels used
  (3AM: MUSt3R features 4, 7, 11), each (B, h*w, width), the token positions (B, h*w, 2)
  (row, col), the pointmap and ray map (B, 16h, 16w, 3);
* SAM 2's stride-16 map F2D (B, sam_dim, Hs, Ws) (64 x 64 at 1024).

Computation (widths from :class:`FeatureMergerConfig`):

1. ``x = enc_proj(enc) + PE3D`` (1x1 projection enc_dim -> width; PE3D from :mod:`pe3d`);
2. ``init_depth`` self-attention blocks (pre-norm; MUSt3R's 2-D RoPE on q, k; PE3D added
   to the normalised input; FFN);
3. for each decoder level i, ``blocks_per_level`` hierarchical blocks:
   ``x += SelfAttn(LN(x) + PE3D)``; ``x += CrossAttn(LN(x), LN(F_i) + PE3D)``; ``x += FFN(LN(x))``;
4. ``LN(x)`` as a (B, width, h, w) map is resampled onto SAM 2's grid
   (:func:`align_to_sam_grid`, which accounts for MUSt3R's centre crop), then
   ``up = Conv3x3(width -> up_dim)``;
5. ``F_merged = F2D + fuse(cat[F2D, up, valid])`` with ``fuse = Conv3x3(sam_dim + up_dim + 1
   -> fuse_dim) -> GroupNorm -> GELU -> Conv1x1(fuse_dim -> sam_dim)``; the last 1x1 conv is
   zero-initialised, so a fresh merger returns F2D exactly. With ``fuse_input="geometry"`` the
   block reads ``cat[up, valid]`` only (``up_dim + 1`` input channels). With ``centre_offset`` the
   offset ``fuse(...)`` has its mean over the (Hs, Ws) grid removed per frame and channel before it is
   added (and the last conv has no bias, which would then be inert), so the merger cannot add a
   per-channel constant to F2D.

Key names are our own (no official 3AM code exists).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from threeam.config_checks import check_heads, check_ints
from threeam.errors import InputError
from threeam.models.must3r.rope import RoPE2D, grid_positions
from threeam.models.pe3d import PE3D
from threeam.presets import preset_functions

__all__ = [
    "FeatureMergerConfig",
    "MERGER_PRESETS",
    "get_merger_config",
    "merger_presets",
    "CropGeometry",
    "Must3rFrameFeatures",
    "FeatureMerger",
    "sam_grid_in_token_coords",
    "align_to_sam_grid",
    "merger_parameter_count",
    "TRANSFORMER_PARTS",
    "OUTPUT_PARTS",
]


# --------------------------------------------------------------------------------------
# configuration


PE3D_INITS = ("small", "fan_in")
"""Values of `FeatureMergerConfig.pe3d_init`."""

FUSE_INPUTS = ("concat", "geometry")
"""Values of `FeatureMergerConfig.fuse_input`."""


@dataclass(frozen=True)
class FeatureMergerConfig:
    """Sizes of the Feature Merger. The paper gives only enc_dim 1024 -> width 768 and
    SAM 2's width 256; everything else is our documented default (docs/merger.md)."""

    enc_dim: int = 1024
    """Width of MUSt3R's encoder output (ViT-L)."""
    width: int = 768
    """Width of the running feature; MUSt3R decoder tokens (ViT-B) must have this width."""
    num_heads: int = 12
    mlp_ratio: float = 4.0
    must3r_levels: tuple[int, ...] = (4, 7, 11)
    """Indices into MUSt3R's feature list (0 = encoder, l = output of decoder block l) queried in order."""
    init_depth: int = 1
    """Self-attention blocks on the projected encoder feature."""
    blocks_per_level: int = 1
    """Hierarchical (self + cross + FFN) blocks per decoder level."""
    sam_dim: int = 256
    up_dim: int = 256
    """Channels of the 3x3 conv after resampling onto SAM 2's grid."""
    fuse_dim: int = 256
    """Hidden channels of the final conv block."""
    norm_groups: int = 32
    """GroupNorm groups in the final conv block (must divide fuse_dim)."""
    patch_size: int = 16
    pe3d_freqs: int = 6
    pe3d_max_coord: float = 8.0
    pe3d_init: str = "small"
    """Initial weights of PE3D's MLP: ``small`` (truncated normal std 0.02, like every linear; PE3D then
    starts ~50x weaker than the encoder projection) or ``fan_in`` (std 1/sqrt(fan-in): a unit-scale
    3-D code from the first step; in the toy ablation it changed which seeds' mergers depend on the
    geometry, not how many, and removed the average gain: docs/evidence.md)."""
    fuse_input: str = "concat"
    """What the final conv block reads: ``concat`` (the paper: ``cat[F2D, up, valid]``, so the offset can be
    any function of SAM 2's feature and the geometry) or ``geometry`` (ours: ``cat[up, valid]`` only, so
    the offset added to F2D is made of MUSt3R's output alone and cannot become a refinement of F2D that
    ignores the geometry; docs/merger.md)."""
    centre_offset: bool = False
    """Remove the offset's mean over SAM 2's grid, per frame and channel, before adding it to F2D (ours; the
    paper adds the conv block's output as it is). In the toy ablation, mergers that ignore the geometry
    learn an offset that is ~98% a per-channel constant, the same in every frame and place (a bias on
    F2D); centring takes that solution away (docs/evidence.md, session 30)."""
    rope_freq: float = 100.0
    rope_f0: float = 1.0
    eps: float = 1e-6

    def __post_init__(self) -> None:
        positive = ("enc_dim", "width", "num_heads", "sam_dim", "up_dim", "fuse_dim", "norm_groups",
                    "patch_size", "blocks_per_level")
        check_ints(self, {**dict.fromkeys(positive, 1), "init_depth": 0, "pe3d_freqs": 0}, "FeatureMergerConfig.")
        if len(self.must3r_levels) < 1:
            raise InputError("FeatureMergerConfig.must3r_levels needs at least one decoder level")
        check_heads("FeatureMergerConfig.width", self.width, self.num_heads)
        if self.fuse_dim % self.norm_groups:
            raise InputError(f"norm_groups {self.norm_groups} must divide fuse_dim {self.fuse_dim}")
        if self.pe3d_init not in PE3D_INITS:
            raise InputError(f"FeatureMergerConfig.pe3d_init must be one of {', '.join(PE3D_INITS)}, "
                             f"got {self.pe3d_init!r}")
        if self.fuse_input not in FUSE_INPUTS:
            raise InputError(f"FeatureMergerConfig.fuse_input must be one of {', '.join(FUSE_INPUTS)}, "
                             f"got {self.fuse_input!r}")

    @property
    def fuse_in_channels(self) -> int:
        """Input channels of the final conv block: (sam_dim +) up_dim + 1 (the validity mask)."""
        return (self.sam_dim if self.fuse_input == "concat" else 0) + self.up_dim + 1

    @property
    def num_levels(self) -> int:
        return len(self.must3r_levels)


MERGER_PRESETS: dict[str, FeatureMergerConfig] = {
    # 3AM as described: MUSt3R ViT-L encoder (1024) and ViT-B decoder (768), SAM 2 width 256.
    "paper": FeatureMergerConfig(),
    # for tests: same structure, tiny widths; MUSt3R inputs must then be 32-wide
    "tiny": FeatureMergerConfig(enc_dim=48, width=32, num_heads=2, sam_dim=16, up_dim=16, fuse_dim=16,
                                norm_groups=4, pe3d_freqs=2),
}
# the tiny merger with a unit-scale PE3D at init (the toy ablation's fix for mergers that ignore the geometry)
MERGER_PRESETS["tiny_pe3d_fan_in"] = replace(MERGER_PRESETS["tiny"], pe3d_init="fan_in")
# the PE3D merger whose offset has no per-channel constant (centred over SAM 2's grid per frame)
MERGER_PRESETS["tiny_pe3d_fan_in_centred"] = replace(MERGER_PRESETS["tiny_pe3d_fan_in"], centre_offset=True)
# the tiny merger whose offset is made of the geometry alone (final conv block without F2D)
MERGER_PRESETS["tiny_geometry_fuse"] = replace(MERGER_PRESETS["tiny"], fuse_input="geometry")


get_merger_config, merger_presets = preset_functions(MERGER_PRESETS, "merger")


# --------------------------------------------------------------------------------------
# token-grid <-> SAM 2 grid alignment


@dataclass(frozen=True)
class CropGeometry:
    """Where MUSt3R's network input sits in the original frame.

    The original frame (orig_h, orig_w) is resized to (resized_h, resized_w), then the
    window of size (crop_h, crop_w) at (crop_x, crop_y) (top-left, resized pixels) is
    MUSt3R's input; crop_h and crop_w are multiples of the patch size.
    SAM 2 instead squashes the whole original frame to its square input.
    """

    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    crop_xy: tuple[int, int]
    crop_hw: tuple[int, int]

    def __post_init__(self) -> None:
        (oh, ow), (rh, rw), (cx, cy), (ch, cw) = self.orig_hw, self.resized_hw, self.crop_xy, self.crop_hw
        if min(oh, ow, rh, rw, ch, cw) < 1:
            raise InputError(f"CropGeometry sizes must be positive, got {self}")
        if cx < 0 or cy < 0 or cx + cw > rw or cy + ch > rh:
            raise InputError(f"crop window {cw}x{ch} at ({cx}, {cy}) does not fit in the resized frame {rw}x{rh}")

    def token_hw(self, patch_size: int = 16) -> tuple[int, int]:
        """MUSt3R's token grid (h, w) for this crop."""
        ch, cw = self.crop_hw
        if ch % patch_size or cw % patch_size:
            raise InputError(f"crop size {cw}x{ch} is not a multiple of the patch size {patch_size}")
        return ch // patch_size, cw // patch_size

    @classmethod
    def must3r(cls, orig_h: int, orig_w: int, long_side: int = 512, patch_size: int = 16) -> "CropGeometry":
        """MUSt3R's online preprocessing: resize the long side to ``long_side`` (sides rounded
        to the nearest integer), then centre-crop each side down to a multiple of ``patch_size``
        (crop centre at ``size // 2``)."""
        if orig_h < 1 or orig_w < 1:
            raise InputError(f"frame size must be positive, got {orig_w}x{orig_h}")
        s = long_side / max(orig_h, orig_w)
        rw, rh = int(round(orig_w * s)), int(round(orig_h * s))
        cx, cy = rw // 2, rh // 2
        half_w, half_h = ((2 * cx) // patch_size) * (patch_size // 2), ((2 * cy) // patch_size) * (patch_size // 2)
        if half_w == 0 or half_h == 0:
            raise InputError(f"a {orig_w}x{orig_h} frame is too thin: resized to {rw}x{rh} it has a side "
                             f"shorter than one {patch_size}-pixel patch")
        return cls((orig_h, orig_w), (rh, rw), (cx - half_w, cy - half_h), (2 * half_h, 2 * half_w))


def sam_grid_in_token_coords(geometry: CropGeometry, grid_hw: tuple[int, int],
                             patch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres of SAM 2's grid cells in MUSt3R token units.

    SAM 2 sees the whole original frame squashed to a square, so cell (r, c) of a
    (Hs, Ws) grid has its centre at original-frame coordinates
    ``x = (c + 0.5) * orig_w / Ws``, ``y = (r + 0.5) * orig_h / Hs`` (continuous coordinates:
    pixel k spans [k, k + 1)). Resizing scales these by resized/orig, the crop subtracts
    its offset, and dividing by the patch size gives token units, where token j spans [j, j + 1).
    Returns (u (Ws,), v (Hs,)) float64; values outside [0, w] / [0, h] lie in the cropped-away border.
    """
    hs, ws = grid_hw
    (oh, ow), (rh, rw), (cx, cy) = geometry.orig_hw, geometry.resized_hw, geometry.crop_xy
    c = torch.arange(ws, dtype=torch.float64)
    r = torch.arange(hs, dtype=torch.float64)
    u = ((c + 0.5) * ow / ws * (rw / ow) - cx) / patch_size
    v = ((r + 0.5) * oh / hs * (rh / oh) - cy) / patch_size
    return u, v


def align_to_sam_grid(token_map: torch.Tensor, geometry: CropGeometry, grid_hw: tuple[int, int],
                      patch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample a map on MUSt3R's token grid onto SAM 2's grid.

    token_map: (B, C, h, w) with (h, w) = geometry.token_hw(patch_size). Each SAM 2 cell
    takes the bilinear interpolation of the token map (values at token centres) at the cell
    centre (:func:`sam_grid_in_token_coords`). Cells beyond the outermost token centres, in
    particular those in the cropped-away border, take the nearest edge value (edge padding).
    Returns (resampled (B, C, Hs, Ws), valid (Hs, Ws) bool: the cell centre lies inside
    MUSt3R's crop).
    """
    if token_map.dim() != 4:
        raise InputError(f"token_map must have shape (B, C, h, w), got {tuple(token_map.shape)}")
    h, w = geometry.token_hw(patch_size)
    if tuple(token_map.shape[-2:]) != (h, w):
        raise InputError(f"token_map grid {tuple(token_map.shape[-2:])} does not match the crop's token grid {(h, w)}")
    u, v = sam_grid_in_token_coords(geometry, grid_hw, patch_size)
    # grid_sample with align_corners=False: -1 / +1 are the outer edges of the first / last token
    gx = (2.0 * u / w - 1.0).to(token_map.device)
    gy = (2.0 * v / h - 1.0).to(token_map.device)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)  # (Hs, Ws, 2) as (x, y)
    grid = grid.to(torch.float32).unsqueeze(0).expand(token_map.shape[0], -1, -1, -1)
    out = F.grid_sample(token_map.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    valid = ((v >= 0) & (v < h)).unsqueeze(1) & ((u >= 0) & (u < w)).unsqueeze(0)
    return out.to(token_map.dtype), valid.to(token_map.device)


# --------------------------------------------------------------------------------------
# inputs


@dataclass
class Must3rFrameFeatures:
    """MUSt3R's outputs for a batch of frames of one video.

    encoder: (B, h*w, enc_dim); decoder: one (B, h*w, width) tensor per merger level, in
    the order of ``config.must3r_levels``; positions: (B, h*w, 2) int64 (row, col) or None
    (the row-major grid); pointmap, raymap: (B, 16h, 16w, 3); geometry: the crop that made
    MUSt3R's input from the original frame; point_scale: optional (B,) or scalar scale for
    PE3D (pass one value per clip so codes agree across frames; default: per-frame median).
    """

    encoder: torch.Tensor
    decoder: Sequence[torch.Tensor]
    pointmap: torch.Tensor
    raymap: torch.Tensor
    geometry: CropGeometry
    positions: torch.Tensor | None = None
    point_scale: torch.Tensor | float | None = None


# --------------------------------------------------------------------------------------
# blocks


class Mlp(nn.Module):
    """Linear(dim, hidden) -> GELU -> Linear(hidden, dim) on (B, N, dim)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with 2-D RoPE on queries and keys: (B, N, dim) -> (B, N, dim)."""

    def __init__(self, dim: int, num_heads: int, rope: nn.Module) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = self.rope(q, positions), self.rope(k, positions)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries (B, N, dim) attend to memory (B, M, dim)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        hd = d // self.num_heads
        q = self.q(x).reshape(b, n, self.num_heads, hd).transpose(1, 2)
        k, v = self.kv(memory).reshape(b, memory.shape[1], 2, self.num_heads, hd).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class SelfBlock(nn.Module):
    """``x += SelfAttn(LN(x) + pe3d)``; ``x += FFN(LN(x))``."""

    def __init__(self, cfg: FeatureMergerConfig, rope: nn.Module) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.attn = SelfAttention(cfg.width, cfg.num_heads, rope)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.mlp = Mlp(cfg.width, int(cfg.width * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor, pe3d: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x) + pe3d, positions)
        return x + self.mlp(self.norm2(x))


class HierarchicalBlock(nn.Module):
    """``x += SelfAttn(LN(x) + pe3d)``; ``x += CrossAttn(LN(x), LN(F_i) + pe3d)``; ``x += FFN(LN(x))``."""

    def __init__(self, cfg: FeatureMergerConfig, rope: nn.Module) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.attn = SelfAttention(cfg.width, cfg.num_heads, rope)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.norm_mem = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.cross_attn = CrossAttention(cfg.width, cfg.num_heads)
        self.norm3 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.mlp = Mlp(cfg.width, int(cfg.width * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor, level: torch.Tensor, pe3d: torch.Tensor,
                positions: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x) + pe3d, positions)
        x = x + self.cross_attn(self.norm2(x), self.norm_mem(level) + pe3d)
        return x + self.mlp(self.norm3(x))


# --------------------------------------------------------------------------------------
# the merger


TRANSFORMER_PARTS = ("enc_proj", "pe3d", "init_blocks", "levels", "norm_out")
"""Child modules of `FeatureMerger` on MUSt3R's token grid (steps 1-4 up to the resampling): the parts a
separate learning rate can address (``merger_transformer`` group of the toy ablation)."""
OUTPUT_PARTS = ("up_conv", "fuse")
"""Child modules on SAM 2's grid (the 3x3 conv and the final conv block); with `TRANSFORMER_PARTS`, every
parameter of the merger."""


class FeatureMerger(nn.Module):
    """3AM's Feature Merger (see the module docstring).

    forward(f2d (B, sam_dim, Hs, Ws), feats: Must3rFrameFeatures) -> F_merged (B, sam_dim, Hs, Ws).
    A freshly built merger returns ``f2d`` exactly (zero-initialised last conv).
    """

    def __init__(self, config: FeatureMergerConfig | str = "paper") -> None:
        super().__init__()
        cfg = get_merger_config(config) if isinstance(config, str) else config
        self.config = cfg
        rope = RoPE2D(freq=cfg.rope_freq, F0=cfg.rope_f0)
        self.enc_proj = nn.Linear(cfg.enc_dim, cfg.width)
        self.pe3d = PE3D(cfg.width, cfg.pe3d_freqs, cfg.pe3d_max_coord)
        self.init_blocks = nn.ModuleList(SelfBlock(cfg, rope) for _ in range(cfg.init_depth))
        self.levels = nn.ModuleList(
            nn.ModuleList(HierarchicalBlock(cfg, rope) for _ in range(cfg.blocks_per_level))
            for _ in range(cfg.num_levels))
        self.norm_out = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.up_conv = nn.Conv2d(cfg.width, cfg.up_dim, kernel_size=3, padding=1)
        self.fuse = nn.Sequential(
            nn.Conv2d(cfg.fuse_in_channels, cfg.fuse_dim, kernel_size=3, padding=1),
            nn.GroupNorm(cfg.norm_groups, cfg.fuse_dim),
            nn.GELU(),
            nn.Conv2d(cfg.fuse_dim, cfg.sam_dim, kernel_size=1, bias=not cfg.centre_offset),
        )
        self.reset_parameters()

    @property
    def last_conv(self) -> nn.Conv2d:
        """The zero-initialised final 1x1 conv (F_merged = F2D + its output)."""
        return self.fuse[-1]

    def reset_parameters(self) -> None:
        """Truncated-normal (std 0.02) linears with zero bias, unit LayerNorms, default convs,
        and a zero final conv so that the merger starts as the identity on F2D. With
        ``pe3d_init="fan_in"`` PE3D's linears are then redrawn at std 1/sqrt(fan-in)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.last_conv.weight)
        if self.last_conv.bias is not None:
            nn.init.zeros_(self.last_conv.bias)
        if self.config.pe3d_init == "fan_in":
            for m in self.pe3d.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=m.in_features ** -0.5)

    def _check(self, f2d: torch.Tensor, feats: Must3rFrameFeatures) -> tuple[int, int]:
        cfg = self.config
        if f2d.dim() != 4 or f2d.shape[1] != cfg.sam_dim:
            raise InputError(f"F2D must have shape (B, {cfg.sam_dim}, Hs, Ws), got {tuple(f2d.shape)}")
        b = f2d.shape[0]
        h, w = feats.geometry.token_hw(cfg.patch_size)
        n = h * w
        if tuple(feats.encoder.shape) != (b, n, cfg.enc_dim):
            raise InputError(f"MUSt3R encoder tokens must have shape ({b}, {n}, {cfg.enc_dim}) for a {h}x{w} token "
                             f"grid, got {tuple(feats.encoder.shape)}")
        if len(feats.decoder) != cfg.num_levels:
            raise InputError(f"expected {cfg.num_levels} MUSt3R decoder levels {cfg.must3r_levels}, "
                             f"got {len(feats.decoder)}")
        for i, level in zip(cfg.must3r_levels, feats.decoder):
            if tuple(level.shape) != (b, n, cfg.width):
                raise InputError(f"MUSt3R feature {i} must have shape ({b}, {n}, {cfg.width}), got {tuple(level.shape)}")
        pix = (b, h * cfg.patch_size, w * cfg.patch_size, 3)
        for name in ("pointmap", "raymap"):
            t = getattr(feats, name)
            if tuple(t.shape) != pix:
                raise InputError(f"{name} must have shape {pix}, got {tuple(t.shape)}")
        if feats.positions is not None and tuple(feats.positions.shape) != (b, n, 2):
            raise InputError(f"positions must have shape ({b}, {n}, 2), got {tuple(feats.positions.shape)}")
        return h, w

    def forward(self, f2d: torch.Tensor, feats: Must3rFrameFeatures) -> torch.Tensor:
        """F2D (B, sam_dim, Hs, Ws) and MUSt3R features -> F_merged (B, sam_dim, Hs, Ws)."""
        h, w = self._check(f2d, feats)
        b = f2d.shape[0]
        positions = feats.positions
        if positions is None:
            positions = grid_positions(h, w, batch=b, device=f2d.device)
        positions = positions.to(device=f2d.device, dtype=torch.long)
        pe = self.pe3d(feats.pointmap, feats.raymap, (h, w), feats.point_scale)  # (B, N, width)

        x = self.enc_proj(feats.encoder.to(pe.dtype)) + pe
        for blk in self.init_blocks:
            x = blk(x, pe, positions)
        for blocks, level in zip(self.levels, feats.decoder):
            level = level.to(x.dtype)
            for blk in blocks:
                x = blk(x, level, pe, positions)
        x = self.norm_out(x).transpose(1, 2).reshape(b, self.config.width, h, w)

        grid_hw = (f2d.shape[-2], f2d.shape[-1])
        x, valid = align_to_sam_grid(x, feats.geometry, grid_hw, self.config.patch_size)
        up = self.up_conv(x.to(f2d.dtype))
        valid = valid.to(f2d.dtype).expand(b, 1, *grid_hw)
        parts = [f2d, up, valid] if self.config.fuse_input == "concat" else [up, valid]
        offset = self.fuse(torch.cat(parts, dim=1))
        if self.config.centre_offset:
            offset = offset - offset.mean(dim=(-2, -1), keepdim=True)
        return f2d + offset


def merger_parameter_count(config: FeatureMergerConfig | str = "paper") -> int:
    """Number of trainable parameters of a merger built from `config` (built on the meta device)."""
    with torch.device("meta"):
        model = FeatureMerger(config)
    return sum(p.numel() for p in model.parameters())
