"""Request bodies of the web app's HTTP API (pydantic; unknown keys and non-finite numbers refused).

Coordinates are video pixels (x to the right, y down, as `threeam track` and the predictor take
them); frame indices start at 0; object ids are 1..254 (the ids a DAVIS palette PNG can hold).
Checks that need the video (x <= width, frame < number of frames, mask size) happen in the
session and answer 400 with the allowed range; a mask's ``size`` is checked before its counts are
decoded.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_POINTS = 64
MAX_ID = 254
MAX_SIDE = 16384  # the largest --max-side the server accepts; a mask is checked against the video's size

Coord = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
FrameIndex = Annotated[int, Field(ge=0, le=10**7)]
ObjectId = Annotated[int, Field(ge=1, le=MAX_ID)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenRequest(_Strict):
    """Open a video under the served root: ``{"path": "clips/cup.mp4"}`` or a frames folder."""

    path: str = Field(min_length=1, max_length=1024)


class RLE(_Strict):
    """A COCO RLE mask: ``{"size": [H, W], "counts": "..."}`` (compressed counts string)."""

    size: tuple[Annotated[int, Field(ge=1, le=MAX_SIDE)], Annotated[int, Field(ge=1, le=MAX_SIDE)]]
    counts: str = Field(max_length=20_000_000)


class PromptRequest(_Strict):
    """One object's prompts on one frame, replacing its earlier prompts there.

    Either clicks (``points`` (x, y) with ``labels`` 1 positive / 0 negative) and/or a ``box``
    (x0, y0, x1, y1), or a ``mask`` (COCO RLE at video size). No points, no box and no mask clears
    the object's prompts on that frame.
    """

    frame: FrameIndex
    obj_id: ObjectId
    points: list[tuple[Coord, Coord]] = Field(default_factory=list, max_length=MAX_POINTS)
    labels: list[Literal[0, 1]] = Field(default_factory=list, max_length=MAX_POINTS)
    box: Optional[tuple[Coord, Coord, Coord, Coord]] = None
    mask: Optional[RLE] = None

    @model_validator(mode="after")
    def _consistent(self) -> "PromptRequest":
        if len(self.points) != len(self.labels):
            raise ValueError(f"got {len(self.points)} points but {len(self.labels)} labels; give one label per point")
        if self.mask is not None and (self.points or self.box is not None):
            raise ValueError("a mask prompt cannot be combined with points or a box")
        if self.box is not None and (self.box[2] < self.box[0] or self.box[3] < self.box[1]):
            raise ValueError(f"box (x0, y0, x1, y1) = {self.box} needs x1 >= x0 and y1 >= y0")
        return self


class ObjectFrameRequest(_Strict):
    """``{"frame": t, "obj_id": k}``: clear object k's prompts on frame t."""

    frame: FrameIndex
    obj_id: ObjectId


class ObjectRequest(_Strict):
    """``{"obj_id": k}``: remove object k from the session."""

    obj_id: ObjectId


class PropagateRequest(_Strict):
    """Track every object from ``start`` (default: the earliest prompted frame) ``forward``,
    ``backward`` or ``both``; ``max_frames`` limits how many frames each pass covers after the start."""

    direction: Literal["forward", "backward", "both"] = "both"
    start: Optional[FrameIndex] = None
    max_frames: Optional[Annotated[int, Field(ge=0, le=10**7)]] = None


class ExportRequest(_Strict):
    """Which files to write: ``png`` (DAVIS palette PNGs, zipped), ``rle`` (COCO RLE JSON), ``mp4`` (overlay)."""

    formats: list[Literal["png", "rle", "mp4"]] = Field(default_factory=lambda: ["png", "rle", "mp4"],
                                                          min_length=1, max_length=3)
