"""The inference state of a video session (what `VideoPredictor.init_state` returns).

The fields carry the official SAM 2 key names and the state also answers ``state["video_height"]``
style look-ups, so code written against the official dict keeps working. Per-object containers are
keyed by the model-side object index (0, 1, ...); `obj_id_to_idx` maps the user's ids to it.

Per-frame outputs (``output_dict_per_obj[idx]["cond_frame_outputs" | "non_cond_frame_outputs"][t]``)
are dicts with the official keys:

* ``maskmem_features``: bfloat16 ``(1, mem_dim, S/16, S/16)`` on the storage device, or None
  before the memory encoder ran (a prompted frame before propagation);
* ``maskmem_pos_enc``: list with one ``(1, mem_dim, S/16, S/16)`` tensor (one shared copy, the
  ``maskmem_pos_enc`` field);
* ``pred_masks``: float32 low-res mask logits ``(1, 1, S/4, S/4)`` on the storage device;
* ``obj_ptr``: ``(1, C)`` object pointer on the compute device;
* ``object_score_logits``: ``(1, 1)``.

Bounded state (``keep_all_outputs=False``, the default): tracked outputs that no later step can read
are dropped from ``non_cond_frame_outputs`` while propagating (see
`VideoPredictor.release_unreachable_outputs`); ``frames_tracked_per_obj`` keeps every frame.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import torch

from threeam.models.sam2.tracking import COND, NON_COND, empty_memory_bank

class _TrackedEntry(dict):
    """A read-only ``{"reverse": bool}`` shared by every frame tracked in one direction (copies are
    itself; pickles as a plain dict)."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("frames_tracked_per_obj entries are shared and read-only")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _refuse

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (dict, (dict(self),))


TRACKED = {False: _TrackedEntry(reverse=False), True: _TrackedEntry(reverse=True)}
"""The ``frames_tracked_per_obj`` entry of a frame tracked forwards / in reverse (read-only, shared)."""

if TYPE_CHECKING:  # pragma: no cover
    from threeam.predictor.three_am_predictor import ThreeAMSession

empty_output_dict = empty_memory_bank


@dataclass
class InferenceState:
    """Everything one video session holds.

    images: float32 ``(T, 3, S, S)`` normalised frames (or a lazy loader indexable the same way);
    video_height, video_width: the frame size prompts and outputs refer to;
    device: where the model runs; storage_device: where masks and memories are kept
    (the CPU with ``offload_state_to_cpu``).
    """

    images: Any
    num_frames: int
    video_height: int
    video_width: int
    device: torch.device
    storage_device: torch.device
    offload_video_to_cpu: bool = False
    offload_state_to_cpu: bool = False
    source: str = ""
    # what init_state was given (path or array; kept by reference, for readers of the originals)
    video_source: Any = None
    # prompts per object index: {frame_idx: {"point_coords": (1, P, 2), "point_labels": (1, P)}}
    point_inputs_per_obj: dict[int, dict[int, dict]] = field(default_factory=dict)
    # mask prompts per object index: {frame_idx: (1, 1, S, S) float 0/1}
    mask_inputs_per_obj: dict[int, dict[int, torch.Tensor]] = field(default_factory=dict)
    # backbone features of the most recently used frame: {frame_idx: (image, backbone_out)}
    cached_features: dict[int, tuple] = field(default_factory=dict)
    # the memory positional encoding, the same for every frame and object: [(1, mem_dim, S/16, S/16)]
    maskmem_pos_enc: Optional[list] = None
    # the 3AM per-session state (MUSt3R stream, merged-feature cache); None for plain SAM 2
    three_am: Optional["ThreeAMSession"] = None
    # final masks of frames an offline memory policy revised at the end of the last pass
    revised_outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    obj_id_to_idx: "OrderedDict[int, int]" = field(default_factory=OrderedDict)
    obj_idx_to_id: "OrderedDict[int, int]" = field(default_factory=OrderedDict)
    obj_ids: list[int] = field(default_factory=list)
    # the memory bank per object index
    output_dict_per_obj: dict[int, dict[str, dict[int, dict]]] = field(default_factory=dict)
    # outputs of prompted frames not yet merged into the bank (merged by propagate_in_video_preflight)
    temp_output_dict_per_obj: dict[int, dict[str, dict[int, dict]]] = field(default_factory=dict)
    # frames each object has been tracked on: {frame_idx: {"reverse": bool}} (the shared read-only
    # `TRACKED` entries: one per direction, not one dict per frame and object on long videos)
    frames_tracked_per_obj: dict[int, dict[int, dict]] = field(default_factory=dict)
    # tracked outputs dropped from the banks and written to the spill folder: {obj_id: {frame_idx: path}}
    spilled: dict[int, dict[int, Any]] = field(default_factory=dict)
    # this session's spill folder (created on the first spill; removed with the session)
    spill_folder: Any = None

    # dict-style access with the official key names
    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        if not hasattr(self, key):
            raise KeyError(key)
        setattr(self, key, value)

    def __contains__(self, key: str) -> bool:
        return hasattr(self, key)

    @property
    def video_size(self) -> tuple[int, int]:
        """``(video_height, video_width)``."""
        return self.video_height, self.video_width

    @property
    def num_objects(self) -> int:
        return len(self.obj_idx_to_id)

    def frame_output(self, obj_id: int, frame_idx: int) -> tuple[str, dict] | None:
        """The stored output of one object on one frame as ``(kind, out)``, kind being
        ``"cond_frame_outputs"`` (a prompted frame) or ``"non_cond_frame_outputs"`` (a tracked frame);
        None if the frame has no output for this object. Pending (not yet propagated) outputs
        are looked up first."""
        idx = self.obj_id_to_idx.get(obj_id)
        if idx is None:
            return None
        for bank in (self.temp_output_dict_per_obj[idx], self.output_dict_per_obj[idx]):
            for kind in (COND, NON_COND):
                out = bank[kind].get(frame_idx)
                if out is not None:
                    return kind, out
        return None
