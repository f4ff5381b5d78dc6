"""SAM2Base: SAM 2's per-frame tracking step on top of an image encoder.

Feature conventions (official): ``current_vision_feats`` is a list of flattened feature
levels, each (H_l * W_l, B, C_l), lowest resolution last; ``feat_sizes`` the matching
[(H_l, W_l)]. With high-res features on, the levels are stride 4 (C/8 channels, after
``conv_s0``), stride 8 (C/4, after ``conv_s1``) and stride 16 (C = hidden_dim).

Everything downstream of the image encoder takes the stride-16 feature only from
``current_vision_feats[-1]`` (memory attention query, memory encoder input, mask
decoder image embedding), so a caller may substitute a different stride-16 feature
there (the 3AM Feature Merger does); the stride-4/8 features are only used as
high-resolution skips in the mask decoder.

Memory bank (``output_dict``): ``{"cond_frame_outputs": {t: out}, "non_cond_frame_outputs": {t: out}}``
where each ``out`` is a dict returned by :meth:`SAM2Base.track_step`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.init import trunc_normal_

from threeam.errors import InputError
from threeam.models.sam2.mask_decoder import MaskDecoder
from threeam.models.sam2.mlp import MLP
from threeam.models.sam2.prompt_encoder import PromptEncoder
from threeam.models.sam2.transformer import TwoWayTransformer

from threeam.models.sam2.tracking import (COND, NON_COND, NO_OBJ_SCORE, FrameFeatures,  # noqa: F401
                                          TrackStepOutput)


def select_closest_cond_frames(frame_idx: int, cond_frame_outputs: dict, max_cond_frame_num: int) -> tuple[dict, dict]:
    """Pick at most `max_cond_frame_num` conditioning frames for `frame_idx` (-1: all).

    Picks the closest conditioning frame before `frame_idx`, the closest at or after it,
    then the remaining ones closest in time. Returns (selected, unselected) dicts.
    """
    if max_cond_frame_num == -1 or len(cond_frame_outputs) <= max_cond_frame_num:
        return cond_frame_outputs, {}
    if max_cond_frame_num < 2:
        raise ValueError(f"max_cond_frames_in_attn must be -1 or at least 2, got {max_cond_frame_num}")
    selected: dict = {}
    before = [t for t in cond_frame_outputs if t < frame_idx]
    after = [t for t in cond_frame_outputs if t >= frame_idx]
    if before:
        selected[max(before)] = cond_frame_outputs[max(before)]
    if after:
        selected[min(after)] = cond_frame_outputs[min(after)]
    rest = sorted((t for t in cond_frame_outputs if t not in selected), key=lambda t: abs(t - frame_idx))
    for t in rest[: max_cond_frame_num - len(selected)]:
        selected[t] = cond_frame_outputs[t]
    unselected = {t: v for t, v in cond_frame_outputs.items() if t not in selected}
    return selected, unselected


def get_1d_sine_pe(pos_inds: Tensor, dim: int, temperature: float = 10000) -> Tensor:
    """Sine/cosine embedding of positions (...,) -> (..., dim): [sin(p / f_i), cos(p / f_i)]."""
    half = dim // 2
    idx = torch.arange(half, dtype=torch.float32, device=pos_inds.device)
    freqs = temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / half)
    ang = pos_inds.unsqueeze(-1) / freqs
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


def memory_frame_indices(frame_idx: int, num_maskmem: int, stride: int = 1,
                         track_in_reverse: bool = False) -> list[tuple[int, int]]:
    """Which earlier frames serve as non-conditioning memory for `frame_idx`.

    Returns [(t_pos, memory_frame_idx)] for t_pos = 1 .. num_maskmem - 1 (t_pos = num_maskmem - 1
    is the adjacent frame). The adjacent frame (previous, or next when tracking in reverse) is
    always used; the others are taken from every `stride`-th frame beyond it. Indices may be
    negative or past the video end; the caller skips frames without output.
    """
    picks = []
    for t_pos in range(1, num_maskmem):
        t_rel = num_maskmem - t_pos  # frames away from the current one
        if t_rel == 1:
            t = frame_idx + 1 if track_in_reverse else frame_idx - 1
        elif not track_in_reverse:
            t = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            t = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        picks.append((t_pos, t))
    return picks


def obj_ptr_frame_offsets(frame_idx: int, max_obj_ptrs: int, num_frames: int | None,
                          track_in_reverse: bool = False) -> list[tuple[int, int]]:
    """Candidate non-conditioning frames whose object pointers are used for `frame_idx`.

    Returns [(t_diff, t)] for t_diff = 1 .. max_obj_ptrs - 1, walking backwards in time
    (forwards when tracking in reverse) and stopping at the video boundary.
    """
    out = []
    for t_diff in range(1, max_obj_ptrs):
        t = frame_idx + t_diff if track_in_reverse else frame_idx - t_diff
        if t < 0 or (num_frames is not None and t >= num_frames):
            break
        out.append((t_diff, t))
    return out


class SAM2Base(nn.Module):
    """SAM 2 model: image encoder + memory attention + memory encoder + SAM prompt encoder / mask decoder.

    Constructor keywords are the official ones (see the official config files); the prompt
    encoder and mask decoder are built here (``sam_prompt_encoder``, ``sam_mask_decoder``).
    Use :meth:`forward_image`, :meth:`prepare_backbone_features` and :meth:`track_step`
    (the video predictor drives them; it also calls :meth:`encode_new_memory` and
    :meth:`apply_non_overlapping_constraints`); ``forward`` itself is not used. The official
    private names of those three (``_prepare_backbone_features``, ...) are aliases.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        memory_attention: nn.Module,
        memory_encoder: nn.Module,
        num_maskmem: int = 7,
        image_size: int = 512,
        backbone_stride: int = 16,
        sigmoid_scale_for_mem_enc: float = 1.0,
        sigmoid_bias_for_mem_enc: float = 0.0,
        binarize_mask_from_pts_for_mem_enc: bool = False,
        use_mask_input_as_output_without_sam: bool = False,
        max_cond_frames_in_attn: int = -1,
        directly_add_no_mem_embed: bool = False,
        use_high_res_features_in_sam: bool = False,
        multimask_output_in_sam: bool = False,
        multimask_min_pt_num: int = 1,
        multimask_max_pt_num: int = 1,
        multimask_output_for_tracking: bool = False,
        use_multimask_token_for_obj_ptr: bool = False,
        iou_prediction_use_sigmoid: bool = False,
        memory_temporal_stride_for_eval: int = 1,
        non_overlap_masks_for_mem_enc: bool = False,
        use_obj_ptrs_in_encoder: bool = False,
        max_obj_ptrs_in_encoder: int = 16,
        add_tpos_enc_to_obj_ptrs: bool = True,
        proj_tpos_enc_in_obj_ptrs: bool = False,
        use_signed_tpos_enc_to_obj_ptrs: bool = False,
        only_obj_ptrs_in_the_past_for_eval: bool = False,
        pred_obj_scores: bool = False,
        pred_obj_scores_mlp: bool = False,
        fixed_no_obj_ptr: bool = False,
        soft_no_obj_ptr: bool = False,
        use_mlp_for_obj_ptr_proj: bool = False,
        no_obj_embed_spatial: bool = False,
        sam_mask_decoder_extra_args: dict | None = None,
        compile_image_encoder: bool = False,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.use_high_res_features_in_sam = use_high_res_features_in_sam
        self.num_feature_levels = 3 if use_high_res_features_in_sam else 1
        self.use_obj_ptrs_in_encoder = use_obj_ptrs_in_encoder
        self.max_obj_ptrs_in_encoder = max_obj_ptrs_in_encoder
        if use_obj_ptrs_in_encoder:
            # turns a full-resolution mask prompt into a stride-4 SAM logit map
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.add_tpos_enc_to_obj_ptrs = add_tpos_enc_to_obj_ptrs
        if proj_tpos_enc_in_obj_ptrs and not add_tpos_enc_to_obj_ptrs:
            raise ValueError("proj_tpos_enc_in_obj_ptrs needs add_tpos_enc_to_obj_ptrs")
        self.proj_tpos_enc_in_obj_ptrs = proj_tpos_enc_in_obj_ptrs
        self.use_signed_tpos_enc_to_obj_ptrs = use_signed_tpos_enc_to_obj_ptrs
        self.only_obj_ptrs_in_the_past_for_eval = only_obj_ptrs_in_the_past_for_eval

        self.memory_attention = memory_attention
        self.hidden_dim = image_encoder.neck.d_model
        self.memory_encoder = memory_encoder
        self.mem_dim = self.hidden_dim
        out_proj = getattr(memory_encoder, "out_proj", None)
        if out_proj is not None and hasattr(out_proj, "weight"):
            self.mem_dim = out_proj.weight.shape[0]  # memory channels are compressed
        self.num_maskmem = num_maskmem
        # Optional callable(frame_idx, memory_frames) told, before memory attention runs for a tracked
        # frame, which frames' spatial memories form its keys, in order (training aids; None: off).
        self.memory_observer = None
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(num_maskmem, 1, 1, self.mem_dim))
        trunc_normal_(self.maskmem_tpos_enc, std=0.02)
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, self.hidden_dim))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, self.hidden_dim))
        trunc_normal_(self.no_mem_embed, std=0.02)
        trunc_normal_(self.no_mem_pos_enc, std=0.02)
        self.directly_add_no_mem_embed = directly_add_no_mem_embed
        self.sigmoid_scale_for_mem_enc = sigmoid_scale_for_mem_enc
        self.sigmoid_bias_for_mem_enc = sigmoid_bias_for_mem_enc
        self.binarize_mask_from_pts_for_mem_enc = binarize_mask_from_pts_for_mem_enc
        self.non_overlap_masks_for_mem_enc = non_overlap_masks_for_mem_enc
        self.memory_temporal_stride_for_eval = memory_temporal_stride_for_eval
        self.use_mask_input_as_output_without_sam = use_mask_input_as_output_without_sam
        self.multimask_output_in_sam = multimask_output_in_sam
        self.multimask_min_pt_num = multimask_min_pt_num
        self.multimask_max_pt_num = multimask_max_pt_num
        self.multimask_output_for_tracking = multimask_output_for_tracking
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.iou_prediction_use_sigmoid = iou_prediction_use_sigmoid

        self.image_size = image_size
        self.backbone_stride = backbone_stride
        self.sam_mask_decoder_extra_args = sam_mask_decoder_extra_args
        self.pred_obj_scores = pred_obj_scores
        self.pred_obj_scores_mlp = pred_obj_scores_mlp
        self.fixed_no_obj_ptr = fixed_no_obj_ptr
        self.soft_no_obj_ptr = soft_no_obj_ptr
        if fixed_no_obj_ptr and not (pred_obj_scores and use_obj_ptrs_in_encoder):
            raise ValueError("fixed_no_obj_ptr needs pred_obj_scores and use_obj_ptrs_in_encoder")
        if pred_obj_scores and use_obj_ptrs_in_encoder:
            self.no_obj_ptr = nn.Parameter(torch.zeros(1, self.hidden_dim))
            trunc_normal_(self.no_obj_ptr, std=0.02)
        self.use_mlp_for_obj_ptr_proj = use_mlp_for_obj_ptr_proj
        self.no_obj_embed_spatial = None
        if no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, self.mem_dim))
            trunc_normal_(self.no_obj_embed_spatial, std=0.02)

        self._build_sam_heads()
        self.max_cond_frames_in_attn = max_cond_frames_in_attn
        if compile_image_encoder:
            self.image_encoder.forward = torch.compile(self.image_encoder.forward, mode="max-autotune",
                                                       fullgraph=True, dynamic=False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, *args, **kwargs):
        raise NotImplementedError("SAM2Base is driven through forward_image / track_step (see the video predictor)")

    def _build_sam_heads(self) -> None:
        """Build the SAM prompt encoder, mask decoder and object-pointer projections."""
        self.sam_prompt_embed_dim = self.hidden_dim
        self.sam_image_embedding_size = self.image_size // self.backbone_stride
        e = self.sam_image_embedding_size
        self.sam_prompt_encoder = PromptEncoder(embed_dim=self.sam_prompt_embed_dim, image_embedding_size=(e, e),
                                                input_image_size=(self.image_size, self.image_size), mask_in_chans=16)
        self.sam_mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=self.sam_prompt_embed_dim, mlp_dim=2048, num_heads=8),
            transformer_dim=self.sam_prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
            use_high_res_features=self.use_high_res_features_in_sam,
            iou_prediction_use_sigmoid=self.iou_prediction_use_sigmoid,
            pred_obj_scores=self.pred_obj_scores,
            pred_obj_scores_mlp=self.pred_obj_scores_mlp,
            use_multimask_token_for_obj_ptr=self.use_multimask_token_for_obj_ptr,
            **(self.sam_mask_decoder_extra_args or {}),
        )
        if self.use_obj_ptrs_in_encoder:
            self.obj_ptr_proj = (MLP(self.hidden_dim, self.hidden_dim, self.hidden_dim, 3)
                                 if self.use_mlp_for_obj_ptr_proj else nn.Linear(self.hidden_dim, self.hidden_dim))
        else:
            self.obj_ptr_proj = nn.Identity()
        if self.proj_tpos_enc_in_obj_ptrs:
            self.obj_ptr_tpos_proj = nn.Linear(self.hidden_dim, self.mem_dim)
        else:
            self.obj_ptr_tpos_proj = nn.Identity()

    # ------------------------------------------------------------------ SAM heads
    def _forward_sam_heads(self, backbone_features: Tensor, point_inputs: dict | None = None,
                           mask_inputs: Tensor | None = None, high_res_features: list[Tensor] | None = None,
                           multimask_output: bool = False) -> tuple[Tensor, ...]:
        """The official 7-tuple of :meth:`sam_heads` (kept for code written against the official layout):
        (low_res_multimasks, high_res_multimasks, ious, low_res_masks, high_res_masks, obj_ptr,
        object_score_logits)."""
        h = self.sam_heads(backbone_features, point_inputs, mask_inputs, high_res_features, multimask_output)
        return (h.multimask_logits, h.multimask_logits_high_res, h.ious, h.pred_masks, h.pred_masks_high_res,
                h.obj_ptr, h.object_score_logits)

    def sam_heads(self, backbone_features: Tensor, point_inputs: dict | None = None,
                  mask_inputs: Tensor | None = None, high_res_features: list[Tensor] | None = None,
                  multimask_output: bool = False) -> TrackStepOutput:
        """Run the prompt encoder and mask decoder on one stride-16 feature map.

        backbone_features (B, C, H, W) with H = W = image_size / backbone_stride;
        point_inputs {"point_coords": (B, P, 2) float (x, y) in model-input pixels,
        "point_labels": (B, P) int}; mask_inputs (B, 1, h, w) (resized to 4H x 4W);
        high_res_features [(B, C/8, 4H, 4W), (B, C/4, 2H, 2W)].

        Returns a `TrackStepOutput` without memory (M = 3 candidates with `multimask_output`, else 1).
        """
        b = backbone_features.size(0)
        device = backbone_features.device
        e = self.sam_image_embedding_size
        if tuple(backbone_features.shape[1:]) != (self.sam_prompt_embed_dim, e, e):
            raise InputError(f"SAM heads expect features (B, {self.sam_prompt_embed_dim}, {e}, {e}), "
                             f"got {tuple(backbone_features.shape)}")
        if point_inputs is not None:
            coords, labels = point_inputs["point_coords"], point_inputs["point_labels"]
            if coords.size(0) != b or labels.size(0) != b:
                raise InputError(f"point prompts have batch {coords.size(0)}, features have {b}")
        else:
            coords = torch.zeros(b, 1, 2, device=device)
            labels = -torch.ones(b, 1, dtype=torch.int32, device=device)

        if mask_inputs is not None:
            if mask_inputs.dim() != 4 or tuple(mask_inputs.shape[:2]) != (b, 1):
                raise InputError(f"mask prompt must be ({b}, 1, H, W), got {tuple(mask_inputs.shape)}")
            if tuple(mask_inputs.shape[-2:]) != tuple(self.sam_prompt_encoder.mask_input_size):
                mask_prompt = F.interpolate(mask_inputs.float(), size=self.sam_prompt_encoder.mask_input_size,
                                            mode="bilinear", align_corners=False, antialias=True)
            else:
                mask_prompt = mask_inputs
        else:
            mask_prompt = None

        sparse, dense = self.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=mask_prompt)
        ungated, ious, sam_output_tokens, object_score_logits = self.sam_mask_decoder(
            image_embeddings=backbone_features,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=False,
            high_res_features=high_res_features,
        )
        low_res_multimasks = ungated
        if self.pred_obj_scores:
            is_obj_appearing = object_score_logits > 0
            # absent objects get a hard "no object" mask (also what goes into memory)
            low_res_multimasks = torch.where(is_obj_appearing[:, None, None], low_res_multimasks,
                                             torch.full_like(low_res_multimasks, NO_OBJ_SCORE))
        low_res_multimasks = low_res_multimasks.float()
        high_res_multimasks = F.interpolate(low_res_multimasks, size=(self.image_size, self.image_size),
                                            mode="bilinear", align_corners=False)

        rows = torch.arange(b, device=device)
        sam_output_token = sam_output_tokens[:, 0]
        if multimask_output:
            best = torch.argmax(ious, dim=-1)
            low_res_masks = low_res_multimasks[rows, best].unsqueeze(1)
            high_res_masks = high_res_multimasks[rows, best].unsqueeze(1)
            if sam_output_tokens.size(1) > 1:
                sam_output_token = sam_output_tokens[rows, best]
        else:
            best = torch.zeros(b, dtype=torch.long, device=device)
            low_res_masks, high_res_masks = low_res_multimasks, high_res_multimasks

        obj_ptr = self._gate_obj_ptr(self.obj_ptr_proj(sam_output_token), object_score_logits)
        m = low_res_multimasks.size(1)
        tokens = sam_output_tokens if sam_output_tokens.size(1) == m else sam_output_tokens[:, :1].expand(-1, m, -1)
        candidate_ptrs = self._gate_obj_ptr(self.obj_ptr_proj(tokens), object_score_logits[:, None])
        return TrackStepOutput(
            multimask_logits=low_res_multimasks, multimask_logits_high_res=high_res_multimasks,
            ungated_multimask_logits=ungated.float(), ious=ious, candidate_obj_ptrs=candidate_ptrs, chosen=best,
            pred_masks=low_res_masks, pred_masks_high_res=high_res_masks, obj_ptr=obj_ptr,
            object_score_logits=object_score_logits, multimask_output=multimask_output)

    def _gate_obj_ptr(self, obj_ptr: Tensor, object_score_logits: Tensor) -> Tensor:
        """Blend pointers (..., C) of absent objects towards ``no_obj_ptr`` (scores (..., 1))."""
        if not self.pred_obj_scores:
            return obj_ptr
        lam = object_score_logits.sigmoid() if self.soft_no_obj_ptr else (object_score_logits > 0).float()
        if self.fixed_no_obj_ptr:
            obj_ptr = lam * obj_ptr
        return obj_ptr + (1 - lam) * self.no_obj_ptr

    def _use_mask_as_output(self, backbone_features: Tensor, high_res_features: list[Tensor] | None,
                            mask_inputs: Tensor) -> TrackStepOutput:
        """Turn a binary mask prompt (B, 1, S, S) directly into output logits (+10 inside, -10 outside).

        The object pointer still comes from the SAM decoder fed with the downsampled mask.
        Returns a `TrackStepOutput` with one candidate (M = 1) and no memory.
        """
        out_scale, out_bias = 20.0, -10.0
        mask_f = mask_inputs.float()
        high_res_masks = mask_f * out_scale + out_bias
        low_res_masks = F.interpolate(high_res_masks, size=(high_res_masks.size(-2) // 4, high_res_masks.size(-1) // 4),
                                      mode="bilinear", align_corners=False, antialias=True)
        b = mask_inputs.size(0)
        ious = mask_inputs.new_ones(b, 1).float()
        if not self.use_obj_ptrs_in_encoder:
            obj_ptr = torch.zeros(b, self.hidden_dim, device=mask_inputs.device)
        else:
            obj_ptr = self.sam_heads(backbone_features=backbone_features, mask_inputs=self.mask_downsample(mask_f),
                                     high_res_features=high_res_features).obj_ptr
        # presence is decided by the mask itself, not by the decoder's object score
        lam = torch.any(mask_f.flatten(1) > 0.0, dim=1)[..., None].float()
        object_score_logits = out_scale * lam + out_bias
        if self.pred_obj_scores:
            if self.fixed_no_obj_ptr:
                obj_ptr = lam * obj_ptr
            obj_ptr = obj_ptr + (1 - lam) * self.no_obj_ptr
        return TrackStepOutput(
            multimask_logits=low_res_masks, multimask_logits_high_res=high_res_masks,
            ungated_multimask_logits=low_res_masks, ious=ious, candidate_obj_ptrs=obj_ptr[:, None],
            chosen=torch.zeros(b, dtype=torch.long, device=mask_inputs.device), pred_masks=low_res_masks,
            pred_masks_high_res=high_res_masks, obj_ptr=obj_ptr, object_score_logits=object_score_logits)

    # ------------------------------------------------------------------ backbone
    def forward_image(self, img_batch: Tensor) -> dict:
        """Image encoder on (B, 3, S, S); with high-res features the stride-4/8 levels go through
        the decoder's ``conv_s0`` / ``conv_s1`` once here.

        Returns the encoder dict: ``vision_features`` (B, C, S/16, S/16), ``vision_pos_enc`` and
        ``backbone_fpn`` (lists, highest resolution first).
        """
        backbone_out = self.image_encoder(img_batch)
        if self.use_high_res_features_in_sam:
            fpn = list(backbone_out["backbone_fpn"])
            fpn[0] = self.sam_mask_decoder.conv_s0(fpn[0])
            fpn[1] = self.sam_mask_decoder.conv_s1(fpn[1])
            backbone_out["backbone_fpn"] = fpn
        return backbone_out

    def prepare_backbone_features(self, backbone_out: dict) -> tuple[dict, list[Tensor], list[Tensor], list[tuple[int, int]]]:
        """Flatten the last `num_feature_levels` levels: returns (backbone_out copy,
        vision_feats [(H*W, B, C_l)], vision_pos_embeds [(H*W, B, C)], feat_sizes [(H, W)])."""
        backbone_out = backbone_out.copy()
        fpn, pos = backbone_out["backbone_fpn"], backbone_out["vision_pos_enc"]
        if len(fpn) != len(pos) or len(fpn) < self.num_feature_levels:
            raise InputError(f"backbone output has {len(fpn)} feature levels and {len(pos)} position encodings; "
                             f"{self.num_feature_levels} needed")
        feature_maps = fpn[-self.num_feature_levels:]
        pos_maps = pos[-self.num_feature_levels:]
        feat_sizes = [(x.shape[-2], x.shape[-1]) for x in pos_maps]
        vision_feats = [x.flatten(2).permute(2, 0, 1) for x in feature_maps]
        vision_pos_embeds = [x.flatten(2).permute(2, 0, 1) for x in pos_maps]
        return backbone_out, vision_feats, vision_pos_embeds, feat_sizes

    # ------------------------------------------------------------------ memory
    def _prepare_memory_conditioned_features(self, frame_idx: int, is_init_cond_frame: bool,
                                             current_vision_feats: list[Tensor], current_vision_pos_embeds: list[Tensor],
                                             feat_sizes: list[tuple[int, int]], output_dict: dict, num_frames: int,
                                             track_in_reverse: bool = False) -> Tensor:
        """Fuse the current stride-16 feature (``current_vision_feats[-1]``, (HW, B, C)) with the memory bank.

        Memory = spatial memories of the selected conditioning frames (temporal slot 0) and of up
        to num_maskmem - 1 recent frames, plus object pointers (not rotated by RoPE).
        Returns (B, C, H, W).
        """
        feat = current_vision_feats[-1]
        b = feat.size(1)
        c = self.hidden_dim
        h, w = feat_sizes[-1]
        device = feat.device
        if self.num_maskmem == 0:  # plain SAM on images
            return feat.permute(1, 2, 0).reshape(b, c, h, w)

        num_obj_ptr_tokens = 0
        tpos_sign_mul = -1 if track_in_reverse else 1
        if not is_init_cond_frame:
            memories, memory_pos = [], []
            cond_outputs = output_dict["cond_frame_outputs"]
            if len(cond_outputs) == 0:
                raise InputError("tracking a frame needs at least one prompted (conditioning) frame")
            selected_cond, unselected_cond = select_closest_cond_frames(frame_idx, cond_outputs,
                                                                        self.max_cond_frames_in_attn)
            t_pos_and_prevs = [(0, out) for out in selected_cond.values()]
            memory_frames = list(selected_cond)
            stride = 1 if self.training else self.memory_temporal_stride_for_eval
            for t_pos, prev_idx in memory_frame_indices(frame_idx, self.num_maskmem, stride, track_in_reverse):
                out = output_dict["non_cond_frame_outputs"].get(prev_idx, None)
                if out is None:
                    # an unselected conditioning frame among the recent ones still counts as memory
                    out = unselected_cond.get(prev_idx, None)
                t_pos_and_prevs.append((t_pos, out))
                if out is not None:
                    memory_frames.append(prev_idx)
            if self.memory_observer is not None:
                self.memory_observer(frame_idx, memory_frames)

            for t_pos, prev in t_pos_and_prevs:
                if prev is None:
                    continue
                mem = prev["maskmem_features"].to(device=device, dtype=feat.dtype, non_blocking=True)
                memories.append(mem.flatten(2).permute(2, 0, 1))
                enc = prev["maskmem_pos_enc"][-1].to(device=device, dtype=feat.dtype)
                enc = enc.flatten(2).permute(2, 0, 1) + self.maskmem_tpos_enc[self.num_maskmem - t_pos - 1]
                memory_pos.append(enc)

            if self.use_obj_ptrs_in_encoder:
                max_ptrs = min(num_frames, self.max_obj_ptrs_in_encoder)
                if not self.training and self.only_obj_ptrs_in_the_past_for_eval:
                    ptr_cond = {t: out for t, out in selected_cond.items()
                                if (t >= frame_idx if track_in_reverse else t <= frame_idx)}
                else:
                    ptr_cond = selected_cond
                pos_and_ptrs = []
                for t, out in ptr_cond.items():
                    dist = (frame_idx - t) * tpos_sign_mul if self.use_signed_tpos_enc_to_obj_ptrs \
                        else abs(frame_idx - t)
                    pos_and_ptrs.append((dist, out["obj_ptr"]))
                for t_diff, t in obj_ptr_frame_offsets(frame_idx, max_ptrs, num_frames, track_in_reverse):
                    out = output_dict["non_cond_frame_outputs"].get(t, unselected_cond.get(t, None))
                    if out is not None:
                        pos_and_ptrs.append((t_diff, out["obj_ptr"]))
                if pos_and_ptrs:
                    pos_list = [p for p, _ in pos_and_ptrs]
                    obj_ptrs = torch.stack([ptr.to(device=device, dtype=feat.dtype) for _, ptr in pos_and_ptrs], dim=0)
                    if self.add_tpos_enc_to_obj_ptrs:
                        t_diff_max = max(max_ptrs - 1, 1)
                        tpos_dim = c if self.proj_tpos_enc_in_obj_ptrs else self.mem_dim
                        # built on the host and copied without waiting (no synchronisation per frame)
                        obj_pos = torch.tensor(pos_list).to(device, non_blocking=True)
                        obj_pos = get_1d_sine_pe(obj_pos / t_diff_max, dim=tpos_dim)
                        obj_pos = self.obj_ptr_tpos_proj(obj_pos)
                        obj_pos = obj_pos.unsqueeze(1).expand(-1, b, self.mem_dim)
                    else:
                        obj_pos = obj_ptrs.new_zeros(len(pos_list), b, self.mem_dim)
                    if self.mem_dim < c:
                        # one C-dim pointer becomes C / mem_dim memory tokens
                        split = c // self.mem_dim
                        obj_ptrs = obj_ptrs.reshape(-1, b, split, self.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
                        obj_pos = obj_pos.repeat_interleave(split, dim=0)
                    memories.append(obj_ptrs)
                    memory_pos.append(obj_pos)
                    num_obj_ptr_tokens = obj_ptrs.shape[0]
        else:
            if self.directly_add_no_mem_embed:
                return (feat + self.no_mem_embed).permute(1, 2, 0).reshape(b, c, h, w)
            memories = [self.no_mem_embed.expand(1, b, self.mem_dim)]
            memory_pos = [self.no_mem_pos_enc.expand(1, b, self.mem_dim)]

        memory = torch.cat(memories, dim=0)
        memory_pos_embed = torch.cat(memory_pos, dim=0)
        fused = self.memory_attention(curr=current_vision_feats[-1:], curr_pos=current_vision_pos_embeds[-1:],
                                      memory=memory, memory_pos=memory_pos_embed,
                                      num_obj_ptr_tokens=num_obj_ptr_tokens)
        return fused.permute(1, 2, 0).reshape(b, c, h, w)

    def encode_new_memory(self, current_vision_feats: list[Tensor], feat_sizes: list[tuple[int, int]],
                           pred_masks_high_res: Tensor, object_score_logits: Tensor,
                           is_mask_from_pts: bool) -> tuple[Tensor, list[Tensor]]:
        """Encode the stride-16 feature (``current_vision_feats[-1]``) with the predicted mask
        (B, 1, S, S logits) into (maskmem_features (B, mem_dim, H, W), maskmem_pos_enc [(B, mem_dim, H, W)])."""
        feat = current_vision_feats[-1]
        b = feat.size(1)
        h, w = feat_sizes[-1]
        pix_feat = feat.permute(1, 2, 0).reshape(b, self.hidden_dim, h, w)
        if self.non_overlap_masks_for_mem_enc and not self.training:
            pred_masks_high_res = self.apply_non_overlapping_constraints(pred_masks_high_res)
        if self.binarize_mask_from_pts_for_mem_enc and is_mask_from_pts and not self.training:
            mask_for_mem = (pred_masks_high_res > 0).float()
        else:
            mask_for_mem = torch.sigmoid(pred_masks_high_res)
        if self.sigmoid_scale_for_mem_enc != 1.0:
            mask_for_mem = mask_for_mem * self.sigmoid_scale_for_mem_enc
        if self.sigmoid_bias_for_mem_enc != 0.0:
            mask_for_mem = mask_for_mem + self.sigmoid_bias_for_mem_enc
        out = self.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)
        maskmem_features = out["vision_features"]
        maskmem_pos_enc = out["vision_pos_enc"]
        if self.no_obj_embed_spatial is not None:
            absent = 1.0 - (object_score_logits > 0).float()  # (B, 1)
            maskmem_features = maskmem_features + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        return maskmem_features, maskmem_pos_enc

    # ------------------------------------------------------------------ tracking (public step)
    def prepare_frame_features(self, backbone_out: dict, batch_size: int | None = None) -> FrameFeatures:
        """Flatten one frame's backbone output (`forward_image`, possibly with a fused stride-16
        level) into `FrameFeatures`, optionally expanded from batch 1 to `batch_size` objects."""
        if batch_size is not None:
            backbone_out = {
                "backbone_fpn": [f.expand(batch_size, -1, -1, -1) for f in backbone_out["backbone_fpn"]],
                "vision_pos_enc": [p.expand(batch_size, -1, -1, -1) for p in backbone_out["vision_pos_enc"]],
            }
        _, feats, pos, sizes = self.prepare_backbone_features(backbone_out)
        return FrameFeatures(feats, pos, sizes)

    def track_frame(self, features: FrameFeatures, frame_idx: int, memory: dict, num_frames: int, *,
                    is_init_cond_frame: bool = False, point_inputs: dict | None = None,
                    mask_inputs: Tensor | None = None, reverse: bool = False, run_mem_encoder: bool = True,
                    prev_sam_mask_logits: Tensor | None = None) -> TrackStepOutput:
        """SAM 2's tracking step for B objects on one frame (reads, never modifies, the memory bank).

        Args:
            features: the frame's `FrameFeatures` for the B objects.
            memory: ``{"cond_frame_outputs": {t: entry}, "non_cond_frame_outputs": {t: entry}}`` (entries
                as `TrackStepOutput.memory_entry`; a view of any subset of frames may be given).
            num_frames: length of the video (bounds the object-pointer window).
            is_init_cond_frame: a prompted frame segmented without memory (like SAM).
            point_inputs: ``{"point_coords": (B, P, 2), "point_labels": (B, P)}`` in model-input pixels.
            mask_inputs: ``(B, 1, S, S)`` binary masks.
            reverse: tracking towards frame 0.
            run_mem_encoder: encode the chosen mask into memory.
            prev_sam_mask_logits: ``(B, 1, S/4, S/4)`` previous logits fed back with a correction click.

        Returns:
            A `TrackStepOutput` (all candidates, the chosen one, pointer, scores, memory).
        """
        high_res_features = features.high_res_features()
        if mask_inputs is not None and self.use_mask_input_as_output_without_sam:
            out = self._use_mask_as_output(features.pix_feat(self.hidden_dim), high_res_features, mask_inputs)
        else:
            pix_feat = self._prepare_memory_conditioned_features(
                frame_idx=frame_idx, is_init_cond_frame=is_init_cond_frame,
                current_vision_feats=features.vision_feats[-1:],
                current_vision_pos_embeds=features.vision_pos_embeds[-1:], feat_sizes=features.feat_sizes[-1:],
                output_dict=memory, num_frames=num_frames, track_in_reverse=reverse)
            sam_mask_inputs = mask_inputs
            if prev_sam_mask_logits is not None:
                if point_inputs is None or mask_inputs is not None:
                    raise InputError("prev_sam_mask_logits is only used together with point inputs and no mask input")
                sam_mask_inputs = prev_sam_mask_logits
            out = self.sam_heads(pix_feat, point_inputs=point_inputs, mask_inputs=sam_mask_inputs,
                                 high_res_features=high_res_features,
                                 multimask_output=self._use_multimask(is_init_cond_frame, point_inputs))
        out = out.replace(point_inputs=point_inputs, mask_inputs=mask_inputs)
        if run_mem_encoder and self.num_maskmem > 0:
            out = self.encode_memory(features, out, is_mask_from_pts=point_inputs is not None)
        return out

    def encode_memory(self, features: FrameFeatures, out: TrackStepOutput,
                      is_mask_from_pts: bool = False) -> TrackStepOutput:
        """``out`` with the memory of its chosen mask (``pred_masks_high_res``) encoded."""
        feats, pos = self.encode_new_memory(current_vision_feats=features.vision_feats,
                                             feat_sizes=features.feat_sizes,
                                             pred_masks_high_res=out.pred_masks_high_res,
                                             object_score_logits=out.object_score_logits,
                                             is_mask_from_pts=is_mask_from_pts)
        return out.replace(maskmem_features=feats, maskmem_pos_enc=pos)

    def select_candidate(self, features: FrameFeatures, out: TrackStepOutput, k: int,
                         run_mem_encoder: bool = True) -> TrackStepOutput:
        """``out`` with candidate `k` (same for every object of the batch) as the chosen mask: its
        logits, its object pointer and (``run_mem_encoder``) its memory. Choosing the candidate
        SAM 2 chose returns ``out`` itself."""
        if not 0 <= k < out.num_candidates:
            raise InputError(f"candidate index {k} out of range 0..{out.num_candidates - 1}")
        if bool((out.chosen == k).all()):
            if out.maskmem_features is not None or not run_mem_encoder or self.num_maskmem == 0:
                return out
            new = out  # SAM 2's own pick: keep its exact pointer, add the memory
        else:
            b = out.multimask_logits.size(0)
            new = out.replace(
                chosen=torch.full((b,), k, dtype=torch.long, device=out.chosen.device),
                pred_masks=out.multimask_logits[:, k:k + 1],
                pred_masks_high_res=out.multimask_logits_high_res[:, k:k + 1],
                obj_ptr=out.candidate_obj_ptrs[:, k], maskmem_features=None, maskmem_pos_enc=None)
        if run_mem_encoder and self.num_maskmem > 0:
            new = self.encode_memory(features, new, is_mask_from_pts=new.point_inputs is not None)
        return new

    def track_step(self, frame_idx: int, is_init_cond_frame: bool, current_vision_feats: list[Tensor],
                   current_vision_pos_embeds: list[Tensor], feat_sizes: list[tuple[int, int]],
                   point_inputs: dict | None, mask_inputs: Tensor | None, output_dict: dict, num_frames: int,
                   track_in_reverse: bool = False, run_mem_encoder: bool = True,
                   prev_sam_mask_logits: Tensor | None = None) -> dict:
        """The official signature of :meth:`track_frame`; returns the memory-bank dict
        (`TrackStepOutput.memory_entry`) instead of the typed output."""
        features = FrameFeatures(current_vision_feats, current_vision_pos_embeds, feat_sizes)
        return self.track_frame(features, frame_idx, output_dict, num_frames, is_init_cond_frame=is_init_cond_frame,
                                point_inputs=point_inputs, mask_inputs=mask_inputs, reverse=track_in_reverse,
                                run_mem_encoder=run_mem_encoder,
                                prev_sam_mask_logits=prev_sam_mask_logits).memory_entry()

    def _use_multimask(self, is_init_cond_frame: bool, point_inputs: dict | None) -> bool:
        """Multimask output for the first click(s) of an initial frame (or for tracking, if enabled)."""
        num_pts = 0 if point_inputs is None else point_inputs["point_labels"].size(1)
        return bool(self.multimask_output_in_sam
                    and (is_init_cond_frame or self.multimask_output_for_tracking)
                    and self.multimask_min_pt_num <= num_pts <= self.multimask_max_pt_num)

    def apply_non_overlapping_constraints(self, pred_masks: Tensor) -> Tensor:
        """Per pixel keep only the highest-scoring object; others are clamped to at most -10. (B, 1, H, W)."""
        if pred_masks.size(0) == 1:
            return pred_masks
        winner = torch.argmax(pred_masks, dim=0, keepdim=True)
        ids = torch.arange(pred_masks.size(0), device=pred_masks.device)[:, None, None, None]
        return torch.where(winner == ids, pred_masks, torch.clamp(pred_masks, max=-10.0))

    # the official private names (code written against the official SAM2Base calls these)
    _prepare_backbone_features = prepare_backbone_features
    _encode_new_memory = encode_new_memory
    _apply_non_overlapping_constraints = apply_non_overlapping_constraints
