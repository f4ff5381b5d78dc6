"""`threeam serve` as a user starts it: prints its URL, answers on it, refuses bad options."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from threeam.cli import app

from .helpers import free_port

REPO = Path(__file__).resolve().parents[2]


def test_serve_starts_prints_the_url_and_serves_the_page(served):
    root, _ = served
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "threeam.cli", "serve", "--random-weights", "--root", str(root),
                             "--port", str(port), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        url_line = proc.stdout.readline().strip()
        assert "sam2 debug (tiny), random weights" in first, first + proc.stderr.read() if proc.poll() else first
        assert url_line == f"open http://127.0.0.1:{port}/"
        url = url_line.split()[-1]
        page = None
        for _ in range(300):  # the socket listens before uvicorn's loop runs: retry until it answers
            try:
                page = httpx.get(url, timeout=10)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    break
                import time

                time.sleep(0.05)
        assert page is not None and page.status_code == 200, proc.stderr.read() if proc.poll() is not None else ""
        assert "<title>threeam" in page.text and "/static/app.js" in page.text
        assert httpx.get(url + "static/app.js").status_code == 200
        videos = httpx.get(url + "api/videos").json()["videos"]
        assert {"path": "square", "kind": "frames", "frames": 8} in videos
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode is not None


@pytest.mark.parametrize("args, words", [
    (["--root", "{root}"], "no weights"),
    (["--random-weights", "--root", "{root}/notes.txt"], "is not a folder"),
    (["--random-weights", "--model", "sam3", "--root", "{root}"], "--model must be sam2 or 3am"),
    (["--random-weights", "--threads", "0", "--root", "{root}"], "--threads must be >= 1"),
])
def test_serve_refuses_bad_options_with_one_line(served, args, words):
    root, _ = served
    res = CliRunner().invoke(app, ["serve", *[a.format(root=root) for a in args]])
    assert res.exit_code == 2, res.output
    assert words in res.output


def test_the_bundled_tiny_3am_runs_a_session(served):
    """`--model 3am --random-weights`: the tiny 3AM behind the same session code (mask prompt -> mask)."""
    import asyncio

    import numpy as np

    from threeam.commands.serve import build_serve_predictor
    from threeam.serve.config import ServeConfig
    from threeam.serve.sessions import SessionManager

    from .helpers import square_frames

    root, _ = served
    predictor, label = build_serve_predictor("3am", None, None, None, True, 0, "cpu")
    assert label == "3am 3am_tiny, random weights"
    _, masks = square_frames()

    async def run():
        m = SessionManager(predictor, ServeConfig(root=root))
        try:
            s = await m.open(root / "square")
            from threeam.io.masks import decode_rle, encode_rle

            out = await m.add_prompt(s, 1, 4, [], [], None, encode_rle(masks[1]))
            got = decode_rle(out["masks"]["4"])
            assert (got & masks[1]).sum() / (got | masks[1]).sum() > 0.9
            queue = m.start_propagation(s, "forward", max_frames=2)
            events = []
            while (e := await queue.get()) is not None:
                events.append(e)
            assert [e["frame"] for e in events if e["type"] == "frame"] == [1, 2, 3]
            assert events[-1]["type"] == "end" and np.array_equal(sorted(s.id_maps), [1, 2, 3])
        finally:
            await m.close_all()

    asyncio.run(run())
