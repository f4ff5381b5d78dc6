"""Shared fixtures. Parity data lives in ../shared/golden (never copied into this repository)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(os.environ.get("THREEAM_GOLDEN", REPO_ROOT.parent / "shared" / "golden"))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """The golden parity folder; the tests fail (not skip) when it is missing."""
    assert GOLDEN_DIR.is_dir(), f"golden parity data not found at {GOLDEN_DIR} (set THREEAM_GOLDEN)"
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def fill(golden_dir: Path):
    """The golden `fill.py` module (deterministic weights from key names and shapes)."""
    spec = importlib.util.spec_from_file_location("golden_fill", golden_dir / "fill.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def forced_autocast(monkeypatch) -> list:
    """Records every ``torch.autocast(...)`` opened during the test (its positional arguments); a
    caller that leaves autocast to the predictor's own ``autocast_context()`` opens none."""
    import torch

    opened: list = []
    real = torch.autocast

    def spy(*args, **kwargs):
        opened.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    return opened
