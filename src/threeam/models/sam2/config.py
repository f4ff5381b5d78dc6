"""Typed configuration of SAM 2 / SAM 2.1 models, with the official variants as named presets.

Every dataclass mirrors one official constructor: field names are the official keyword names and
field defaults are the official constructor defaults (so an official config tree that leaves a
keyword out means the same thing here). The presets fill in the values of the official
``sam2/configs/sam2*/sam2*_hiera_*.yaml`` files plus the mask-decoder post-processing that the
official ``build_sam2`` adds (dynamic multimask fallback via stability).

    cfg = get_sam2_config("sam2.1_hiera_b+")          # or an alias: "sam2.1_hiera_base_plus"
    cfg = SAM2Config.from_official_dict(tree)          # the official (hydra) tree, parsed

Video-predictor options that are not SAM2Base keywords live in :class:`VideoPredictorConfig`.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from threeam.errors import InputError
from threeam.presets import preset_functions, resolve_name, with_overrides

__all__ = [
    "PositionEncodingConfig",
    "HieraConfig",
    "FpnNeckConfig",
    "ImageEncoderConfig",
    "RoPEAttentionConfig",
    "MemoryAttentionLayerConfig",
    "MemoryAttentionConfig",
    "MaskDownSamplerConfig",
    "CXBlockConfig",
    "FuserConfig",
    "MemoryEncoderConfig",
    "MaskDecoderExtraArgs",
    "SAM2Config",
    "VideoPredictorConfig",
    "SAM2_PRESETS",
    "SAM2_PRESET_ALIASES",
    "get_sam2_config",
    "sam2_presets",
    "resolve_preset_name",
]


# --------------------------------------------------------------------------- parsing helper
class _OfficialTree:
    """Base of the config dataclasses: ``from_official_dict(tree, where)`` reads one official (hydra)
    sub-tree; `where` (default: the class name) names it in messages. Keys in ``_IGNORE`` are
    official options that do not change the module (skipped); fields whose type is another
    `_OfficialTree` are parsed with it, at ``where.<field>``."""

    _IGNORE: tuple[str, ...] = ()

    @classmethod
    def from_official_dict(cls, tree: Mapping, where: Optional[str] = None):
        return _from_tree(cls, tree, where or cls.__name__, ignore=cls._IGNORE)


def _nested_parsers(cls) -> dict[str, Any]:
    """``{field: parser}`` for the fields of `cls` typed as another `_OfficialTree` (or Optional of one)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if typing.get_origin(kind) is Union:
            kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        if isinstance(kind, type) and issubclass(kind, _OfficialTree):
            out[f.name] = kind.from_official_dict
    return out


def _from_tree(cls, tree: Any, where: str, ignore: tuple[str, ...] = ()):
    """Build dataclass `cls` from an official config mapping (``_target_`` and keys in `ignore` skipped).

    Unknown keys raise InputError naming the key and where it was found. Lists become tuples for
    tuple-typed fields; sub-configs (:func:`_nested_parsers`) are parsed at ``where.<key>``.
    """
    if not isinstance(tree, Mapping):
        raise InputError(f"{where}: expected a mapping of {cls.__name__} options, got {type(tree).__name__}")
    nested = _nested_parsers(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in tree.items():
        if key == "_target_" or key in ignore:
            continue
        if key not in known:
            raise InputError(
                f"{where}: unknown option {key!r} for {cls.__name__}; known options: {', '.join(sorted(known))}"
            )
        if key in nested and value is not None:
            value = nested[key](value, f"{where}.{key}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required option is missing
        raise InputError(f"{where}: {exc}") from None


def _kwargs(cfg: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Shallow constructor kwargs of a config dataclass (tuples stay tuples), without `skip` fields."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in skip}


# --------------------------------------------------------------------------- image encoder
@dataclass
class PositionEncodingConfig(_OfficialTree):
    """``PositionEmbeddingSine``: `num_pos_feats` output channels (sine/cosine of y then x)."""

    num_pos_feats: int = 256
    temperature: float = 10000
    normalize: bool = True
    scale: Optional[float] = None

    _IGNORE = ("warmup_cache", "image_size", "strides")  # official options that change nothing here


@dataclass
class HieraConfig(_OfficialTree):
    """``Hiera`` trunk. Defaults are the official constructor's (the Hiera-B+ layout)."""

    embed_dim: int = 96
    num_heads: int = 1
    drop_path_rate: float = 0.0
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    stages: tuple[int, ...] = (2, 3, 16, 3)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    global_att_blocks: tuple[int, ...] = (12, 16, 20)
    return_interm_layers: bool = True

    @property
    def channel_list(self) -> list[int]:
        """Stage widths, lowest resolution first (what ``FpnNeck.backbone_channel_list`` must equal)."""
        widths, dim = [], self.embed_dim
        for i in range(len(self.stages)):
            if i > 0:
                dim = int(dim * self.dim_mul)
            widths.append(dim)
        return widths[::-1] if self.return_interm_layers else widths[-1:]

    _IGNORE = ("weights_path",)  # the official loader's pretrained-trunk file: weights come from the checkpoint


@dataclass
class FpnNeckConfig(_OfficialTree):
    """``FpnNeck``: lateral 1x1 convs to `d_model`, top-down fusion on `fpn_top_down_levels`."""

    position_encoding: PositionEncodingConfig = field(default_factory=PositionEncodingConfig)
    d_model: int = 256
    backbone_channel_list: tuple[int, ...] = (896, 448, 224, 112)
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    fpn_interp_model: str = "bilinear"
    fuse_type: str = "sum"
    fpn_top_down_levels: Optional[tuple[int, ...]] = None


@dataclass
class ImageEncoderConfig(_OfficialTree):
    """``ImageEncoder(trunk, neck, scalp)``; `scalp` drops that many lowest-resolution levels."""

    trunk: HieraConfig = field(default_factory=HieraConfig)
    neck: FpnNeckConfig = field(default_factory=FpnNeckConfig)
    scalp: int = 0


# --------------------------------------------------------------------------- memory attention
@dataclass
class RoPEAttentionConfig(_OfficialTree):
    """``RoPEAttention`` (attention with 2-D axial rotary encoding). `feat_sizes` is (W, H) of the stride-16 map."""

    embedding_dim: int = 256
    num_heads: int = 1
    downsample_rate: int = 1
    dropout: float = 0.0
    kv_in_dim: Optional[int] = None
    rope_theta: float = 10000.0
    rope_k_repeat: bool = False
    feat_sizes: tuple[int, int] = (64, 64)


@dataclass
class MemoryAttentionLayerConfig(_OfficialTree):
    """``MemoryAttentionLayer``: self-attention, cross-attention to memory, feed-forward."""

    activation: str = "relu"
    d_model: int = 256
    dim_feedforward: int = 2048
    dropout: float = 0.1
    pos_enc_at_attn: bool = False
    pos_enc_at_cross_attn_keys: bool = True
    pos_enc_at_cross_attn_queries: bool = False
    self_attention: RoPEAttentionConfig = field(
        default_factory=lambda: RoPEAttentionConfig(embedding_dim=256, num_heads=1, dropout=0.1)
    )
    cross_attention: RoPEAttentionConfig = field(
        default_factory=lambda: RoPEAttentionConfig(
            embedding_dim=256, num_heads=1, dropout=0.1, kv_in_dim=64, rope_k_repeat=True
        )
    )


@dataclass
class MemoryAttentionConfig(_OfficialTree):
    """``MemoryAttention``: `num_layers` copies of `layer`, then a LayerNorm."""

    d_model: int = 256
    pos_enc_at_input: bool = True
    layer: MemoryAttentionLayerConfig = field(default_factory=MemoryAttentionLayerConfig)
    num_layers: int = 4
    batch_first: bool = True


# --------------------------------------------------------------------------- memory encoder
@dataclass
class MaskDownSamplerConfig(_OfficialTree):
    """``MaskDownSampler``: strided convs taking a mask to the stride-`total_stride` grid with `embed_dim` channels."""

    embed_dim: int = 256
    kernel_size: int = 4
    stride: int = 4
    padding: int = 0
    total_stride: int = 16


@dataclass
class CXBlockConfig(_OfficialTree):
    """``CXBlock`` (ConvNeXt block) used by the memory fuser."""

    dim: int = 256
    kernel_size: int = 7
    padding: int = 3
    drop_path: float = 0.0
    layer_scale_init_value: float = 1e-6
    use_dwconv: bool = True


@dataclass
class FuserConfig(_OfficialTree):
    """``Fuser``: `num_layers` CXBlocks (optional 1x1 input projection)."""

    layer: CXBlockConfig = field(default_factory=CXBlockConfig)
    num_layers: int = 2
    dim: Optional[int] = None
    input_projection: bool = False


@dataclass
class MemoryEncoderConfig(_OfficialTree):
    """``MemoryEncoder``: fuses the stride-16 image feature (`in_dim`) with a mask into `out_dim` memory channels."""

    out_dim: int = 64
    position_encoding: PositionEncodingConfig = field(default_factory=lambda: PositionEncodingConfig(num_pos_feats=64))
    mask_downsampler: MaskDownSamplerConfig = field(
        default_factory=lambda: MaskDownSamplerConfig(kernel_size=3, stride=2, padding=1)
    )
    fuser: FuserConfig = field(default_factory=FuserConfig)
    in_dim: int = 256


# --------------------------------------------------------------------------- whole model
@dataclass
class MaskDecoderExtraArgs(_OfficialTree):
    """``sam_mask_decoder_extra_args``: the dynamic multimask fallback of the mask decoder.

    With `dynamic_multimask_via_stability`, a single-mask answer whose stability score is below
    `dynamic_multimask_stability_thresh` is replaced by the best of the multimask outputs.
    """

    dynamic_multimask_via_stability: bool = False
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98


# Top-level options of the official tree that belong to the video predictor, not to SAM2Base.
_VIDEO_PREDICTOR_ONLY = ("fill_hole_area", "non_overlap_masks", "clear_non_cond_mem_around_input",
                         "add_all_frames_to_correct_as_cond", "clear_non_cond_mem_for_multi_obj")


@dataclass
class SAM2Config(_OfficialTree):
    """A whole SAM 2 model: sub-module configs plus every ``SAM2Base`` keyword (official defaults).

    ``image_encoder`` / ``memory_attention`` / ``memory_encoder`` describe the three sub-modules;
    the other fields are passed to ``SAM2Base`` unchanged (``sam_mask_decoder_extra_args`` as a dict).
    """

    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    memory_attention: MemoryAttentionConfig = field(default_factory=MemoryAttentionConfig)
    memory_encoder: MemoryEncoderConfig = field(default_factory=MemoryEncoderConfig)
    num_maskmem: int = 7
    image_size: int = 512
    backbone_stride: int = 16
    sigmoid_scale_for_mem_enc: float = 1.0
    sigmoid_bias_for_mem_enc: float = 0.0
    binarize_mask_from_pts_for_mem_enc: bool = False
    use_mask_input_as_output_without_sam: bool = False
    max_cond_frames_in_attn: int = -1
    directly_add_no_mem_embed: bool = False
    use_high_res_features_in_sam: bool = False
    multimask_output_in_sam: bool = False
    multimask_min_pt_num: int = 1
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = False
    use_multimask_token_for_obj_ptr: bool = False
    iou_prediction_use_sigmoid: bool = False
    memory_temporal_stride_for_eval: int = 1
    non_overlap_masks_for_mem_enc: bool = False
    use_obj_ptrs_in_encoder: bool = False
    max_obj_ptrs_in_encoder: int = 16
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False
    only_obj_ptrs_in_the_past_for_eval: bool = False
    pred_obj_scores: bool = False
    pred_obj_scores_mlp: bool = False
    fixed_no_obj_ptr: bool = False
    soft_no_obj_ptr: bool = False
    use_mlp_for_obj_ptr_proj: bool = False
    no_obj_embed_spatial: bool = False
    sam_mask_decoder_extra_args: Optional[MaskDecoderExtraArgs] = None
    compile_image_encoder: bool = False

    _SUBMODULES = ("image_encoder", "memory_attention", "memory_encoder")

    def base_kwargs(self) -> dict[str, Any]:
        """The ``SAM2Base`` keywords other than the three sub-modules (extra args as a plain dict)."""
        kw = _kwargs(self, skip=self._SUBMODULES)
        extra = kw["sam_mask_decoder_extra_args"]
        kw["sam_mask_decoder_extra_args"] = dataclasses.asdict(extra) if extra is not None else None
        return kw

    def copy(self, **changes: Any) -> "SAM2Config":
        """A deep copy, with top-level fields replaced by `changes` (`threeam.presets.with_overrides`)."""
        return with_overrides(self, changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of every option (tuples as lists), e.g. to store next to a checkpoint."""

        def plain(v: Any) -> Any:
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        return plain(dataclasses.asdict(self))

    @classmethod
    def from_official_dict(cls, tree: Mapping) -> "SAM2Config":
        """Parse an official config tree (``{"model": {...}}`` or the model mapping itself).

        ``_target_`` keys are ignored, as are the video-predictor-only options (``fill_hole_area``,
        ``non_overlap_masks``, ...; see :class:`VideoPredictorConfig`). Unknown options raise
        InputError naming the option and where it was found.
        """
        return _from_tree(cls, _model_tree(tree), "model", ignore=_VIDEO_PREDICTOR_ONLY)

    @classmethod
    def from_dict(cls, tree: Mapping) -> "SAM2Config":
        """Inverse of :meth:`to_dict` (same layout as the official tree, without ``_target_``)."""
        return cls.from_official_dict(tree)


def _model_tree(tree: Mapping) -> Mapping:
    if not isinstance(tree, Mapping):
        raise InputError(f"expected a SAM 2 config mapping, got {type(tree).__name__}")
    if "model" in tree and isinstance(tree["model"], Mapping):
        return tree["model"]
    return tree


@dataclass
class VideoPredictorConfig:
    """Options of the official ``SAM2VideoPredictor`` that are not SAM2Base keywords.

    Defaults are what the official ``build_sam2_video_predictor`` uses (its post-processing on):
    hole filling up to 8 pixels in the low-res masks and binarised click masks for the memory
    encoder; no non-overlap constraint; corrections do not become conditioning frames.

    - `fill_hole_area`: fill background holes up to this many low-res pixels (0 disables).
    - `non_overlap_masks`: keep only the highest-scoring object per pixel in the outputs.
    - `binarize_mask_from_pts_for_mem_enc`: encode frames with clicks from the binarised mask
      (``build_sam2(..., video_config=...)`` sets this SAM2Base flag from here).
    - `add_all_frames_to_correct_as_cond`: frames receiving correction clicks become conditioning frames.
    - `clear_non_cond_mem_around_input`: drop each object's non-conditioning memories around the
      frames where that object got new input, for one object or many (as the Dec-2024 official
      predictor does).
    - `clear_non_cond_mem_for_multi_obj`: accepted for the official option name only; nothing reads
      it (the clearing above is already per object, and the official predictor no longer reads it
      either), so True is an `InputError` rather than a silently ignored request.

    Performance options (ours, not official; see docs/performance.md):

    - `batch_objects`: objects whose memory selections are identical on a frame are tracked as one
      batch (same results within float32 rounding).
    - `keep_all_outputs`: keep every per-frame output (the official behaviour; memory grows with
      the video); False drops tracked outputs no later step can read.
    - `spill_dir`: a folder where dropped outputs are written (and read back by corrections and
      passes that need them); None: dropped outputs are gone.
    - `merged_cache_mib`: 3AM only, MiB of merged features kept (LRU, recomputed on a miss); None:
      no limit.
    - `merged_cache_frames`: 3AM only, merged features kept besides the prompted frames' (LRU);
      ``"auto"``: twice the memory window (34 frames for the official models); None: no limit.
    - `autocast`: None (default) runs bfloat16 autocast on CUDA and float32 elsewhere; True/False force it
      (True on the CPU is only for tests).
    - `compile`: torch.compile the model's parts with fixed shapes (the official ``vos_optimized``).
    """

    fill_hole_area: int = 8
    non_overlap_masks: bool = False
    binarize_mask_from_pts_for_mem_enc: bool = True
    add_all_frames_to_correct_as_cond: bool = False
    clear_non_cond_mem_around_input: bool = False
    clear_non_cond_mem_for_multi_obj: bool = False
    batch_objects: bool = True
    keep_all_outputs: bool = False
    spill_dir: Optional[str] = None
    merged_cache_mib: Optional[float] = 1024.0
    merged_cache_frames: Union[int, str, None] = "auto"
    autocast: Optional[bool] = None
    compile: bool = False

    def __post_init__(self) -> None:
        if self.clear_non_cond_mem_for_multi_obj:
            raise InputError("clear_non_cond_mem_for_multi_obj=True is not supported: nothing reads it, since "
                             "clear_non_cond_mem_around_input already clears every object's memories around its "
                             "own inputs, for one object or many; leave it False (drop the override)")

    @classmethod
    def from_official_dict(cls, tree: Mapping) -> "VideoPredictorConfig":
        """Read the predictor options present in an official tree; absent ones keep the defaults above."""
        tree = _model_tree(tree)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in tree.items() if k in names})


# --------------------------------------------------------------------------- presets
_POSTPROCESSING = MaskDecoderExtraArgs(
    dynamic_multimask_via_stability=True,
    dynamic_multimask_stability_delta=0.05,
    dynamic_multimask_stability_thresh=0.98,
)

# Hiera sizes: (embed_dim, num_heads, stages, global_att_blocks, bkg_size, window_spec)
_TRUNKS: dict[str, HieraConfig] = {
    "t": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9),
                     window_pos_embed_bkg_spatial_size=(7, 7)),
    "s": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13),
                     window_pos_embed_bkg_spatial_size=(7, 7)),
    "b+": HieraConfig(embed_dim=112, num_heads=2),
    "l": HieraConfig(embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
                     window_pos_embed_bkg_spatial_size=(7, 7), window_spec=(8, 4, 16, 8)),
}


def _preset(size: str, v21: bool) -> SAM2Config:
    trunk = copy.deepcopy(_TRUNKS[size])
    neck = FpnNeckConfig(
        position_encoding=PositionEncodingConfig(num_pos_feats=256),
        d_model=256,
        backbone_channel_list=tuple(trunk.channel_list),
        fpn_top_down_levels=(2, 3),
        fpn_interp_model="nearest",
    )
    rope = dict(rope_theta=10000.0, feat_sizes=(64, 64), embedding_dim=256, num_heads=1, downsample_rate=1,
                dropout=0.1)
    layer = MemoryAttentionLayerConfig(
        activation="relu",
        d_model=256,
        dim_feedforward=2048,
        dropout=0.1,
        pos_enc_at_attn=False,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        self_attention=RoPEAttentionConfig(**rope),
        cross_attention=RoPEAttentionConfig(**rope, rope_k_repeat=True, kv_in_dim=64),
    )
    return SAM2Config(
        image_encoder=ImageEncoderConfig(trunk=trunk, neck=neck, scalp=1),
        memory_attention=MemoryAttentionConfig(d_model=256, pos_enc_at_input=True, layer=layer, num_layers=4),
        memory_encoder=MemoryEncoderConfig(
            out_dim=64,
            position_encoding=PositionEncodingConfig(num_pos_feats=64),
            mask_downsampler=MaskDownSamplerConfig(kernel_size=3, stride=2, padding=1),
            fuser=FuserConfig(layer=CXBlockConfig(dim=256, kernel_size=7, padding=3, layer_scale_init_value=1e-6,
                                                  use_dwconv=True), num_layers=2),
        ),
        num_maskmem=7,
        image_size=1024,
        sigmoid_scale_for_mem_enc=20.0,
        sigmoid_bias_for_mem_enc=-10.0,
        use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True,
        no_obj_embed_spatial=v21,
        use_high_res_features_in_sam=True,
        multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True,
        use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=v21,
        proj_tpos_enc_in_obj_ptrs=v21,
        use_signed_tpos_enc_to_obj_ptrs=v21,
        only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        fixed_no_obj_ptr=True,
        multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True,
        compile_image_encoder=False,
        sam_mask_decoder_extra_args=copy.deepcopy(_POSTPROCESSING),
    )


SAM2_PRESETS: dict[str, SAM2Config] = {
    f"{family}_hiera_{size}": _preset(size, family == "sam2.1")
    for family in ("sam2.1", "sam2")
    for size in ("t", "s", "b+", "l")
}
"""The official variants: ``sam2.1_hiera_{t,s,b+,l}`` and ``sam2_hiera_{t,s,b+,l}``."""

_SIZE_WORDS = {"tiny": "t", "small": "s", "base_plus": "b+", "base+": "b+", "large": "l"}
SAM2_PRESET_ALIASES: dict[str, str] = {
    f"{family}_hiera_{word}": f"{family}_hiera_{size}"
    for family in ("sam2.1", "sam2")
    for word, size in _SIZE_WORDS.items()
}
"""Long names (``sam2.1_hiera_tiny``, ``..._small``, ``..._base_plus``, ``..._large``) -> preset names."""


def _spelling(name: str) -> str:
    """``configs/sam2.1/sam2.1_hiera_t.yaml``, ``facebook/sam2.1-hiera-large`` -> ``sam2.1_hiera_t``, ..."""
    key = name.strip().lower().rsplit("/", 1)[-1]
    for suffix in (".yaml", ".yml", ".pt"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    return key.replace("-", "_")


def resolve_preset_name(name: str) -> str:
    """Canonical preset name for `name` (preset, alias, ``.yaml`` file name or hub-style spelling).

    Accepts e.g. ``sam2.1_hiera_b+``, ``sam2.1_hiera_base_plus``, ``configs/sam2.1/sam2.1_hiera_t.yaml``,
    ``sam2.1-hiera-large``, ``facebook/sam2.1-hiera-large``. Unknown names raise InputError listing the presets.
    """
    return resolve_name(SAM2_PRESETS, name, "SAM 2", aliases=SAM2_PRESET_ALIASES, normalize=_spelling)


get_sam2_config, sam2_presets = preset_functions(SAM2_PRESETS, "sam2", "SAM 2", aliases=SAM2_PRESET_ALIASES,
                                                 normalize=_spelling)


def load_sam2_config_file(path) -> SAM2Config:
    """A SAM 2 config from a JSON file holding an official-style config tree (optionally under
    ``"config"`` or ``"model"``); InputError for a missing file or invalid JSON."""
    from threeam.io.jsonio import read_json

    tree = read_json(path, "SAM 2 config file", missing=f"SAM 2 config file {path}: no such file")
    if isinstance(tree, dict) and "config" in tree:
        tree = tree["config"]
    return SAM2Config.from_official_dict(tree)
