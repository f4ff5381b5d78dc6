"""Session edge cases: a mask RLE's size is checked before it is decoded, a refused upload leaves
no files, uploaded frames keep the order of the numbers in their names, and ``propagate {}``
starts at the earliest prompted frame (the real tiny SAM 2, random weights)."""
from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from threeam.errors import InputError
from threeam.io.masks import encode_rle
from threeam.serve import sessions as sessions_module
from threeam.serve.app import create_app
from threeam.serve.config import ServeConfig
from threeam.serve.sessions import SessionManager

from .helpers import H, W, square_frames, write_frames


async def _drain(queue):
    events = []
    while (e := await queue.get()) is not None:
        events.append(e)
    return events


def test_a_mask_rle_of_another_size_is_refused_before_it_is_decoded(predictor, served, monkeypatch):
    root, _ = served
    decoded = []
    real = sessions_module.decode_rle
    monkeypatch.setattr(sessions_module, "decode_rle", lambda rle: decoded.append(rle["size"]) or real(rle))
    small = encode_rle(np.zeros((4, 4), bool))  # a few bytes that would decode to 40000 x 40000

    async def run():
        m = SessionManager(predictor, ServeConfig(root=root))
        try:
            s = await m.open(root / "square")
            with pytest.raises(InputError, match=rf"mask has size \[40000, 40000\].*\[{H}, {W}\]"):
                await m.add_prompt(s, 0, 1, [], [], None, {"size": [40000, 40000], "counts": small["counts"]})
            assert decoded == []  # nothing was decoded (no 1.6 GB allocation)
            good = np.zeros((H, W), bool)
            good[10:30, 10:30] = True
            await m.add_prompt(s, 0, 1, [], [], None, encode_rle(good))
            assert decoded == [[H, W]]
        finally:
            await m.close_all()

    asyncio.run(run())


def test_the_schema_bounds_mask_sizes(predictor, served):
    root, _ = served
    with TestClient(create_app(predictor, ServeConfig(root=root, allowed_hosts=("testserver",)))) as c:
        sid = c.post("/api/sessions", json={"path": "square"}).json()["id"]
        r = c.post(f"/api/sessions/{sid}/prompts",
                   json={"frame": 0, "obj_id": 1, "mask": {"size": [100000, 100000], "counts": "0"}})
        assert r.status_code == 422 and "mask.size" in r.json()["detail"]
        r = c.post(f"/api/sessions/{sid}/prompts",
                   json={"frame": 0, "obj_id": 1, "mask": {"size": [5000, 5000], "counts": "0"}})
        assert r.status_code == 400 and "[5000, 5000]" in r.json()["detail"]


def test_a_refused_upload_leaves_no_files(predictor, served, tmp_path):
    root, _ = served
    frames, _ = square_frames(3)
    with TestClient(create_app(predictor, ServeConfig(root=root, allowed_hosts=("testserver",), max_sessions=0))) as c:
        buf = io.BytesIO()
        Image.fromarray(frames[0]).save(buf, format="PNG")
        r = c.post("/api/sessions/upload", files=[("files", ("f0.png", buf.getvalue(), "image/png"))])
        assert r.status_code == 503 and "--max-sessions" in r.json()["detail"]
        assert list(c.app.state.manager.workdir.iterdir()) == []
        r = c.post("/api/sessions", json={"path": "square"})
        assert r.status_code == 503
        assert list(c.app.state.manager.workdir.iterdir()) == []


def test_uploaded_frames_keep_the_order_of_the_numbers_in_their_names(predictor, served):
    root, _ = served
    colours = {"frame_5.jpg": (230, 20, 20), "frame_7.jpg": (20, 230, 20), "cover.jpg": (20, 20, 230)}
    parts = []
    for name in ("cover.jpg", "frame_7.jpg", "frame_5.jpg"):
        buf = io.BytesIO()
        Image.fromarray(np.full((H, W, 3), colours[name], np.uint8)).save(buf, format="JPEG", quality=95)
        parts.append(("files", (name, buf.getvalue(), "image/jpeg")))
    with TestClient(create_app(predictor, ServeConfig(root=root, allowed_hosts=("testserver",)))) as c:
        r = c.post("/api/sessions/upload", files=parts)
        assert r.status_code == 200, r.text
        sid = r.json()["id"]
        shown = []
        for t in range(3):
            img = np.asarray(Image.open(io.BytesIO(c.get(f"/api/sessions/{sid}/frames/{t}").content)))
            shown.append(min(colours, key=lambda n: np.abs(img.astype(int) - colours[n]).mean()))
        assert shown == ["frame_5.jpg", "frame_7.jpg", "cover.jpg"]


def test_propagate_without_start_begins_at_the_earliest_prompted_frame(predictor, tmp_path):
    frames, masks = square_frames(12)
    write_frames(tmp_path / "long", frames)

    async def run():
        m = SessionManager(predictor, ServeConfig(root=tmp_path))
        try:
            s = await m.open(tmp_path / "long")
            await m.add_prompt(s, 10, 1, [], [], None, encode_rle(masks[10]))
            back = await _drain(m.start_propagation(s, "backward"))
            assert back[0]["start"] == 10 and back[-1]["type"] == "end"
            assert sorted(s.id_maps) == list(range(11))  # tracked frames 0..9 now hold outputs
            events = await _drain(m.start_propagation(s, "forward"))
            assert events[0] == {"type": "start", "total": 2, "start": 10, "direction": "forward"}
            assert [e["frame"] for e in events if e["type"] == "frame"] == [10, 11]
        finally:
            await m.close_all()

    asyncio.run(run())
