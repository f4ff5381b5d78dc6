"""`threeam.io.masks.TracksWriter`: the tracks JSON written one frame at a time, in any order, gives
the same bytes as `write_rle_json` of the whole dict; nothing is written on an error."""
from __future__ import annotations

import numpy as np
import pytest

from threeam.errors import InputError
from threeam.io.masks import TracksWriter, read_rle_json, write_rle_json


def _tracks(n=9, h=12, w=16, seed=0):
    rng = np.random.default_rng(seed)
    return {t: {oid: rng.random((h, w)) > 0.6 for oid in (1, 3)} for t in range(n)}


def test_frame_by_frame_in_any_order_equals_write_rle_json(tmp_path):
    tracks = _tracks()
    write_rle_json(tmp_path / "whole.json", tracks)
    order = [4, 5, 6, 7, 8, 3, 2, 1, 0]  # a forward pass from 4, then a backward one
    with TracksWriter(tmp_path / "parts.json") as writer:
        for t in order:
            writer.add(t, tracks[t])
        assert len(writer) == len(order)
        assert not (tmp_path / "parts.json").exists()  # written at the end only
    assert (tmp_path / "parts.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    back = read_rle_json(tmp_path / "parts.json")
    assert sorted(back) == list(range(9))
    assert all(np.array_equal(back[t][o].mask, tracks[t][o]) for t in tracks for o in tracks[t])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts.json", "whole.json"]  # no temporary file left


def test_empty_and_errors(tmp_path):
    with TracksWriter(tmp_path / "empty.json"):
        pass
    write_rle_json(tmp_path / "empty_ref.json", {})
    assert (tmp_path / "empty.json").read_bytes() == (tmp_path / "empty_ref.json").read_bytes()
    tracks = _tracks(3)
    with pytest.raises(InputError, match="already added"):
        with TracksWriter(tmp_path / "twice.json") as writer:
            writer.add(0, tracks[0])
            writer.add(0, tracks[0])
    with pytest.raises(InputError, match="expected"):
        with TracksWriter(tmp_path / "sizes.json") as writer:
            writer.add(0, tracks[0])
            writer.add(1, {1: np.zeros((5, 5), bool)})
    assert not (tmp_path / "twice.json").exists() and not (tmp_path / "sizes.json").exists()
    with pytest.raises(InputError):
        TracksWriter(tmp_path / "empty.json", overwrite=False)
    writer = TracksWriter(tmp_path / "closed.json")
    writer.close()
    with pytest.raises(InputError, match="closed"):
        writer.add(0, tracks[0])
