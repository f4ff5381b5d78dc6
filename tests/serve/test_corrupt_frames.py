"""A frame whose header is valid but whose body is cut off: the open refuses it (the frames are
checked once at open, streamed), and whatever a model call reports later reaches the client
without any server path (paths become the name the client knows; stored upload names become the
client's file names)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from threeam.errors import VideoError
from threeam.serve.app import create_app
from threeam.serve.config import ServeConfig
from threeam.serve.media import open_video

from .helpers import square_frames


def _pngs(folder, truncate_middle: bool, n: int = 3):
    folder.mkdir(parents=True)
    frames, _ = square_frames(n)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.png")
    if truncate_middle:
        data = (folder / "00001.png").read_bytes()
        (folder / "00001.png").write_bytes(data[:60])  # signature + IHDR intact, body cut
    return folder


def _truncate(path):
    path.write_bytes(path.read_bytes()[:60])


def test_a_truncated_frame_is_refused_at_open_without_server_paths(predictor, tmp_path):
    root = tmp_path / "root"
    _pngs(root / "cut", truncate_middle=True)
    with Image.open(root / "cut" / "00001.png") as im:
        assert im.size == (96, 64)  # the header alone looks fine
    with pytest.raises(VideoError, match="00001.png"):
        open_video(root / "cut", 10, 4096, root, "cut")
    cfg = ServeConfig(root=root, allowed_hosts=("testserver",), idle_timeout_s=0)
    with TestClient(create_app(predictor, cfg)) as c:
        r = c.post("/api/sessions", json={"path": "cut"})
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert "00001.png" in detail and str(tmp_path) not in detail
        frames, _ = square_frames(3)
        files = []
        for i, f in enumerate(frames):
            png = tmp_path / f"frame_{i}.png"
            Image.fromarray(f).save(png)
            if i == 1:
                _truncate(png)
            files.append(("files", (png.name, png.read_bytes(), "image/png")))
        r = c.post("/api/sessions/upload", files=files)
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert "frame_1.png" in detail, detail  # the client's name, not the stored 00001.png
        assert str(c.app.state.manager.workdir) not in detail
        assert c.get("/api/status").json()["sessions"] == 0


def test_model_call_errors_reach_the_client_without_server_paths(predictor, tmp_path):
    """Frames go bad after the open (the predictor decodes them itself, later; past its read-ahead
    of 8 frames): the prompt's 400 and the propagation's error event name the frame by the
    client's path only."""
    root = tmp_path / "root"
    folder = _pngs(root / "clips" / "cut", truncate_middle=False, n=16)
    cfg = ServeConfig(root=root, allowed_hosts=("testserver",), idle_timeout_s=0)
    with TestClient(create_app(predictor, cfg)) as c:
        r = c.post("/api/sessions", json={"path": "clips/cut"})
        assert r.status_code == 200, r.text
        sid = r.json()["id"]
        _truncate(folder / "00013.png")
        _truncate(folder / "00015.png")
        r = c.post(f"/api/sessions/{sid}/prompts", json={"frame": 15, "obj_id": 1, "points": [[40, 30]],
                                                         "labels": [1]})
        assert 400 <= r.status_code < 500, r.text
        detail = r.json()["detail"]
        assert "00015.png" in detail and str(tmp_path) not in detail and str(root) not in detail, detail
        assert "clips/cut/00015.png" in detail, detail
        r = c.post(f"/api/sessions/{sid}/prompts", json={"frame": 0, "obj_id": 1, "points": [[40, 30]],
                                                         "labels": [1]})
        assert r.status_code == 200, r.text
        r = c.post(f"/api/sessions/{sid}/propagate", json={"direction": "forward"})
        events = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        errors = [e for e in events if e["type"] == "error"]
        assert errors, events
        assert "clips/cut/00013.png" in errors[0]["message"] and str(tmp_path) not in errors[0]["message"], errors
