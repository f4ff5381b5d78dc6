"""A session streams its video: opening it decodes a few frames, not the video (the display
frames, the predictor's frames and the exports read frame by frame), and its results are kept
compressed (the real tiny SAM 2, random weights)."""
from __future__ import annotations

import asyncio
import io

import numpy as np
from PIL import Image

import threeam.io.frame_sources as frame_sources
from threeam.io.masks import encode_rle, read_rle_json
from threeam.serve.config import ServeConfig
from threeam.serve.idmaps import IdMaps
from threeam.serve.sessions import SessionManager

from .helpers import square_frames, write_frames

T_LONG = 40


def test_opening_a_session_decodes_a_few_frames_not_the_video(predictor, tmp_path, monkeypatch):
    frames, masks = square_frames(T_LONG)
    write_frames(tmp_path / "long", frames)
    reads: list[str] = []
    real = frame_sources.read_image
    monkeypatch.setattr(frame_sources, "read_image", lambda path: reads.append(str(path)) or real(path))

    async def run():
        m = SessionManager(predictor, ServeConfig(root=tmp_path))
        try:
            s = await m.open(tmp_path / "long")
            assert s.video.num_frames == T_LONG and (s.video.height, s.video.width) == frames.shape[1:3]
            # frame 0 for the page and for the predictor, plus at most the predictor's read-ahead
            assert len(reads) <= 2 + 16, len(reads)
            assert not any(r.endswith(f"{T_LONG - 1:05d}.png") for r in reads)
            before = len(reads)
            jpeg = await m.frame_jpeg(s, 30)
            assert reads[before:].count(str(tmp_path / "long" / "00030.png")) == 1
            shown = np.asarray(Image.open(io.BytesIO(jpeg)))
            assert np.abs(shown.astype(int) - frames[30]).mean() < 8
            await m.add_prompt(s, 10, 1, [], [], None, encode_rle(masks[10]))
            files = await m.export(s, ["rle", "mp4"])
            assert {f["name"] for f in files} == {"masks.json", "overlay.mp4"}
            tracks = read_rle_json(s.workdir / "export" / "masks.json")
            assert list(tracks) == [10] and np.array_equal(tracks[10][1].mask, s.id_maps[10] == 1)
            assert (s.id_maps[10] == 1).sum() > 0.5 * masks[10].sum()
        finally:
            await m.close_all()

    asyncio.run(run())


def test_id_maps_are_stored_compressed_and_edits_need_a_store():
    maps = IdMaps()
    m = np.zeros((480, 640), np.uint8)
    m[100:200, 50:300] = 3
    maps[5] = m
    assert np.array_equal(maps[5], m) and maps[5].dtype == np.uint8
    assert maps.nbytes < m.nbytes // 50  # a few KiB instead of 300 KiB
    snap = maps.snapshot()
    got = maps[5]
    got[got == 3] = 0
    assert (maps[5] == 3).any()  # a read array is a copy
    maps[5] = got
    assert not (maps[5] == 3).any() and (snap[5] == 3).any()
    assert sorted(maps) == [5] and 5 in maps and len(maps) == 1
