"""SAM 2 on single images: the image predictor SAM 2 users know (``SAM2ImagePredictor``).

    predictor = ImagePredictor.from_pretrained("sam2.1_hiera_l", checkpoint="sam2.1_hiera_large.pt")
    # or ImagePredictor.from_pretrained("facebook/sam2.1-hiera-large") (downloaded)
    predictor.set_image(image)                                   # (H, W, 3) uint8 RGB or a PIL image
    masks, ious, low_res = predictor.predict(point_coords=[[500, 375]], point_labels=[1])

Same methods, arguments, defaults and results as the official predictor (Dec-2024 release).
The image is resized to ``S x S`` without keeping the aspect ratio (bilinear with antialiasing),
normalised with the ImageNet mean and std, and encoded once. Prompts are pixels of the original
image, (x, y). Masks come back at the original size, thresholded at ``mask_threshold`` (as float32
0/1 arrays, like the official) unless ``return_logits``. The low-res logits (``S/4 x S/4``, clamped
to [-32, 32]) can be fed back as ``mask_input``.

Differences, all on the friendly side:

* the feature sizes follow the model's image size (the official hard-codes them for 1024);
* ``from_pretrained(preset, checkpoint=..., device=...)`` (weights required: a checkpoint, a hub id
  as the preset, or ``random_weights=True``) and ``from_video_predictor(vp)``; the
  latter shares the video predictor's model object (no second copy of the weights);
* hole filling and sprinkle removal (``max_hole_area``, ``max_sprinkle_area``) run on any device
  (CPU connected components); the official skips them without its CUDA extension;
* box corners may lie up to one image size outside the image on any side and points up to one
  image size past its right/bottom edge, both passed on unchanged (never clipped, as the official
  does); farther ones, negative points and boxes that miss the image are refused (the rule of
  `threeam.predictor.validation`, docs/tracking.md);
* bad input (wrong image type, prompts clearly outside the image, mismatched counts, ``predict``
  before ``set_image`` or after ``set_image_batch``) raises `threeam.errors.InputError`.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from threeam.errors import InputError
from threeam.predictor.validation import as_float_tensor, check_points, check_boxes
from threeam.predictor.postprocess import connected_components

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOW_RES_CLAMP = 32.0


def _as_rgb_array(image: Any, name: str = "image") -> np.ndarray:
    """A PIL image or an (H, W, 3) uint8 array -> (H, W, 3) uint8 array (PIL images are converted to RGB)."""
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - Pillow is a dependency
        PILImage = None
    if PILImage is not None and isinstance(image, PILImage.Image):
        return np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name} must be an (H, W, 3) uint8 RGB numpy array or a PIL image, "
                         f"got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"{name} must be uint8 (0..255), got dtype {image.dtype}; "
                         f"convert it e.g. with (img * 255).round().astype(np.uint8)")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name} must have shape (H, W, 3) (RGB, channels last), got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"{name} is empty: shape {image.shape}")
    return image




class ImagePredictor:
    """Prompted segmentation of single images with a `SAM2Base` model.

    Args:
        model: a `threeam.models.sam2.sam2_base.SAM2Base` (the same object a `VideoPredictor` uses
            can be given; it is not modified).
        mask_threshold: logits above this value are foreground in the returned masks.
        max_hole_area: fill background regions (8-connected, at most this many pixels of the
            ``S/4`` low-res mask) before upsampling; 0 turns it off.
        max_sprinkle_area: remove foreground specks of at most this many low-res pixels; 0 turns it off.

    State after `set_image`: ``_features = {"image_embed": (B, C, S/16, S/16) (with
    ``no_mem_embed`` added when the model does so), "high_res_feats": [(B, C/8, S/4, S/4),
    (B, C/4, S/8, S/8)]}`` and ``_orig_hw = [(H, W), ...]``.
    """

    def __init__(self, model: torch.nn.Module, mask_threshold: float = 0.0, max_hole_area: float = 0.0,
                 max_sprinkle_area: float = 0.0) -> None:
        for attr in ("forward_image", "prepare_backbone_features", "sam_prompt_encoder", "sam_mask_decoder",
                     "image_size"):
            if not hasattr(model, attr):
                raise InputError(f"model must be a SAM 2 model (SAM2Base); {type(model).__name__} has no {attr!r}")
        for name, value in (("mask_threshold", mask_threshold), ("max_hole_area", max_hole_area),
                            ("max_sprinkle_area", max_sprinkle_area)):
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value!r}")
        if max_hole_area < 0 or max_sprinkle_area < 0:
            raise InputError(f"max_hole_area and max_sprinkle_area must be >= 0 pixels, "
                             f"got {max_hole_area!r} and {max_sprinkle_area!r}")
        self.model = model
        self.mask_threshold = float(mask_threshold)
        self.max_hole_area = float(max_hole_area)
        self.max_sprinkle_area = float(max_sprinkle_area)
        self.reset_predictor()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, preset: Any = "sam2.1_hiera_l", checkpoint: Any = None,
                        device: str | torch.device = "cpu", random_weights: bool = False, seed: int = 0,
                        **kwargs: Any) -> "ImagePredictor":
        """Build the model with `threeam.predictor.build.build_sam2_model` (the one builder) and wrap it.

        Args:
            preset: a preset name such as ``"sam2.1_hiera_t"``, an official hub id
                (``"facebook/sam2.1-hiera-tiny"``: downloaded, or a clear `OfflineError` offline) or
                a `SAM2Config`.
            checkpoint: a checkpoint path or hub id.
            device: where the model runs.
            random_weights, seed: deterministic random weights, only when asked for by name
                (neither a checkpoint nor ``random_weights=True`` is an `InputError`).
            **kwargs: ``mask_threshold``, ``max_hole_area``, ``max_sprinkle_area``.
        """
        from threeam.predictor.build import build_sam2_model

        return cls(build_sam2_model(preset, checkpoint, device, random_weights, seed), **kwargs)

    @classmethod
    def from_video_predictor(cls, video_predictor: Any, **kwargs: Any) -> "ImagePredictor":
        """An image predictor on the very model object of `video_predictor` (weights are shared)."""
        model = getattr(video_predictor, "model", None)
        if model is None:
            raise InputError(f"expected a video predictor with a .model, got {type(video_predictor).__name__}")
        return cls(model, **kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        """The model's square input size S."""
        return int(self.model.image_size)

    @property
    def _bb_feat_sizes(self) -> list[tuple[int, int]]:
        """Backbone feature sizes, highest resolution first: S/4, S/8, S/16."""
        s = self.image_size
        return [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """(h, w) of a ``mask_input`` (the low-res logits size, S/4)."""
        return tuple(int(v) for v in self.model.sam_prompt_encoder.mask_input_size)

    @property
    def is_image_set(self) -> bool:
        return self._is_image_set

    @property
    def orig_hw(self) -> Optional[list[tuple[int, int]]]:
        """``[(H, W)]`` of the image(s) set, None before `set_image`."""
        return None if self._orig_hw is None else list(self._orig_hw)

    def reset_predictor(self) -> None:
        """Forget the image(s) and their features."""
        self._is_image_set = False
        self._features: Optional[dict] = None
        self._orig_hw: Optional[list[tuple[int, int]]] = None
        self._is_batch = False

    # ------------------------------------------------------------------ images
    def preprocess(self, image: Any) -> torch.Tensor:
        """The model input of one image: ``(3, S, S)`` float32 on the model's device.

        uint8 HWC -> CHW / 255, bilinear resize to ``S x S`` with antialiasing (aspect ratio not
        kept), then ImageNet normalisation.
        """
        arr = np.ascontiguousarray(_as_rgb_array(image))
        if not arr.flags.writeable:  # e.g. np.asarray of a PIL image; torch wants a writable buffer
            arr = arr.copy()
        x = torch.from_numpy(arr).to(self.device).permute(2, 0, 1).float().div(255.0)
        s = self.image_size
        x = F.interpolate(x[None], size=(s, s), mode="bilinear", align_corners=False, antialias=True)[0]
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[:, None, None]
        return (x - mean) / std

    @torch.inference_mode()
    def _encode(self, batch: torch.Tensor) -> dict:
        backbone_out = self.model.forward_image(batch)
        _, vision_feats, _, feat_sizes = self.model.prepare_backbone_features(backbone_out)
        if getattr(self.model, "directly_add_no_mem_embed", False):
            vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
        b = batch.shape[0]
        feats = [f.permute(1, 2, 0).reshape(b, -1, h, w) for f, (h, w) in zip(vision_feats, feat_sizes)]
        return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}

    def set_image(self, image: Any) -> None:
        """Encode one image: an ``(H, W, 3)`` uint8 RGB array or a PIL image."""
        self.reset_predictor()
        arr = _as_rgb_array(image)
        x = self.preprocess(arr)[None]
        self._features = self._encode(x)
        self._orig_hw = [(int(arr.shape[0]), int(arr.shape[1]))]
        self._is_image_set = True

    def set_image_batch(self, image_list: Sequence[Any]) -> None:
        """Encode several images in one backbone pass (sizes may differ); use `predict_batch` after."""
        self.reset_predictor()
        if not isinstance(image_list, (list, tuple)) or len(image_list) == 0:
            raise InputError(f"image_list must be a non-empty list of (H, W, 3) uint8 images, "
                             f"got {type(image_list).__name__}")
        arrays = [_as_rgb_array(im, name=f"image_list[{i}]") for i, im in enumerate(image_list)]
        batch = torch.stack([self.preprocess(a) for a in arrays], dim=0)
        self._features = self._encode(batch)
        self._orig_hw = [(int(a.shape[0]), int(a.shape[1])) for a in arrays]
        self._is_image_set = True
        self._is_batch = True

    def get_image_embedding(self) -> torch.Tensor:
        """The stride-16 embedding of the image(s): ``(B, C, S/16, S/16)``."""
        if not self._is_image_set:
            raise InputError("no image set: call set_image(image) before get_image_embedding()")
        return self._features["image_embed"]

    # ------------------------------------------------------------------ coordinates
    def transform_coords(self, coords: torch.Tensor, normalize: bool = False,
                         orig_hw: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """(x, y) coordinates ``(..., 2)`` -> model-input pixels: divided by (W, H) of `orig_hw`
        when `normalize`, then multiplied by S (no half-pixel shift)."""
        if normalize:
            if orig_hw is None:
                raise InputError("transform_coords(normalize=True) needs orig_hw=(H, W)")
            h, w = orig_hw
            coords = coords.clone()
            coords[..., 0] = coords[..., 0] / w
            coords[..., 1] = coords[..., 1] / h
        return coords * self.image_size

    def transform_boxes(self, boxes: torch.Tensor, normalize: bool = False,
                        orig_hw: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """XYXY boxes ``(B, 4)`` -> corner points ``(B, 2, 2)`` in model-input pixels."""
        return self.transform_coords(boxes.reshape(-1, 2, 2), normalize, orig_hw)

    def postprocess_masks(self, masks: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """Low-res logits ``(B, C, h, w)`` -> logits ``(B, C, H, W)`` at the image size.

        With ``max_hole_area`` / ``max_sprinkle_area`` > 0, small background regions (score <=
        mask_threshold) get ``mask_threshold + 10`` and small foreground regions get
        ``mask_threshold - 10`` first, both found on the input logits; then bilinear resizing
        (``align_corners=False``).
        """
        masks = masks.float()
        if self.max_hole_area > 0 or self.max_sprinkle_area > 0:
            flat = masks.flatten(0, 1).unsqueeze(1)
            out = masks
            if self.max_hole_area > 0:
                labels, areas = connected_components(flat <= self.mask_threshold)
                is_hole = ((labels > 0) & (areas <= self.max_hole_area)).reshape_as(masks)
                out = torch.where(is_hole, torch.full_like(out, self.mask_threshold + 10.0), out)
            if self.max_sprinkle_area > 0:
                labels, areas = connected_components(flat > self.mask_threshold)
                is_sprinkle = ((labels > 0) & (areas <= self.max_sprinkle_area)).reshape_as(masks)
                out = torch.where(is_sprinkle, torch.full_like(out, self.mask_threshold - 10.0), out)
            masks = out
        return F.interpolate(masks, size=tuple(orig_hw), mode="bilinear", align_corners=False)

    # ------------------------------------------------------------------ prompts
    def _prep_prompts(self, point_coords, point_labels, box, mask_input, normalize_coords: bool, img_idx: int):
        """Validate prompts and move them to the model frame.

        Returns (coords (B, N, 2) | None, labels (B, N) int32 | None, box corners (B, 2, 2) | None,
        mask_input (B, 1, h, w) | None), all on the model's device.
        """
        orig_hw = self._orig_hw[img_idx]
        device = self.device
        coords = labels = boxes = masks = None
        if (point_coords is None) != (point_labels is None):
            raise InputError("point_coords and point_labels must be given together (one label per point)")
        if point_coords is not None:
            coords = as_float_tensor(point_coords, "point_coords")
            if coords.dim() == 2:
                coords = coords[None]
            if coords.dim() != 3 or coords.shape[-1] != 2:
                raise InputError(f"point_coords must have shape (N, 2) or (B, N, 2) as (x, y), "
                                 f"got {tuple(coords.shape)}")
            lab = point_labels.detach().cpu() if isinstance(point_labels, torch.Tensor) \
                else torch.as_tensor(np.asarray(point_labels))
            if lab.dim() == 1:
                lab = lab[None]
            if tuple(lab.shape) != tuple(coords.shape[:2]):
                raise InputError(f"got point_coords of shape {tuple(coords.shape)} but point_labels of shape "
                                 f"{tuple(lab.shape)}; give one label per point")
            if lab.is_floating_point() and not torch.equal(lab, lab.round()):
                raise InputError(f"point_labels must be integers (1 positive, 0 negative), got {lab.tolist()}")
            lab = lab.to(torch.int32)
            if not set(lab.flatten().tolist()) <= {-1, 0, 1, 2, 3}:
                raise InputError(f"point_labels must be 1 (positive) or 0 (negative) (2/3 box corners, "
                                 f"-1 padding), got {lab.flatten().tolist()}")
            check_points(coords, "point", orig_hw, normalize_coords, area="image", pixels="image pixels")
            coords = self.transform_coords(coords.to(device), normalize=normalize_coords, orig_hw=orig_hw)
            labels = lab.to(device)
        if box is not None:
            b = as_float_tensor(box, "box")
            if b.dim() == 1:
                b = b[None]
            if b.dim() != 2 or b.shape[-1] != 4:
                raise InputError(f"box must be 4 numbers (x0, y0, x1, y1) or (B, 4), got shape {tuple(b.shape)}")
            if ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any():
                raise InputError(f"box (x0, y0, x1, y1) needs x1 >= x0 and y1 >= y0, got {b.tolist()}")
            b = check_boxes(b.reshape(-1, 2, 2), "box corner", orig_hw, normalize_coords, area="image",
                           pixels="image pixels").reshape(-1, 4)
            boxes = self.transform_boxes(b.to(device), normalize=normalize_coords, orig_hw=orig_hw)
            if coords is not None and coords.shape[0] != boxes.shape[0]:
                raise InputError(f"{boxes.shape[0]} box(es) but point prompts for {coords.shape[0]}; "
                                 f"give points (B, N, 2) with one row per box")
        if mask_input is not None:
            m = as_float_tensor(mask_input, "mask_input")
            if m.dim() == 3:
                m = m[None]
            h, w = self.mask_input_size
            if m.dim() != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != (h, w):
                raise InputError(f"mask_input must be low-res logits of shape (1, {h}, {w}) or (B, 1, {h}, {w}) "
                                 f"(the third output of predict), got {tuple(m.shape)}")
            n_prompts = coords.shape[0] if coords is not None else (boxes.shape[0] if boxes is not None else None)
            if n_prompts is not None and m.shape[0] not in (1, n_prompts):
                raise InputError(f"mask_input has batch {m.shape[0]} but there are {n_prompts} prompts")
            masks = m.to(device)
        return coords, labels, boxes, masks

    def _check_ready(self, batch: bool) -> None:
        if not self._is_image_set:
            what = "set_image_batch(images) before predict_batch()" if batch else "set_image(image) before predict()"
            raise InputError(f"no image set: call {what}")
        if batch and not self._is_batch:
            raise InputError("predict_batch() needs set_image_batch(images); after set_image(image) use predict()")
        if not batch and self._is_batch:
            raise InputError("predict() works on one image: after set_image_batch(images) use predict_batch()")

    @staticmethod
    def _check_flags(multimask_output: Any, return_logits: Any, normalize_coords: Any) -> None:
        for name, value in (("multimask_output", multimask_output), ("return_logits", return_logits),
                            ("normalize_coords", normalize_coords)):
            if not isinstance(value, (bool, np.bool_)):
                raise InputError(f"{name} must be True or False, got {value!r}")

    # ------------------------------------------------------------------ prediction
    def predict(self, point_coords: Any = None, point_labels: Any = None, box: Any = None, mask_input: Any = None,
                multimask_output: bool = True, return_logits: bool = False, normalize_coords: bool = True
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts on the image of `set_image`.

        Args:
            point_coords: ``(N, 2)`` (x, y) in image pixels (in [0, 1] when not
                ``normalize_coords``), or ``(B, N, 2)`` for B prompts at once.
            point_labels: ``(N,)`` or ``(B, N)``: 1 foreground, 0 background.
            box: ``(4,)`` XYXY, or ``(B, 4)`` for B prompts (corners go before the clicks).
            mask_input: low-res logits ``(1, S/4, S/4)`` (or ``(B, 1, S/4, S/4)``), e.g. the best
                mask of a previous call.
            multimask_output: three masks per prompt; else one (token 0, or the best multimask
                output when token 0 is unstable and the model has the dynamic fallback).
            return_logits: masks as logits instead of thresholded.
            normalize_coords: coordinates are pixels of the image (else already in [0, 1]).

        Returns:
            ``masks`` float32 ``(C, H, W)`` (0/1 unless ``return_logits``), ``iou_predictions``
            ``(C,)``, ``low_res_masks`` ``(C, S/4, S/4)`` logits clamped to [-32, 32]; C is 3 or 1.
            With B > 1 prompts every output keeps a leading B.
        """
        self._check_ready(batch=False)
        self._check_flags(multimask_output, return_logits, normalize_coords)
        coords, labels, boxes, masks_in = self._prep_prompts(point_coords, point_labels, box, mask_input,
                                                             normalize_coords, img_idx=0)
        masks, ious, low_res = self.predict_torch(coords, labels, boxes, masks_in, multimask_output,
                                                  return_logits=return_logits, img_idx=0)
        return self._to_numpy(masks), self._to_numpy(ious), self._to_numpy(low_res)

    def predict_batch(self, point_coords_batch: Optional[Sequence[Any]] = None,
                      point_labels_batch: Optional[Sequence[Any]] = None, box_batch: Optional[Sequence[Any]] = None,
                      mask_input_batch: Optional[Sequence[Any]] = None, multimask_output: bool = True,
                      return_logits: bool = False, normalize_coords: bool = True
                      ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """`predict` on every image of `set_image_batch`: each ``*_batch`` argument is None or a list
        with one entry (possibly None) per image. Returns three lists (masks, ious, low-res logits)."""
        self._check_ready(batch=True)
        self._check_flags(multimask_output, return_logits, normalize_coords)
        n = len(self._orig_hw)
        args = {"point_coords_batch": point_coords_batch, "point_labels_batch": point_labels_batch,
                "box_batch": box_batch, "mask_input_batch": mask_input_batch}
        for name, value in args.items():
            if value is not None and (not isinstance(value, (list, tuple)) or len(value) != n):
                got = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
                raise InputError(f"{name} must be a list with one entry per image ({n}), got {got}")
        all_masks, all_ious, all_low = [], [], []
        for i in range(n):
            pick = {k: (None if v is None else v[i]) for k, v in args.items()}
            coords, labels, boxes, masks_in = self._prep_prompts(
                pick["point_coords_batch"], pick["point_labels_batch"], pick["box_batch"],
                pick["mask_input_batch"], normalize_coords, img_idx=i)
            masks, ious, low_res = self.predict_torch(coords, labels, boxes, masks_in, multimask_output,
                                                      return_logits=return_logits, img_idx=i)
            all_masks.append(self._to_numpy(masks))
            all_ious.append(self._to_numpy(ious))
            all_low.append(self._to_numpy(low_res))
        return all_masks, all_ious, all_low

    @staticmethod
    def _to_numpy(t: torch.Tensor) -> np.ndarray:
        t = t.float().cpu()
        return (t[0] if t.shape[0] == 1 else t).numpy()

    @torch.inference_mode()
    def predict_torch(self, point_coords: Optional[torch.Tensor], point_labels: Optional[torch.Tensor],
                      boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
                      multimask_output: bool = True, return_logits: bool = False, img_idx: int = -1
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The tensor-level prediction (the official ``_predict``), without input checks.

        Args:
            point_coords: ``(B, N, 2)`` in model-input pixels (see `transform_coords`), or None.
            point_labels: ``(B, N)`` int, or None.
            boxes: ``(B, 4)`` or ``(B, 2, 2)`` in model-input pixels, or None.
            mask_input: ``(B, 1, S/4, S/4)`` logits, or None.
            img_idx: which image of the batch (-1: the last, i.e. the only one after `set_image`).

        Returns:
            masks ``(B, C, H, W)`` (bool, or float logits with ``return_logits``), iou predictions
            ``(B, C)``, low-res logits ``(B, C, S/4, S/4)`` clamped to [-32, 32].
        """
        if not self._is_image_set:
            raise InputError("no image set: call set_image(image) before predicting")
        points = None if point_coords is None else (point_coords, point_labels)
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int32, device=corners.device).repeat(corners.shape[0], 1)
            if points is not None:
                points = (torch.cat([corners, points[0]], dim=1),
                          torch.cat([corner_labels, points[1].to(torch.int32)], dim=1))
            else:
                points = (corners, corner_labels)
        sparse, dense = self.model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
        image_embed = self._features["image_embed"][img_idx].unsqueeze(0)
        high_res = [f[img_idx].unsqueeze(0) for f in self._features["high_res_feats"]]
        low_res_masks, ious, _, _ = self.model.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=sparse.shape[0] > 1,
            high_res_features=high_res or None,
        )
        masks = self.postprocess_masks(low_res_masks, self._orig_hw[img_idx])
        low_res_masks = torch.clamp(low_res_masks.float(), -LOW_RES_CLAMP, LOW_RES_CLAMP)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, ious, low_res_masks

    _predict = predict_torch  # the official private name (the mask generator's entry point)


SAM2ImagePredictor = ImagePredictor
