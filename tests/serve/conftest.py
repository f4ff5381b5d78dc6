"""Fixtures of the web-app tests: a served root with generated videos and escape attempts."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("fastapi", reason="the 'serve' extra (fastapi, uvicorn, python-multipart) is not installed")

from .helpers import disc_frames, square_frames, tiny_predictor, write_frames, write_mp4  # noqa: E402


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    """The tiny model runs many small ops: one intra-op thread keeps them fast on a loaded 2-core
    machine (OpenMP teams spinning against each other made a propagation 10x slower)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def predictor():
    return tiny_predictor()


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """``(root, outside)``: root holds square/ (frames), clip.mp4, disc/ (frames), notes.txt, and links
    that lead outside (escape -> outside folder, leaky/ with one frame linked to an outside file)."""
    base = tmp_path_factory.mktemp("serve")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    frames, _ = square_frames()
    write_frames(root / "square", frames)
    write_mp4(root / "clip.mp4", frames)
    write_frames(root / "disc", disc_frames()[0])
    (root / "notes.txt").write_text("not a video")
    write_frames(outside / "secret", frames[:2])
    os.symlink(outside / "secret", root / "escape")
    leaky = write_frames(root / "leaky", frames[:1])
    os.symlink(outside / "secret" / "00001.png", leaky / "00001.png")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    return root, outside
