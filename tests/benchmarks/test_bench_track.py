"""benchmarks/bench_track.py --compare-official PATH refuses, with one clear line and before any
model is built, a PATH that is not an official SAM 2 checkout (the official code is never vendored:
the user points to a clone)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_track.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_track_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _no_models(bench, monkeypatch):
    def built(*args, **kwargs):
        raise AssertionError("a model was built before --compare-official was checked")

    monkeypatch.setattr(bench, "ThreeAM", built)
    monkeypatch.setattr(bench, "generate_scene", built)


def test_a_missing_folder_and_a_folder_without_sam2_are_refused_up_front(bench, tmp_path, monkeypatch):
    _no_models(bench, monkeypatch)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--compare-official", str(tmp_path / "nope")])
    assert "no such folder" in str(exc.value) and "facebookresearch/sam2" in str(exc.value)
    (tmp_path / "other" / "sam2").mkdir(parents=True)
    (tmp_path / "other" / "sam2" / "build_sam.py").write_text("")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--compare-official", str(tmp_path / "other"), "--device", "cuda"])
    msg = str(exc.value)
    assert "is not an official SAM 2 checkout" in msg and "sam2/sam2_video_predictor.py" in msg
    assert "\n" not in msg


def test_a_checkout_without_the_config_is_refused(bench, tmp_path, monkeypatch):
    _no_models(bench, monkeypatch)
    root = tmp_path / "sam2repo"
    (root / "sam2" / "configs" / "sam2.1").mkdir(parents=True)
    for name in ("build_sam.py", "sam2_video_predictor.py"):
        (root / "sam2" / name).write_text("")
    assert bench.check_official_checkout(str(root)) == root.resolve()
    with pytest.raises(SystemExit, match="--official-config"):
        bench.main(["--compare-official", str(root), "--official-config", "configs/sam2.1/sam2.1_hiera_x.yaml"])
    (root / "sam2" / "configs" / "sam2.1" / "sam2.1_hiera_b+.yaml").write_text("")
    # a real-looking checkout passes the folder check; without CUDA the device check refuses next
    if not __import__("torch").cuda.is_available():
        with pytest.raises(SystemExit, match="needs --device cuda"):
            bench.main(["--compare-official", str(root), "--device", "cpu"])
