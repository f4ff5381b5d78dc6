"""SAM 2's mask decoder: mask logits, IoU estimates, output tokens and the object score."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from threeam.models.sam2.mlp import MLP, LayerNorm2d


class MaskDecoder(nn.Module):
    """Predicts masks from image embeddings and prompt embeddings with a two-way transformer.

    Output tokens, in order: [obj_score_token (if pred_obj_scores), iou_token,
    mask_tokens (1 + num_multimask_outputs)], followed by the sparse prompt tokens.
    With ``use_high_res_features`` the upscaling path adds the stride-8 and stride-4
    features (already passed through ``conv_s1`` / ``conv_s0``, see ``SAM2Base.forward_image``).
    """

    def __init__(self, *, transformer_dim: int, transformer: nn.Module, num_multimask_outputs: int = 3,
                 activation: type[nn.Module] = nn.GELU, iou_head_depth: int = 3, iou_head_hidden_dim: int = 256,
                 use_high_res_features: bool = False, iou_prediction_use_sigmoid: bool = False,
                 dynamic_multimask_via_stability: bool = False, dynamic_multimask_stability_delta: float = 0.05,
                 dynamic_multimask_stability_thresh: float = 0.98, pred_obj_scores: bool = False,
                 pred_obj_scores_mlp: bool = False, use_multimask_token_for_obj_ptr: bool = False) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr

        d4, d8 = transformer_dim // 4, transformer_dim // 8
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, d4, kernel_size=2, stride=2),
            LayerNorm2d(d4),
            activation(),
            nn.ConvTranspose2d(d4, d8, kernel_size=2, stride=2),
            activation(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(transformer_dim, d8, kernel_size=1, stride=1)
            self.conv_s1 = nn.Conv2d(transformer_dim, d4, kernel_size=1, stride=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, d8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens,
                                       iou_head_depth, sigmoid_output=iou_prediction_use_sigmoid)
        if pred_obj_scores:
            self.pred_obj_score_head = (MLP(transformer_dim, transformer_dim, 1, 3) if pred_obj_scores_mlp
                                        else nn.Linear(transformer_dim, 1))
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def forward(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                dense_prompt_embeddings: Tensor, multimask_output: bool, repeat_image: bool,
                high_res_features: list[Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Decode masks.

        image_embeddings (B, C, H, W) (or (1, C, H, W) with ``repeat_image``), image_pe
        (1, C, H, W), sparse (B, N, C), dense (B, C, H, W), high_res_features
        [(B, C/8, 4H, 4W), (B, C/4, 2H, 2W)].

        Returns masks (B, M, 4H, 4W), iou_pred (B, M), sam_tokens_out (B, M_tok, C),
        object_score_logits (B, 1); M = 3 with `multimask_output` else 1; M_tok = 3 when
        multimask output and ``use_multimask_token_for_obj_ptr``, else 1 (the single-mask token).
        """
        masks, iou_pred, mask_tokens_out, object_score_logits = self.predict_masks(
            image_embeddings=image_embeddings, image_pe=image_pe,
            sparse_prompt_embeddings=sparse_prompt_embeddings,
            dense_prompt_embeddings=dense_prompt_embeddings, repeat_image=repeat_image,
            high_res_features=high_res_features)
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self._dynamic_multimask_via_stability(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, 0:1], iou_pred[:, 0:1]
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]
        else:
            sam_tokens_out = mask_tokens_out[:, 0:1]
        return masks, iou_pred, sam_tokens_out, object_score_logits

    def predict_masks(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                      dense_prompt_embeddings: Tensor, repeat_image: bool,
                      high_res_features: list[Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """All 1 + num_multimask_outputs masks (B, 4, 4H, 4W), IoUs (B, 4), mask tokens (B, 4, C), scores (B, 1)."""
        parts = [self.iou_token.weight, self.mask_tokens.weight]
        first = 0
        if self.pred_obj_scores:
            parts.insert(0, self.obj_score_token.weight)
            first = 1
        out_tokens = torch.cat(parts, dim=0)
        n = sparse_prompt_embeddings.shape[0]
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(n, -1, -1), sparse_prompt_embeddings], dim=1)

        if repeat_image:
            src = torch.repeat_interleave(image_embeddings, n, dim=0)
        else:
            if image_embeddings.shape[0] != n:
                raise ValueError(f"image batch {image_embeddings.shape[0]} does not match prompt batch {n}")
            src = image_embeddings
        src = src + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, n, dim=0)
        b, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, first]
        mask_tokens_out = hs[:, first + 1: first + 1 + self.num_mask_tokens]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        if self.use_high_res_features:
            up1, ln1, act1, up2, act2 = self.output_upscaling
            feat_s0, feat_s1 = high_res_features
            x = act1(ln1(up1(src) + feat_s1))
            upscaled = act2(up2(x) + feat_s0)
        else:
            upscaled = self.output_upscaling(src)

        hyper = torch.stack([mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                            dim=1)  # (B, 4, C/8)
        b, c8, uh, uw = upscaled.shape
        masks = (hyper @ upscaled.reshape(b, c8, uh * uw)).reshape(b, -1, uh, uw)

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0])
        else:
            object_score_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)
        return masks, iou_pred, mask_tokens_out, object_score_logits

    def _get_stability_scores(self, mask_logits: Tensor) -> Tensor:
        """IoU between the masks thresholded at +delta and -delta: (B, M) from (B, M, H, W)."""
        flat = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        inter = (flat > delta).sum(dim=-1).float()
        union = (flat > -delta).sum(dim=-1).float()
        return torch.where(union > 0, inter / union, torch.ones_like(inter))

    def _dynamic_multimask_via_stability(self, all_mask_logits: Tensor, all_iou_scores: Tensor) -> tuple[Tensor, Tensor]:
        """Single-mask output; falls back to the best multimask output when token 0's mask is unstable."""
        multi_logits, multi_iou = all_mask_logits[:, 1:], all_iou_scores[:, 1:]
        best = torch.argmax(multi_iou, dim=-1)
        rows = torch.arange(multi_iou.shape[0], device=all_iou_scores.device)
        best_logits = multi_logits[rows, best].unsqueeze(1)
        best_iou = multi_iou[rows, best].unsqueeze(1)
        single_logits, single_iou = all_mask_logits[:, 0:1], all_iou_scores[:, 0:1]
        stable = self._get_stability_scores(single_logits) >= self.dynamic_multimask_stability_thresh
        logits = torch.where(stable[..., None, None].expand_as(single_logits), single_logits, best_logits)
        iou = torch.where(stable.expand_as(single_iou), single_iou, best_iou)
        return logits, iou
