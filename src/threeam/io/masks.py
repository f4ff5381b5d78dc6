"""Mask file formats: DAVIS palette PNGs, per-object masks <-> id maps, COCO RLE and track JSON.

Conventions
-----------
* An **id map** is an ``(H, W)`` integer array: 0 is background, ``k > 0`` is object ``k``.
  Palette PNGs hold ids 0..255 (DAVIS uses 255 as "void" in some sets; it is read as-is).
* **Per-object masks** are a mapping ``{object_id: (H, W) bool}``.
* **RLE** is COCO's compressed run-length encoding (column-major), as a JSON-friendly dict
  ``{"size": [H, W], "counts": str}``.

Track-results JSON schema (written by :func:`write_rle_json`, read by :func:`read_rle_json`)::

    {
      "format": "threeam-tracks",
      "version": 1,
      "height": H, "width": W,            # frame size shared by every mask
      "frames": [                          # one entry per frame that has any object, sorted
        {"frame": 0,                       # frame index (int >= 0)
         "objects": {                      # keys are object ids as strings (JSON keys)
            "1": {"rle": {"size": [H, W], "counts": "..."}, "score": 0.93},
            "2": {"rle": {...}}            # "score" is optional
         }},
        ...
      ]
    }

In memory, tracks are ``{frame_index: {object_id: mask}}`` where ``mask`` is an ``(H, W)`` bool
array, or a ``(mask, score)`` tuple when a score is known. :func:`read_rle_json` returns
``{frame_index: {object_id: TrackMask}}``.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from threeam.errors import InputError
from threeam.io.atomic import atomic_path, atomic_write_text
from threeam.io.jsonio import read_json

__all__ = [
    "davis_palette",
    "read_palette_png",
    "write_palette_png",
    "masks_to_id_map",
    "id_map_to_masks",
    "encode_rle",
    "decode_rle",
    "TrackMask",
    "write_rle_json",
    "TracksWriter",
    "read_rle_json",
]

TRACKS_FORMAT = "threeam-tracks"
TRACKS_VERSION = 1


def davis_palette() -> np.ndarray:
    """The standard DAVIS / PASCAL VOC colour map.

    Returns:
        ``(256, 3)`` uint8; row ``k`` is the RGB colour of id ``k`` (0 = black, 1 = (128, 0, 0),
        2 = (0, 128, 0), 3 = (128, 128, 0), 4 = (0, 0, 128), ...). Each id's three lowest bits
        feed the top bit of R, G and B respectively, the next three bits the next lower bit, etc.
    """
    ids = np.arange(256, dtype=np.int64)
    pal = np.zeros((256, 3), dtype=np.int64)
    c = ids.copy()
    for shift in range(7, -1, -1):
        for ch in range(3):
            pal[:, ch] |= ((c >> ch) & 1) << shift
        c >>= 3
    return pal.astype(np.uint8)


def _check_id_map(ids: np.ndarray, *, name: str = "ids", max_id: int | None = 255) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise InputError(f"{name} must be a 2-D (H, W) id map, got shape {tuple(ids.shape)}")
    if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"{name} must have an integer dtype (uint8/int), got {ids.dtype}")
    if ids.size and int(ids.min()) < 0:
        raise InputError(f"{name} holds negative object id {int(ids.min())}; ids must be >= 0")
    if max_id is not None and ids.size and int(ids.max()) > max_id:
        raise InputError(f"{name} holds object id {int(ids.max())}; a palette PNG holds ids 0..{max_id}")
    return ids


def read_palette_png(path: str | os.PathLike) -> np.ndarray:
    """Read a DAVIS-style palette (mode ``P``) PNG annotation.

    Returns:
        ``(H, W)`` uint8 object ids (palette indices). A greyscale ``L`` image is accepted and its
        values taken as ids. RGB/RGBA annotations raise :class:`InputError` (colours are ambiguous).
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"annotation file not found: {path}")
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("P", "L"):
                arr = np.array(im, dtype=np.uint8)
            elif mode == "1":
                arr = np.array(im, dtype=np.uint8)
            else:
                raise InputError(
                    f"{path} is a {mode} image, not an indexed-palette (mode P) annotation; "
                    "convert it to a palette PNG whose indices are object ids")
    except InputError:
        raise
    except Exception as e:  # PIL raises many types on corrupt files
        raise InputError(f"cannot read annotation {path}: {e}") from e
    return arr


def _refuse_overwrite(path: str | os.PathLike, overwrite: bool) -> None:
    if not overwrite and Path(path).exists():
        raise InputError(f"{path} already exists (pass overwrite=True to replace it)")


def write_palette_png(path: str | os.PathLike, ids: np.ndarray,
                      palette: np.ndarray | None = None, *, overwrite: bool = True) -> None:
    """Write an id map as an indexed PNG with the DAVIS palette, atomically.

    Args:
        path: target ``.png`` file (parent folders are created).
        ids: ``(H, W)`` integer array with values in 0..255.
        palette: optional ``(256, 3)`` uint8 palette; defaults to :func:`davis_palette`.
        overwrite: if False, an existing ``path`` raises :class:`InputError`.
    """
    from PIL import Image

    _refuse_overwrite(path, overwrite)
    ids = _check_id_map(ids)
    pal = davis_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    if pal.shape != (256, 3):
        raise InputError(f"palette must have shape (256, 3), got {tuple(pal.shape)}")
    im = Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8))  # mode "L"
    im.putpalette(pal.reshape(-1).tolist())  # turns it into mode "P" with the palette
    with atomic_path(path, suffix=".png") as tmp:
        im.save(tmp, format="PNG")


def _check_bool_mask(mask: np.ndarray, *, name: str = "mask",
                     shape: tuple[int, int] | None = None) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"{name} must be a 2-D (H, W) mask, got shape {tuple(mask.shape)}")
    if mask.dtype != bool:
        if np.issubdtype(mask.dtype, np.integer) and mask.size and not np.isin(np.unique(mask), (0, 1)).all():
            raise InputError(f"{name} must be boolean (or 0/1 integers), got values outside {{0, 1}}")
        if not np.issubdtype(mask.dtype, np.integer):
            raise InputError(f"{name} must be boolean (or 0/1 integers), got dtype {mask.dtype}")
        mask = mask.astype(bool)
    if shape is not None and mask.shape != tuple(shape):
        raise InputError(f"{name} has shape {tuple(mask.shape)}, expected {tuple(shape)}")
    return mask


def masks_to_id_map(masks: Mapping[int, np.ndarray], scores: Mapping[int, float] | None = None,
                    shape: tuple[int, int] | None = None, dtype=np.uint8) -> np.ndarray:
    """Merge per-object boolean masks into one id map.

    Overlap rule: where masks overlap, the object with the **higher score** wins; without scores
    (or on equal scores) the object that comes **later in iteration order** of ``masks`` wins
    (i.e. objects are painted in order, later over earlier; with scores, painted in ascending score).

    Args:
        masks: ``{object_id: (H, W) bool}``; ids must be in 1..255 for ``uint8`` output.
        scores: optional ``{object_id: float}``; missing ids count as ``-inf``.
        shape: ``(H, W)``, required only when ``masks`` is empty.
        dtype: output integer dtype (default uint8).

    Returns:
        ``(H, W)`` id map of ``dtype``, 0 where no object.
    """
    max_id = int(np.iinfo(dtype).max)
    if not masks:
        if shape is None:
            raise InputError("masks_to_id_map needs `shape` when no masks are given")
        return np.zeros(tuple(shape), dtype=dtype)
    items = list(masks.items())
    first_shape = shape if shape is not None else np.asarray(items[0][1]).shape
    order = list(range(len(items)))
    if scores is not None:
        order.sort(key=lambda i: (float(scores.get(items[i][0], -np.inf)), i))
    out = np.zeros(tuple(first_shape), dtype=dtype)
    for i in order:
        obj_id, m = items[i]
        if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)):
            raise InputError(f"object ids must be integers, got {obj_id!r}")
        if not 1 <= int(obj_id) <= max_id:
            raise InputError(f"object id {obj_id} out of range 1..{max_id}")
        m = _check_bool_mask(m, name=f"mask of object {obj_id}", shape=tuple(first_shape))
        out[m] = int(obj_id)
    return out


def id_map_to_masks(ids: np.ndarray, object_ids: Sequence[int] | None = None) -> dict[int, np.ndarray]:
    """Split an id map into per-object boolean masks.

    Args:
        ids: ``(H, W)`` integer id map.
        object_ids: ids to extract (absent ones give all-False masks); default: every non-zero id
            present, ascending.

    Returns:
        ``{object_id: (H, W) bool}``.
    """
    ids = _check_id_map(ids, max_id=None)
    if object_ids is None:
        object_ids = [int(v) for v in np.unique(ids) if v != 0]
    return {int(k): ids == int(k) for k in object_ids}


def encode_rle(mask: np.ndarray) -> dict:
    """COCO-compressed RLE of one mask.

    Args:
        mask: ``(H, W)`` bool (or 0/1 integer) array.

    Returns:
        ``{"size": [H, W], "counts": str}`` (JSON-serialisable).
    """
    from pycocotools import mask as mask_utils

    mask = _check_bool_mask(mask)
    with warnings.catch_warnings():  # pycocotools' numpy-2 __array__ DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def decode_rle(rle: Mapping) -> np.ndarray:
    """Decode a COCO RLE dict (compressed string/bytes counts, or uncompressed list counts).

    Returns:
        ``(H, W)`` bool mask.
    """
    from pycocotools import mask as mask_utils

    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise InputError(f"an RLE must be a dict with 'size' and 'counts', got {type(rle).__name__}")
    size = rle["size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(s, (int, np.integer)) and s >= 0 for s in size)):
        raise InputError(f"RLE 'size' must be [H, W] non-negative integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    counts = rle["counts"]
    try:
        with warnings.catch_warnings():  # pycocotools' numpy-2 __array__ DeprecationWarning
            warnings.simplefilter("ignore", DeprecationWarning)
            return _decode_checked(mask_utils, counts, h, w)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"invalid RLE: {e}") from e


def _decode_checked(mask_utils, counts, h: int, w: int) -> np.ndarray:
    """Decode validated RLE parts with pycocotools; returns ``(H, W)`` bool."""
    if isinstance(counts, list):
        if sum(int(c) for c in counts) != h * w:
            raise InputError(f"uncompressed RLE counts sum to {sum(counts)}, expected H*W = {h * w}")
        obj = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    elif isinstance(counts, (str, bytes)):
        obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise InputError(f"RLE 'counts' must be a string or list, got {type(counts).__name__}")
    return mask_utils.decode(obj).astype(bool).reshape(h, w)


@dataclass(frozen=True)
class TrackMask:
    """One object's mask on one frame: ``mask`` is ``(H, W)`` bool; ``score`` may be ``None``."""

    mask: np.ndarray
    score: float | None = None


def _split_entry(entry) -> tuple[np.ndarray, float | None]:
    if isinstance(entry, TrackMask):
        return entry.mask, entry.score
    if isinstance(entry, tuple):
        if len(entry) != 2:
            raise InputError("a track entry tuple must be (mask, score)")
        return entry[0], (None if entry[1] is None else float(entry[1]))
    return entry, None


def _frame_entry(frame, objects: Mapping, hw: tuple[int, int] | None) -> tuple[dict, tuple[int, int] | None]:
    """One checked ``{"frame": t, "objects": {...}}`` record of the tracks JSON, and the mask size."""
    if isinstance(frame, (bool, np.bool_)) or not isinstance(frame, (int, np.integer)) or frame < 0:
        raise InputError(f"frame indices must be integers >= 0, got {frame!r}")
    objs = {}
    for obj_id in sorted(objects):
        if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)):
            raise InputError(f"object ids must be integers, got {obj_id!r}")
        mask, score = _split_entry(objects[obj_id])
        mask = _check_bool_mask(mask, name=f"mask of object {obj_id} on frame {frame}", shape=hw)
        hw = mask.shape
        rec: dict = {"rle": encode_rle(mask)}
        if score is not None:
            if not np.isfinite(score):
                raise InputError(f"score of object {obj_id} on frame {frame} is not finite: {score}")
            rec["score"] = float(score)
        objs[str(int(obj_id))] = rec
    return {"frame": int(frame), "objects": objs}, hw


def _tracks_head(hw: tuple[int, int] | None) -> str:
    head = {"format": TRACKS_FORMAT, "version": TRACKS_VERSION,
            "height": None if hw is None else int(hw[0]), "width": None if hw is None else int(hw[1])}
    return json.dumps(head)[:-1] + ', "frames": ['


def write_rle_json(path: str | os.PathLike,
                   tracks: Mapping[int, Mapping[int, np.ndarray | tuple | TrackMask]],
                   *, overwrite: bool = True) -> None:
    """Write tracking results as one JSON file (schema in the module docstring), atomically.

    Args:
        path: target ``.json`` file.
        tracks: ``{frame_index: {object_id: mask | (mask, score) | TrackMask}}``; every mask is
            ``(H, W)`` bool with the same ``H, W``.
        overwrite: if False, an existing ``path`` raises :class:`InputError`.

    For a long video, :class:`TracksWriter` writes the same file one frame at a time.
    """
    _refuse_overwrite(path, overwrite)
    frames_out = []
    hw: tuple[int, int] | None = None
    for frame in sorted(tracks):
        entry, hw = _frame_entry(frame, tracks[frame], hw)
        frames_out.append(entry)
    doc = {"format": TRACKS_FORMAT, "version": TRACKS_VERSION,
           "height": None if hw is None else int(hw[0]), "width": None if hw is None else int(hw[1]),
           "frames": frames_out}
    atomic_write_text(path, json.dumps(doc))


class TracksWriter:
    """Write the file :func:`write_rle_json` writes, one frame at a time and in any frame order.

    Each frame's record is encoded as it is added and parked in an anonymous temporary file beside
    `path`; only its offset is kept in memory, so memory does not grow with the video's masks.
    :meth:`close` writes the file (frames sorted, atomically); the bytes equal
    ``write_rle_json(path, tracks)`` for the same tracks. As a context manager it closes on
    success and writes nothing on an exception.

    Args:
        path: target ``.json`` file.
        overwrite: if False, an existing ``path`` raises :class:`InputError`.
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = True):
        import tempfile

        _refuse_overwrite(path, overwrite)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._parts = tempfile.TemporaryFile(dir=self.path.parent)
        self._index: dict[int, tuple[int, int]] = {}
        self._hw: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._index)

    def add(self, frame: int, objects: Mapping[int, np.ndarray | tuple | TrackMask]) -> None:
        """Add frame `frame`'s ``{object_id: mask | (mask, score) | TrackMask}`` (once per frame)."""
        if self._parts is None:
            raise InputError("this TracksWriter is closed")
        entry, self._hw = _frame_entry(frame, objects, self._hw)
        if entry["frame"] in self._index:
            raise InputError(f"frame {entry['frame']} was already added")
        data = json.dumps(entry).encode("utf-8")
        offset = self._parts.seek(0, os.SEEK_END)
        self._parts.write(data)
        self._index[entry["frame"]] = (offset, len(data))

    def close(self) -> None:
        """Write the file and drop the temporary records."""
        if self._parts is None:
            return
        try:
            with atomic_path(self.path) as tmp, open(tmp, "wb") as out:
                out.write(_tracks_head(self._hw).encode("utf-8"))
                for i, frame in enumerate(sorted(self._index)):
                    offset, length = self._index[frame]
                    self._parts.seek(offset)
                    if i:
                        out.write(b", ")
                    out.write(self._parts.read(length))
                out.write(b"]}")
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the temporary records without writing anything."""
        if self._parts is not None:
            self._parts.close()
            self._parts = None

    def __enter__(self) -> "TracksWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def read_rle_json(path: str | os.PathLike) -> dict[int, dict[int, TrackMask]]:
    """Read a file written by :func:`write_rle_json`.

    Returns:
        ``{frame_index: {object_id: TrackMask}}``.
    """
    path = Path(path)
    doc = read_json(path, "tracks file")
    if not isinstance(doc, dict) or doc.get("format") != TRACKS_FORMAT:
        raise InputError(f"{path} is not a threeam tracks file (missing \"format\": \"{TRACKS_FORMAT}\")")
    if doc.get("version") != TRACKS_VERSION:
        raise InputError(f"{path}: unsupported tracks version {doc.get('version')!r} (expected {TRACKS_VERSION})")
    out: dict[int, dict[int, TrackMask]] = {}
    try:
        for fr in doc["frames"]:
            objs = {}
            for key, rec in fr["objects"].items():
                score = rec.get("score")
                objs[int(key)] = TrackMask(decode_rle(rec["rle"]), None if score is None else float(score))
            out[int(fr["frame"])] = objs
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: malformed tracks file: {e}") from e
    return out
