"""The web app's HTTP API end to end (in-process client, the real tiny SAM 2 with random weights).

Deterministic mask source here: mask prompts (a mask prompt is the model's output on its own
frame), so "the returned mask covers the object" is checked with them; clicks are checked for
shape, format and the one-call answer only (random weights give arbitrary masks).
"""
from __future__ import annotations

import io
import json
import threading
import zipfile

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from threeam.io.masks import decode_rle, encode_rle, read_palette_png, read_rle_json
from threeam.serve.app import create_app
from threeam.serve.config import ServeConfig

from .helpers import H, T, W, ServerThread, square_frames, wait_until, write_mp4


@pytest.fixture(scope="module")
def app_config(served):
    root, _ = served
    return ServeConfig(root=root, allowed_hosts=("testserver",), idle_timeout_s=0, max_sessions=4)


@pytest.fixture(scope="module")
def client(predictor, app_config):
    with TestClient(create_app(predictor, app_config, model_name="tiny")) as c:
        yield c


def _open(client, path="square"):
    r = client.post("/api/sessions", json={"path": path})
    assert r.status_code == 200, r.text
    return r.json()


def _events(response_text: str) -> list[dict]:
    return [json.loads(line) for line in response_text.splitlines() if line.strip()]


def _mask_prompt(client, sid, frame, obj_id, mask):
    r = client.post(f"/api/sessions/{sid}/prompts", json={"frame": frame, "obj_id": obj_id, "mask": encode_rle(mask)})
    assert r.status_code == 200, r.text
    return r.json()


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_open_lists_and_serves_frames(client):
    videos = {v["path"]: v for v in client.get("/api/videos").json()["videos"]}
    assert videos["square"] == {"path": "square", "kind": "frames", "frames": T}
    assert videos["clip.mp4"]["kind"] == "file"
    assert "escape" not in videos and not any(p.startswith("escape") for p in videos)  # a link out of the root
    info = _open(client)
    assert (info["num_frames"], info["height"], info["width"]) == (T, H, W)
    r = client.get(f"/api/sessions/{info['id']}/frames/3")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    frames, masks = square_frames()
    assert np.abs(img - frames[3]).mean() < 8  # JPEG of the right frame
    assert client.get(f"/api/sessions/{info['id']}/frames/{T}").status_code == 404
    assert client.delete(f"/api/sessions/{info['id']}").status_code == 200
    assert client.get(f"/api/sessions/{info['id']}").status_code == 404


def test_mask_prompt_answers_with_the_mask_and_propagation_streams_every_frame(client):
    frames, masks = square_frames()
    sid = _open(client)["id"]
    out = _mask_prompt(client, sid, 2, 1, masks[2])
    assert out["frame"] == 2 and out["obj_ids"] == [1]
    got = decode_rle(out["masks"]["1"])
    assert got.shape == (H, W) and _iou(got, masks[2]) > 0.9  # covers the object
    r = client.post(f"/api/sessions/{sid}/propagate", json={"direction": "both", "start": 2})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    events = _events(r.text)
    assert events[0] == {"type": "start", "total": T, "start": 2, "direction": "both"}
    assert events[-1] == {"type": "end", "cancelled": False, "frames": T}
    frame_events = [e for e in events if e["type"] == "frame"]
    assert sorted({e["frame"] for e in frame_events}) == list(range(T))
    # forward 2..7 first, then backward 2..0; progress counts distinct frames
    assert [e["frame"] for e in frame_events] == [2, 3, 4, 5, 6, 7, 2, 1, 0]
    assert [e["done"] for e in frame_events] == [1, 2, 3, 4, 5, 6, 6, 7, 8]
    info = client.get(f"/api/sessions/{sid}").json()
    assert info["frames_with_masks"] == list(range(T))
    for e in frame_events:  # every streamed mask is what the session now holds
        held = client.get(f"/api/sessions/{sid}/masks/{e['frame']}").json()
        assert set(held["masks"]) <= {"1"}
    client.delete(f"/api/sessions/{sid}")


def test_click_answers_that_frame_in_one_call_then_correct_and_repropagate(client):
    sid = _open(client, "clip.mp4")["id"]
    r = client.post(f"/api/sessions/{sid}/prompts",
                    json={"frame": 0, "obj_id": 3, "points": [[20, 30]], "labels": [1]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["frame"] == 0 and out["obj_ids"] == [3]
    for rle in out["masks"].values():
        assert rle["size"] == [H, W]
    events = _events(client.post(f"/api/sessions/{sid}/propagate", json={"direction": "forward"}).text)
    assert [e["frame"] for e in events if e["type"] == "frame"] == list(range(T))
    # a correction on frame 4 (a box and a negative click), then forward again from there
    r = client.post(f"/api/sessions/{sid}/prompts",
                    json={"frame": 4, "obj_id": 3, "box": [30, 10, 70, 50], "points": [[5, 5]], "labels": [0]})
    assert r.status_code == 200, r.text
    events = _events(client.post(f"/api/sessions/{sid}/propagate", json={"direction": "forward", "start": 4}).text)
    assert [e["frame"] for e in events if e["type"] == "frame"] == [4, 5, 6, 7]
    # clearing the correction, then the object's only other prompt frame stays
    r = client.post(f"/api/sessions/{sid}/clear", json={"frame": 4, "obj_id": 3})
    assert r.status_code == 200
    client.delete(f"/api/sessions/{sid}")


def test_two_objects_remove_one_and_reset(client):
    frames, masks = square_frames()
    sid = _open(client)["id"]
    other = np.zeros((H, W), bool)
    other[50:60, 70:90] = True
    _mask_prompt(client, sid, 0, 1, masks[0])
    out = _mask_prompt(client, sid, 0, 2, other)
    assert out["obj_ids"] == [1, 2]
    assert _iou(decode_rle(out["masks"]["1"]), masks[0]) > 0.9 and _iou(decode_rle(out["masks"]["2"]), other) > 0.9
    _events(client.post(f"/api/sessions/{sid}/propagate", json={}).text)
    r = client.post(f"/api/sessions/{sid}/remove_object", json={"obj_id": 2})
    assert r.status_code == 200 and r.json()["obj_ids"] == [1]
    for t in range(T):
        assert "2" not in client.get(f"/api/sessions/{sid}/masks/{t}").json()["masks"]
    assert client.post(f"/api/sessions/{sid}/remove_object", json={"obj_id": 2}).status_code == 400
    info = client.post(f"/api/sessions/{sid}/reset").json()
    assert info["obj_ids"] == [] and info["frames_with_masks"] == []
    r = client.post(f"/api/sessions/{sid}/propagate", json={})
    assert r.status_code == 400 and "click an object" in r.json()["detail"]
    client.delete(f"/api/sessions/{sid}")


def test_export_writes_the_track_files(client):
    frames, masks = square_frames()
    sid = _open(client)["id"]
    assert client.post(f"/api/sessions/{sid}/export", json={}).status_code == 400  # nothing yet
    _mask_prompt(client, sid, 0, 5, masks[0])
    _events(client.post(f"/api/sessions/{sid}/propagate", json={"direction": "forward"}).text)
    r = client.post(f"/api/sessions/{sid}/export", json={"formats": ["png", "rle", "mp4"]})
    assert r.status_code == 200, r.text
    files = {f["format"]: f for f in r.json()["files"]}
    assert set(files) == {"png", "rle", "mp4"}
    z = zipfile.ZipFile(io.BytesIO(client.get(files["png"]["url"]).content))
    names = sorted(z.namelist())
    assert names == [f"masks/{t:05d}.png" for t in range(T)]
    pngs = {}
    for n in names:
        tmp = io.BytesIO(z.read(n))
        from PIL import Image

        im = Image.open(tmp)
        assert im.mode == "P"  # DAVIS palette PNG
        pngs[int(n[6:11])] = np.asarray(im)
    assert _iou(pngs[0] == 5, masks[0]) > 0.9
    rle_resp = client.get(files["rle"]["url"])
    assert rle_resp.status_code == 200
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "masks.json"
        p.write_bytes(rle_resp.content)
        tracks = read_rle_json(p)
        assert sorted(tracks) == list(range(T))
        for t in range(T):  # the JSON holds exactly the PNGs' masks
            if 5 in tracks[t]:
                assert np.array_equal(tracks[t][5].mask, pngs[t] == 5)
            else:
                assert not (pngs[t] == 5).any()
        mp4 = Path(d) / "overlay.mp4"
        mp4.write_bytes(client.get(files["mp4"]["url"]).content)
        with av.open(str(mp4)) as c:
            assert sum(1 for _ in c.decode(video=0)) == T
        pngs_on_disk = Path(d) / "one.png"
        pngs_on_disk.write_bytes(z.read(names[0]))
        assert np.array_equal(read_palette_png(pngs_on_disk), pngs[0])
    assert client.get(f"/api/sessions/{sid}/export/secret.txt").status_code == 404
    assert client.get(f"/api/sessions/{sid}/export/..%2F..%2Fetc%2Fpasswd").status_code == 404
    client.delete(f"/api/sessions/{sid}")


def test_upload_video_and_frames(client, tmp_path):
    frames, _ = square_frames(5)
    mp4 = write_mp4(tmp_path / "up.mp4", frames)
    r = client.post("/api/sessions/upload", files=[("files", ("my video.mp4", mp4.read_bytes(), "video/mp4"))])
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["num_frames"] == 5 and info["name"] == "my_video.mp4"
    client.delete(f"/api/sessions/{info['id']}")
    from PIL import Image

    parts = []
    for i in (10, 2, 1):  # sent out of order, with folder names: ordered by the number in the name
        buf = io.BytesIO()
        Image.fromarray(frames[i % 5]).save(buf, format="PNG")
        parts.append(("files", (f"../../clip/frame_{i}.png", buf.getvalue(), "image/png")))
    r = client.post("/api/sessions/upload", files=parts)
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["num_frames"] == 3
    img = np.asarray(Image.open(io.BytesIO(client.get(f"/api/sessions/{info['id']}/frames/0").content)))
    assert np.abs(img.astype(int) - frames[1]).mean() < 8  # frame_1 first
    client.delete(f"/api/sessions/{info['id']}")


@pytest.mark.parametrize("body, status, words", [
    ({"path": "../outside/secret"}, 403, "'..'"),
    ({"path": "square/../../outside"}, 403, "'..'"),
    ({"path": "/etc/passwd"}, 403, "absolute"),
    ({"path": "C:\\Windows"}, 403, "absolute"),
    ({"path": "escape"}, 403, "outside the served root"),
    ({"path": "escape/00000.png"}, 403, "outside the served root"),
    ({"path": "leaky"}, 403, "outside the served root"),
    ({"path": "nope.mp4"}, 404, "no such file"),
    ({"path": "notes.txt"}, 400, "not a video"),
    ({"path": "broken.mp4"}, 400, "broken.mp4 is not a readable video"),
    ({"path": "sq\x00uare"}, 403, "NUL"),
    ({"path": ""}, 422, "path"),
    ({"path": 3}, 422, "path"),
    ({"path": "square", "x": 1}, 422, "x"),
])
def test_open_refuses_paths_outside_the_root_with_a_clear_message(client, body, status, words):
    r = client.post("/api/sessions", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert str(client.app.state.config.root) not in r.json()["detail"]  # messages name client paths only


@pytest.fixture(scope="module")
def session_id(client):
    sid = _open(client)["id"]
    yield sid
    client.delete(f"/api/sessions/{sid}")


@pytest.mark.parametrize("body, status", [
    ({"frame": 0, "obj_id": 1, "points": [[2 * W + 1, 5]], "labels": [1]}, 400),   # clearly outside the frame
    ({"frame": 0, "obj_id": 1, "points": [[5, 2 * H + 0.5]], "labels": [1]}, 400),
    ({"frame": 0, "obj_id": 1, "points": [[-1, 5]], "labels": [1]}, 422),
    ({"frame": 0, "obj_id": 1, "points": [[1e300, 5]], "labels": [1]}, 422),
    ({"frame": T, "obj_id": 1, "points": [[5, 5]], "labels": [1]}, 400),           # frame out of range
    ({"frame": -1, "obj_id": 1, "points": [[5, 5]], "labels": [1]}, 422),
    ({"frame": 10**30, "obj_id": 1, "points": [[5, 5]], "labels": [1]}, 422),
    ({"frame": 1.5, "obj_id": 1, "points": [[5, 5]], "labels": [1]}, 422),
    ({"frame": 0, "obj_id": 0, "points": [[5, 5]], "labels": [1]}, 422),           # object ids 1..254
    ({"frame": 0, "obj_id": 255, "points": [[5, 5]], "labels": [1]}, 422),
    ({"frame": 0, "obj_id": "one", "points": [[5, 5]], "labels": [1]}, 422),
    ({"frame": 0, "obj_id": 1, "points": [[5, 5]], "labels": [2]}, 422),           # labels 0/1
    ({"frame": 0, "obj_id": 1, "points": [[5, 5], [6, 6]], "labels": [1]}, 422),   # one label per point
    ({"frame": 0, "obj_id": 1, "points": [[5, 5, 5]], "labels": [1]}, 422),
    ({"frame": 0, "obj_id": 1, "points": [[5, 5]] * 65, "labels": [1] * 65}, 422),
    ({"frame": 0, "obj_id": 1, "box": [50, 5, 10, 30]}, 422),                     # x1 < x0
    ({"frame": 0, "obj_id": 1, "box": [5, 5, 2 * W + 10, 30]}, 400),              # (a little past: clipped)
    ({"frame": 0, "obj_id": 1, "points": [[5, 5]], "labels": [1], "code": "__import__('os')"}, 422),
    ({"frame": 0, "obj_id": 1, "mask": {"size": [H, W], "counts": "not rle!"}}, 400),
    ({"frame": 0, "obj_id": 1, "mask": {"size": [H + 1, W], "counts": encode_rle(np.ones((H + 1, W), bool))["counts"]}}, 400),
    ({"frame": 0, "obj_id": 1, "mask": {"size": [H, W]}}, 422),
    ({"frame": 0, "obj_id": 9}, 400),                                              # nothing to clear
])
def test_prompt_input_is_validated_with_4xx(client, session_id, body, status):
    r = client.post(f"/api/sessions/{session_id}/prompts", json=body)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]


def test_other_bad_requests_are_4xx_and_the_server_keeps_serving(client, session_id):
    sid = session_id
    checks = [
        client.post(f"/api/sessions/{sid}/prompts", content=b'{"frame": 0, "obj_id": 1, "points": [[NaN, 1]], '
                                                            b'"labels": [1]}', headers={"content-type": "application/json"}),
        client.post(f"/api/sessions/{sid}/prompts", content=b"{not json", headers={"content-type": "application/json"}),
        client.post(f"/api/sessions/{sid}/prompts", content=b"\x80\x04K\x01.", headers={"content-type": "application/octet-stream"}),
        client.post(f"/api/sessions/{sid}/propagate", json={"start": T}),
        client.post(f"/api/sessions/{sid}/propagate", json={"direction": "sideways"}),
        client.post(f"/api/sessions/{sid}/clear", json={"frame": 0, "obj_id": 77}),
        client.post(f"/api/sessions/{sid}/remove_object", json={"obj_id": 77}),
        client.post(f"/api/sessions/{sid}/export", json={"formats": ["pickle"]}),
        client.get(f"/api/sessions/{sid}/masks/{T}"),
        client.get(f"/api/sessions/{sid}/frames/-1"),
        client.get(f"/api/sessions/{sid}/frames/abc"),
        client.get("/api/sessions/not-a-session/frames/0"),
        client.get("/api/sessions/" + "a" * 24 + "/masks/0"),
        client.post("/api/sessions/upload", content=b"hello", headers={"content-type": "text/plain"}),
    ]
    assert [r.status_code for r in checks] == [422, 422, 422, 400, 422, 400, 400, 422, 400, 404, 422, 404, 404, 400]
    assert client.get("/api/info").status_code == 200


def test_corrupt_and_oversized_uploads_are_refused_and_the_server_keeps_serving(predictor, served, tmp_path):
    root, _ = served
    cfg = ServeConfig(root=root, allowed_hosts=("testserver",), max_upload_mb=0.05, max_frames=6)
    with TestClient(create_app(predictor, cfg)) as c:
        junk = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
        r = c.post("/api/sessions/upload", files=[("files", ("video.mp4", junk, "video/mp4"))])
        assert r.status_code == 400 and "video.mp4" in r.json()["detail"]
        assert str(c.app.state.manager.workdir) not in r.json()["detail"]  # no server paths in messages
        r = c.post("/api/sessions/upload", files=[("files", ("f0.png", b"\x89PNG\r\n\x1a\n" + junk[:500], "image/png"))])
        assert r.status_code == 400 and "f0.png" in r.json()["detail"]
        assert str(c.app.state.manager.workdir) not in r.json()["detail"]
        r = c.post("/api/sessions/upload", files=[("files", ("run.sh", b"rm -rf /", "text/x-sh"))])
        assert r.status_code == 400 and "unsupported upload" in r.json()["detail"]
        big = b"\x00" * int(0.06 * 1024 * 1024)
        r = c.post("/api/sessions/upload", files=[("files", ("big.mp4", big, "video/mp4"))])
        assert r.status_code == 413 and "limit" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit holds while reading the stream
            boundary = b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.mp4\"\r\n\r\n"
            yield boundary
            for _ in range(10):
                yield b"\x00" * 10_000
        r = c.post("/api/sessions/upload", content=chunks(),
                   headers={"content-type": "multipart/form-data; boundary=xyz"})
        assert r.status_code == 413
        frames, _ = square_frames(8)  # over max_frames
        r = c.post("/api/sessions/upload",
                   files=[("files", ("long.mp4", write_mp4(tmp_path / "long.mp4", frames).read_bytes(), "video/mp4"))])
        assert r.status_code == 413 and "at most 6" in r.json()["detail"]
        r = c.post("/api/sessions", json={"path": "square"})  # 8 frames > 6
        assert r.status_code == 413
        assert c.get("/api/status").json()["sessions"] == 0
        assert c.get("/api/info").status_code == 200
        assert r.status_code < 500
        left = list(c.app.state.manager.workdir.iterdir())
        assert not left, left  # failed uploads leave no files behind


def test_host_and_origin_guards(client):
    assert client.get("/api/videos", headers={"host": "evil.example"}).status_code == 400
    r = client.post("/api/sessions", json={"path": "square"}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    r = client.post("/api/sessions", json={"path": "square"}, headers={"origin": "http://testserver:1234"})
    assert r.status_code == 403
    assert client.get("/api/status", headers={"origin": "http://testserver"}).status_code == 200
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/api/sessions/" + "b" * 24 + "/ws", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()


def test_the_tab_websocket_closes_the_session_when_it_drops(client):
    before = client.get("/api/status").json()["sessions"]
    sid = _open(client)["id"]
    with client.websocket_connect(f"/api/sessions/{sid}/ws") as ws:
        assert ws.receive_json() == {"type": "hello", "session": sid}
        ws.send_text(json.dumps({"op": "ping"}))
        assert ws.receive_json() == {"type": "pong"}
        ws.send_text("{bad")
        assert ws.receive_json()["type"] == "error"
        ws.send_bytes(b"\x80\x04K\x01.")  # bytes (a pickle) are not read as anything
        assert ws.receive_json()["type"] == "error"
        assert client.get(f"/api/sessions/{sid}").status_code == 200
    # the server closes it once it sees the socket drop (asynchronously: wait for it)
    assert wait_until(lambda: client.get(f"/api/sessions/{sid}").status_code == 404)
    assert client.get("/api/status").json()["sessions"] == before


def test_idle_sessions_are_closed(predictor, served):
    root, _ = served
    import asyncio

    from threeam.serve.sessions import SessionManager

    async def run():
        m = SessionManager(predictor, ServeConfig(root=root, idle_timeout_s=0.05))
        try:
            s = await m.open(root / "square")
            await asyncio.sleep(0.1)
            assert await m.sweep() == [s.id]
            assert not m.sessions and not s.workdir.exists()
        finally:
            await m.close_all()

    asyncio.run(run())


def test_session_limit_answers_503(predictor, served):
    root, _ = served
    with TestClient(create_app(predictor, ServeConfig(root=root, allowed_hosts=("testserver",), max_sessions=1))) as c:
        assert c.post("/api/sessions", json={"path": "square"}).status_code == 200
        r = c.post("/api/sessions", json={"path": "disc"})
        assert r.status_code == 503 and "--max-sessions" in r.json()["detail"]


class GatedPredictor:
    """The real predictor, whose propagation waits for ``gate`` before every frame after the first
    (lets a test act while a propagation is running, without timing)."""

    def __init__(self, inner):
        self.inner, self.gate = inner, threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def propagate_in_video(self, *args, **kwargs):
        for i, item in enumerate(self.inner.propagate_in_video(*args, **kwargs)):
            if i:
                assert self.gate.wait(60), "the test never opened the gate"
            yield item


def test_cancel_and_busy_while_propagating_over_real_http(predictor, served):
    import httpx

    root, _ = served
    frames, masks = square_frames()
    gated = GatedPredictor(predictor)
    with ServerThread(create_app(gated, ServeConfig(root=root))) as srv, httpx.Client(base_url=srv.url) as http:
        sid = http.post("/api/sessions", json={"path": "square"}).json()["id"]
        http.post(f"/api/sessions/{sid}/prompts", json={"frame": 0, "obj_id": 1, "mask": encode_rle(masks[0])})
        with http.stream("POST", f"/api/sessions/{sid}/propagate", json={"direction": "forward"}) as r:
            lines = r.iter_lines()
            assert json.loads(next(lines))["type"] == "start"
            assert json.loads(next(lines))["frame"] == 0
            busy = http.post(f"/api/sessions/{sid}/prompts", json={"frame": 1, "obj_id": 1, "points": [[5, 5]],
                                                                  "labels": [1]})
            assert busy.status_code == 409 and "cancel" in busy.json()["detail"]
            assert http.post(f"/api/sessions/{sid}/export", json={}).status_code == 409
            assert http.post(f"/api/sessions/{sid}/cancel").json() == {"cancelled": True}
            gated.gate.set()
            rest = [json.loads(line) for line in lines if line]
        assert rest[-1]["type"] == "end" and rest[-1]["cancelled"] is True
        assert rest[-1]["frames"] < T
        assert http.post(f"/api/sessions/{sid}/cancel").json() == {"cancelled": False}
        # the session works again after the cancel
        r = http.post(f"/api/sessions/{sid}/propagate", json={"direction": "forward"})
        assert _events(r.text)[-1] == {"type": "end", "cancelled": False, "frames": T}
        assert http.delete(f"/api/sessions/{sid}").status_code == 200
