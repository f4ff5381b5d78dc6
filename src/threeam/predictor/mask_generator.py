"""SAM 2 automatic mask generator (the official ``SAM2AutomaticMaskGenerator``).

    generator = AutomaticMaskGenerator(model)              # a SAM2Base, ImagePredictor or VideoPredictor
    records = generator.generate(image)                     # (H, W, 3) uint8 RGB

Each record is a dict: ``segmentation`` (``(H, W)`` bool array, or an RLE dict with
``output_mode="uncompressed_rle"`` / ``"coco_rle"``), ``area`` (int pixels), ``bbox`` (XYWH floats;
W = last minus first foreground column), ``predicted_iou``, ``point_coords`` (``[[x, y]]``, the
click that made the mask), ``stability_score``, ``crop_box`` (XYWH floats).

Algorithm (as the official): for the whole image and, with ``crop_n_layers`` > 0, for overlapping
crops, the image (crop) is encoded once and a grid of single positive clicks is run through the
decoder in batches of ``points_per_batch``; with ``use_m2m`` each candidate is predicted once more
with its own low-res logits as mask prompt. Candidates are kept when ``predicted_iou >
pred_iou_thresh`` and ``stability_score >= stability_score_thresh`` (each filter only when its
threshold is > 0). Masks touching an inner crop edge (20 px) are dropped, duplicates within a crop are
removed by box NMS on predicted IoU (``box_nms_thresh``) and across crops by box NMS preferring
smaller crops (``crop_nms_thresh``). Records come in NMS order.

``min_mask_region_area`` (the one documented difference): the official hands it to its image
predictor as ``max_hole_area`` and ``max_sprinkle_area`` (small holes/specks of the *low-res*
logits, in low-res pixels) and silently skips that step without its CUDA extension, so on most
installs it changes nothing. Here it always works (CPU connected components). With
``small_region_mode="full_res"`` the SAM 1 post-processing runs instead: holes and islands below
the area (full-resolution pixels) are removed from the final masks, then NMS prefers unchanged masks.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from threeam.errors import InputError
from threeam.presets import preset_functions
from threeam.predictor.amg_utils import (
    MaskData,
    area_from_rle,
    batch_iterator,
    batched_mask_to_box,
    box_area,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    calculate_stability_score,
    coco_encode_rle,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle,
    nms,
    remove_small_regions,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from threeam.predictor.image_predictor import ImagePredictor, _as_rgb_array

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
SMALL_REGION_MODES = ("low_res", "full_res")


@dataclass
class MaskGeneratorConfig:
    """Parameters of `AutomaticMaskGenerator`; the defaults are the official ones.

    ``small_region_mode`` is ours: where ``min_mask_region_area`` acts (``"low_res"``: on the
    decoder's low-res logits, as the official with its CUDA extension; ``"full_res"``: on the final
    masks, as SAM 1).
    """

    points_per_side: Optional[int] = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: Optional[list] = None
    min_mask_region_area: float = 0
    output_mode: str = "binary_mask"
    use_m2m: bool = False
    multimask_output: bool = True
    small_region_mode: str = "low_res"

    def as_kwargs(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


MASK_GENERATOR_PRESETS: dict[str, MaskGeneratorConfig] = {
    # the official defaults
    "default": MaskGeneratorConfig(),
    # the denser setting of the official notebook (also used by SAM2Object), for large images
    "notebook_dense": MaskGeneratorConfig(points_per_side=64, points_per_batch=128, pred_iou_thresh=0.7,
                                          stability_score_thresh=0.92, stability_score_offset=0.7,
                                          crop_n_layers=1, box_nms_thresh=0.7, crop_n_points_downscale_factor=2,
                                          min_mask_region_area=25, use_m2m=True),
}


get_mask_generator_config, mask_generator_presets = preset_functions(MASK_GENERATOR_PRESETS, "mask_generator",
                                                                     "mask generator", default="default")


def _real(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InputError(f"{name} must lie in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}], "
                         f"got {value!r}")
    return float(value)


def _int(name: str, value: Any, lo: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < lo:
        raise InputError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _model_of(model_or_predictor: Any) -> torch.nn.Module:
    """The SAM 2 model behind a model, an `ImagePredictor` or a video predictor (shared, not copied)."""
    if isinstance(model_or_predictor, torch.nn.Module):
        return model_or_predictor
    inner = getattr(model_or_predictor, "model", None)  # ImagePredictor / VideoPredictor / 3AM predictor
    return inner if isinstance(inner, torch.nn.Module) else model_or_predictor


class AutomaticMaskGenerator:
    """Masks for everything in an image, from a grid of single-click prompts.

    Args:
        model_or_predictor: a `SAM2Base`, an `ImagePredictor` or a `VideoPredictor` (its model is
            used; the generator keeps its own image predictor state, so the given predictor's image
            and sessions are untouched).
        points_per_side: grid points per side of the image (``n*n`` clicks) for crop layer 0; None
            when ``point_grids`` is given (exactly one of the two).
        points_per_batch: clicks decoded together (memory vs speed).
        pred_iou_thresh: keep masks with predicted IoU above this (0 disables the filter).
        stability_score_thresh: keep masks with stability at least this (0 disables the filter).
        stability_score_offset: the stability score is the IoU of the masks thresholded at
            ``mask_threshold +- offset``.
        mask_threshold: logit threshold of the masks.
        box_nms_thresh: box IoU above which a lower-IoU mask of the same crop is dropped.
        crop_n_layers: extra crop layers; layer i has ``2^i x 2^i`` crops.
        crop_nms_thresh: box IoU above which masks from different crops are merged (smaller crop wins).
        crop_overlap_ratio: overlap of neighbouring crops in layer 1, as a fraction of the short side.
        crop_n_points_downscale_factor: layer i uses ``points_per_side / factor^i`` points per side.
        point_grids: explicit normalised grids ``[(N_i, 2) in [0, 1]]``, one per crop layer.
        min_mask_region_area: remove holes and specks up to this area (see the module docstring).
        output_mode: ``"binary_mask"``, ``"uncompressed_rle"`` or ``"coco_rle"``.
        use_m2m: one refinement pass per candidate with its own low-res mask as prompt.
        multimask_output: three candidates per click (else one).
        small_region_mode: ``"low_res"`` (default, the official place) or ``"full_res"`` (SAM 1).
    """

    def __init__(self, model_or_predictor: Any, points_per_side: Optional[int] = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.8, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, mask_threshold: float = 0.0, box_nms_thresh: float = 0.7,
                 crop_n_layers: int = 0, crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: Optional[Sequence[np.ndarray]] = None,
                 min_mask_region_area: float = 0, output_mode: str = "binary_mask", use_m2m: bool = False,
                 multimask_output: bool = True, small_region_mode: str = "low_res", **kwargs: Any) -> None:
        if kwargs:
            valid = [f.name for f in dataclasses.fields(MaskGeneratorConfig)]
            raise InputError(f"unknown mask generator option(s) {sorted(kwargs)}; valid: {valid}")
        if (points_per_side is None) == (point_grids is None):
            raise InputError("give exactly one of points_per_side and point_grids "
                             f"(got points_per_side={points_per_side!r} and "
                             f"point_grids={'None' if point_grids is None else 'a list'})")
        self.crop_n_layers = _int("crop_n_layers", crop_n_layers, 0)
        self.crop_n_points_downscale_factor = _int("crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1)
        if points_per_side is not None:
            points_per_side = _int("points_per_side", points_per_side, 1)
            self.point_grids = build_all_layer_point_grids(points_per_side, self.crop_n_layers,
                                                           self.crop_n_points_downscale_factor)
        else:
            self.point_grids = self._check_grids(point_grids, self.crop_n_layers)
        self.points_per_side = points_per_side
        self.points_per_batch = _int("points_per_batch", points_per_batch, 1)
        self.pred_iou_thresh = _real("pred_iou_thresh", pred_iou_thresh)
        self.stability_score_thresh = _real("stability_score_thresh", stability_score_thresh)
        self.stability_score_offset = _real("stability_score_offset", stability_score_offset, lo=0.0)
        self.mask_threshold = _real("mask_threshold", mask_threshold)
        self.box_nms_thresh = _real("box_nms_thresh", box_nms_thresh, 0.0, 1.0)
        self.crop_nms_thresh = _real("crop_nms_thresh", crop_nms_thresh, 0.0, 1.0)
        self.crop_overlap_ratio = _real("crop_overlap_ratio", crop_overlap_ratio, 0.0, 1.0)
        self.min_mask_region_area = _real("min_mask_region_area", min_mask_region_area, lo=0.0)
        if output_mode not in OUTPUT_MODES:
            raise InputError(f"unknown output_mode {output_mode!r}; valid: {list(OUTPUT_MODES)}")
        if output_mode == "coco_rle":
            try:
                import pycocotools.mask  # noqa: F401
            except ImportError as exc:  # pragma: no cover - pycocotools is a dependency
                raise InputError("output_mode='coco_rle' needs pycocotools (pip install pycocotools)") from exc
        self.output_mode = output_mode
        self.use_m2m = _bool("use_m2m", use_m2m)
        self.multimask_output = _bool("multimask_output", multimask_output)
        if small_region_mode not in SMALL_REGION_MODES:
            raise InputError(f"unknown small_region_mode {small_region_mode!r}; valid: {list(SMALL_REGION_MODES)}")
        self.small_region_mode = small_region_mode

        low_res_area = self.min_mask_region_area if small_region_mode == "low_res" else 0.0
        self.predictor = ImagePredictor(_model_of(model_or_predictor), max_hole_area=low_res_area,
                                        max_sprinkle_area=low_res_area)

    @staticmethod
    def _check_grids(point_grids: Any, crop_n_layers: int) -> list[np.ndarray]:
        if not isinstance(point_grids, (list, tuple)) or len(point_grids) == 0:
            raise InputError(f"point_grids must be a list of (N, 2) arrays, one per crop layer, "
                             f"got {type(point_grids).__name__}")
        if len(point_grids) < crop_n_layers + 1:
            raise InputError(f"point_grids has {len(point_grids)} grid(s) but crop_n_layers={crop_n_layers} "
                             f"needs {crop_n_layers + 1} (one per layer)")
        grids = []
        for i, g in enumerate(point_grids):
            try:
                arr = np.asarray(g, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError(f"point_grids[{i}] must be numbers, got {g!r}") from exc
            if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
                raise InputError(f"point_grids[{i}] must have shape (N, 2) with N >= 1, got {arr.shape}")
            if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
                raise InputError(f"point_grids[{i}] must be normalised (x, y) in [0, 1]")
            grids.append(arr)
        return grids

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, model_or_predictor: Any, config: MaskGeneratorConfig | str) -> "AutomaticMaskGenerator":
        """A generator from a `MaskGeneratorConfig` or a preset name (see `MASK_GENERATOR_PRESETS`)."""
        if isinstance(config, str):
            config = get_mask_generator_config(config)
        if not isinstance(config, MaskGeneratorConfig):
            raise InputError(f"config must be a MaskGeneratorConfig or a preset name, got {type(config).__name__}")
        return cls(model_or_predictor, **config.as_kwargs())

    @classmethod
    def from_pretrained(cls, preset: Any = "sam2.1_hiera_l", checkpoint: Any = None,
                        device: str | torch.device = "cpu", random_weights: bool = False, seed: int = 0,
                        **kwargs: Any) -> "AutomaticMaskGenerator":
        """Build the SAM 2 model (`threeam.predictor.build.build_sam2_model`, the one builder: a
        checkpoint, a hub id as `preset` (downloaded) or ``random_weights=True`` by name; neither is
        an `InputError`) and a generator on it; ``kwargs`` are the generator's parameters."""
        from threeam.predictor.build import build_sam2_model

        return cls(build_sam2_model(preset, checkpoint, device, random_weights, seed), **kwargs)

    @property
    def model(self) -> torch.nn.Module:
        return self.predictor.model

    # ------------------------------------------------------------------ generation
    @torch.inference_mode()
    def generate(self, image: Any) -> list[dict]:
        """All masks of an ``(H, W, 3)`` uint8 RGB image (or a PIL image): a list of records
        (see the module docstring), in the official output order."""
        arr = _as_rgb_array(image)
        data = self._generate_masks(arr)
        if self.small_region_mode == "full_res" and self.min_mask_region_area > 0:
            data = self.postprocess_small_regions(data, self.min_mask_region_area,
                                                  max(self.box_nms_thresh, self.crop_nms_thresh))
        rles = data["rles"]
        if self.output_mode == "coco_rle":
            segmentations = [coco_encode_rle(r) for r in rles]
        elif self.output_mode == "binary_mask":
            segmentations = [rle_to_mask(r) for r in rles]
        else:
            segmentations = rles
        boxes = data["boxes"].float().cpu().numpy()
        crop_boxes = data["crop_boxes"].float().cpu().numpy()
        points = data["points"].float().cpu().numpy()
        ious = data["iou_preds"].float().cpu().numpy()
        stability = data["stability_score"].float().cpu().numpy()
        records = []
        for i, seg in enumerate(segmentations):
            records.append({
                "segmentation": seg,
                "area": area_from_rle(rles[i]),
                "bbox": box_xyxy_to_xywh(boxes[i]).tolist(),
                "predicted_iou": float(ious[i]),
                "point_coords": [points[i].tolist()],
                "stability_score": float(stability[i]),
                "crop_box": box_xyxy_to_xywh(crop_boxes[i]).tolist(),
            })
        return records

    def _generate_masks(self, image: np.ndarray) -> MaskData:
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        data = MaskData()
        for crop_box, layer_idx in zip(crop_boxes, layer_idxs):
            data.cat(self._process_crop(image, crop_box, layer_idx, orig_size))
        if len(crop_boxes) > 1 and len(data) > 0:
            scores = 1.0 / box_area(data["crop_boxes"]).to(torch.float32)  # smaller crops first
            keep = nms(data["boxes"].float(), scores, self.crop_nms_thresh)
            data.filter(keep)
        return data

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer_idx: int,
                      orig_size: tuple[int, int]) -> MaskData:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1, :]
        crop_size = crop.shape[:2]
        self.predictor.set_image(crop)
        points_scale = np.array(crop_size, dtype=np.float64)[None, ::-1]  # (w, h)
        points_for_image = self.point_grids[layer_idx] * points_scale
        data = MaskData()
        for (points,) in batch_iterator(self.points_per_batch, points_for_image):
            data.cat(self._process_batch(points, crop_size, crop_box, orig_size))
        self.predictor.reset_predictor()

        keep = nms(data["boxes"].float(), data["iou_preds"], self.box_nms_thresh)
        data.filter(keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor([crop_box], dtype=torch.int64).repeat(len(data["rles"]), 1)
        return data

    def _process_batch(self, points: np.ndarray, im_size: tuple[int, int], crop_box: list[int],
                       orig_size: tuple[int, int]) -> MaskData:
        orig_h, orig_w = orig_size
        p = self.predictor
        pts = torch.as_tensor(points, dtype=torch.float32, device=p.device)
        in_points = p.transform_coords(pts, normalize=True, orig_hw=im_size)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int32, device=in_points.device)
        masks, iou_preds, low_res = p.predict_torch(in_points[:, None, :], in_labels[:, None],
                                                    multimask_output=self.multimask_output, return_logits=True)
        n_per_point = masks.shape[1]
        data = MaskData(masks=masks.flatten(0, 1), iou_preds=iou_preds.flatten(0, 1),
                        points=pts.repeat_interleave(n_per_point, dim=0))
        low_res = low_res.flatten(0, 1)
        del masks

        if self.use_m2m:
            data["masks"], data["iou_preds"] = self._refine_with_m2m(data["points"], low_res, im_size)
        del low_res

        if self.pred_iou_thresh > 0.0:
            data.filter(data["iou_preds"] > self.pred_iou_thresh)
        data["stability_score"] = calculate_stability_score(data["masks"], self.mask_threshold,
                                                            self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)

        binary = data["masks"] > self.mask_threshold
        del data["masks"]
        data["boxes"] = batched_mask_to_box(binary)
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not bool(keep.all()):
            data.filter(keep)
            binary = binary[keep]
        data["rles"] = mask_to_rle(uncrop_masks(binary, crop_box, orig_h, orig_w))
        return data

    def _refine_with_m2m(self, points: torch.Tensor, low_res_masks: torch.Tensor, im_size: tuple[int, int]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-predict each candidate (single-mask output) with its click and its own low-res logits."""
        p = self.predictor
        in_points = p.transform_coords(points, normalize=True, orig_hw=im_size)
        labels = torch.ones(in_points.shape[0], dtype=torch.int32, device=in_points.device)
        new_masks, new_ious = [], []
        for cur_points, cur_labels, cur_low in batch_iterator(self.points_per_batch, in_points, labels,
                                                              low_res_masks):
            masks, ious, _ = p.predict_torch(cur_points[:, None, :], cur_labels[:, None],
                                             mask_input=cur_low[:, None, :, :], multimask_output=False,
                                             return_logits=True)
            new_masks.append(masks[:, 0])
            new_ious.append(ious[:, 0])
        return torch.cat(new_masks, dim=0), torch.cat(new_ious, dim=0)

    # ------------------------------------------------------------------ SAM 1 post-processing
    @staticmethod
    def postprocess_small_regions(data: MaskData, min_area: float, nms_thresh: float) -> MaskData:
        """Fill holes and remove islands below `min_area` pixels in every mask (8-connected), then
        box NMS at `nms_thresh` preferring masks that did not change (SAM 1's post-processing).

        Edits and returns `data` (needs the ``rles`` and ``boxes`` columns).
        """
        if len(data["rles"]) == 0:
            return data
        new_masks, scores = [], []
        for rle in data["rles"]:
            mask = rle_to_mask(rle)
            mask, changed_holes = remove_small_regions(mask, min_area, mode="holes")
            mask, changed_islands = remove_small_regions(mask, min_area, mode="islands")
            new_masks.append(torch.from_numpy(mask))
            scores.append(0.0 if (changed_holes or changed_islands) else 1.0)
        masks = torch.stack(new_masks, dim=0)
        boxes = batched_mask_to_box(masks)
        keep = nms(boxes.float(), torch.tensor(scores), nms_thresh)
        rles = list(data["rles"])
        new_boxes = data["boxes"].clone()
        for i in keep.tolist():
            if scores[i] == 0.0:
                rles[i] = mask_to_rle(masks[i][None])[0]
                new_boxes[i] = boxes[i].to(new_boxes.device)
        data["rles"] = rles
        data["boxes"] = new_boxes
        data.filter(keep)
        return data


SAM2AutomaticMaskGenerator = AutomaticMaskGenerator
