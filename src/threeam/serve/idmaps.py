"""A session's per-frame results, kept compressed: memory grows with the masks' outlines, not with T x H x W.

`IdMaps` is a ``{frame: id map}`` mapping. An id map is uint8 ``(H, W)``: 0 background, k object k.
Each one is stored zlib-compressed (level 1: a 1080p map of a few objects is a few KiB instead
of 2 MiB, and takes about a millisecond either way). Reading gives a fresh writable array; edit it
and store it again (``maps[t] = m``), in-place edits of a read array are not kept.
"""
from __future__ import annotations

import zlib
from collections.abc import MutableMapping
from typing import Iterator

import numpy as np


class IdMaps(MutableMapping):
    """``{frame index: uint8 (H, W) id map}`` stored compressed (see the module docstring)."""

    LEVEL = 1

    def __init__(self) -> None:
        self._data: dict[int, tuple[tuple[int, int], bytes]] = {}

    def __getitem__(self, t: int) -> np.ndarray:
        shape, blob = self._data[t]
        return np.frombuffer(zlib.decompress(blob), dtype=np.uint8).reshape(shape).copy()

    def __setitem__(self, t: int, id_map: np.ndarray) -> None:
        arr = np.ascontiguousarray(id_map, dtype=np.uint8)
        if arr.ndim != 2:
            raise ValueError(f"an id map is (H, W), got shape {arr.shape}")
        self._data[int(t)] = ((int(arr.shape[0]), int(arr.shape[1])), zlib.compress(arr.tobytes(), self.LEVEL))

    def __delitem__(self, t: int) -> None:
        del self._data[t]

    def __iter__(self) -> Iterator[int]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, t: object) -> bool:
        return t in self._data

    def clear(self) -> None:
        self._data.clear()

    def snapshot(self) -> "IdMaps":
        """A copy that later edits do not change (shares the immutable compressed bytes)."""
        out = IdMaps()
        out._data = dict(self._data)
        return out

    @property
    def nbytes(self) -> int:
        """Bytes held by the compressed maps."""
        return sum(len(blob) for _, blob in self._data.values())
