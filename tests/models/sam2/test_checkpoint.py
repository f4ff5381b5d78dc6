"""Checkpoint loading: official format round trip and clear errors for bad checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

from threeam.errors import CheckpointError, OfflineError
from threeam.models.sam2.build import build_sam2, build_sam2_from_state_dict
from threeam.models.sam2.checkpoint import (
    HF_MODEL_FILES,
    check_state_dict,
    load_sam2_weights,
    matching_presets,
    read_state_dict,
)
from threeam.models.sam2.config import SAM2Config


@pytest.fixture(scope="module")
def small(golden_dir, fill):
    """(config, official-format state dict) of the small golden model."""
    js = json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())
    cfg = SAM2Config.from_official_dict(js["config"])
    return cfg, fill.fill_state_dict(js["shapes"], js["overrides_s1_s3"])


def _assert_same(model, sd):
    own = model.state_dict()
    assert set(own) == set(sd)
    for k, v in sd.items():
        assert torch.equal(own[k], v), k


def test_official_pt_round_trip(tmp_path, small):
    cfg, sd = small
    path = tmp_path / "official.pt"
    torch.save({"model": sd}, path)
    model = build_sam2(cfg)
    assert not any(torch.equal(model.state_dict()[k], sd[k]) for k in ("no_mem_embed", "image_encoder.trunk.pos_embed"))
    load_sam2_weights(model, path)
    _assert_same(model, sd)


def test_build_with_checkpoint_bare_and_safetensors(tmp_path, small):
    from safetensors.torch import save_file

    cfg, sd = small
    bare = tmp_path / "bare.pth"
    torch.save(sd, bare)
    st = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    for path in (bare, st):
        model = build_sam2(cfg, checkpoint=path)
        assert not model.training
        assert not any(p.is_meta for p in model.parameters())
        _assert_same(model, sd)
    model = build_sam2_from_state_dict(cfg, sd)
    _assert_same(model, sd)


def test_half_precision_checkpoint_is_cast_to_float32(tmp_path, small):
    cfg, sd = small
    path = tmp_path / "half.pt"
    torch.save({"model": {k: v.half() for k, v in sd.items()}}, path)
    model = build_sam2(cfg, checkpoint=path)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    key = "image_encoder.trunk.pos_embed"
    assert torch.allclose(model.state_dict()[key], sd[key], atol=1e-3)


def _error_for(tmp_path, cfg, sd) -> str:
    path = tmp_path / "bad.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as info:
        load_sam2_weights(build_sam2(cfg, device="meta"), path)
    return str(info.value)


def test_missing_key(tmp_path, small):
    cfg, sd = small
    bad = dict(sd)
    del bad["no_mem_embed"]
    msg = _error_for(tmp_path, cfg, bad)
    assert "1 missing keys" in msg and "no_mem_embed" in msg
    assert "unexpected" not in msg


def test_extra_key(tmp_path, small):
    cfg, sd = small
    bad = dict(sd, **{"image_encoder.trunk.extra_token": torch.zeros(3)})
    msg = _error_for(tmp_path, cfg, bad)
    assert "1 unexpected keys" in msg and "image_encoder.trunk.extra_token" in msg
    assert "missing" not in msg


def test_wrong_shape(tmp_path, small):
    cfg, sd = small
    bad = dict(sd, **{"image_encoder.trunk.pos_embed": torch.zeros(1, 16, 5, 5)})
    msg = _error_for(tmp_path, cfg, bad)
    assert "1 shape mismatches" in msg
    assert "image_encoder.trunk.pos_embed: checkpoint (1, 16, 5, 5) vs model (1, 16, 4, 4)" in msg


def test_many_missing_keys_are_counted_and_truncated(small):
    cfg, sd = small
    model = build_sam2(cfg, device="meta")
    keep = {k: v for k, v in sd.items() if not k.startswith("memory_attention.")}
    n_missing = len(sd) - len(keep)
    assert n_missing > 10
    with pytest.raises(CheckpointError) as info:
        check_state_dict(model, keep)
    msg = str(info.value)
    assert f"{n_missing} missing keys" in msg and f"({n_missing - 10} more)" in msg


def test_hint_names_the_matching_preset(golden_dir):
    shapes = json.loads((golden_dir / "sam2" / "manifest_sam2_hiera_t.json").read_text())["shapes"]
    sam2_sd = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    assert matching_presets({k: tuple(v) for k, v in shapes.items()}) == ["sam2_hiera_t"]
    with pytest.raises(CheckpointError) as info:
        check_state_dict(build_sam2("sam2.1_hiera_t", device="meta"), sam2_sd)
    msg = str(info.value)
    assert "no_obj_embed_spatial" in msg and "obj_ptr_tpos_proj.weight" in msg
    assert "'sam2_hiera_t'" in msg


def test_missing_file_and_folder(tmp_path, small):
    cfg, _ = small
    with pytest.raises(CheckpointError, match="not found"):
        load_sam2_weights(build_sam2(cfg, device="meta"), tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="folder"):
        read_state_dict(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        build_sam2(cfg, checkpoint=str(tmp_path / "nope.safetensors"))


def test_unreadable_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict(junk)
    other = tmp_path / "other.pt"
    torch.save({"epoch": 3, "optimizer": {}}, other)
    with pytest.raises(CheckpointError, match="does not hold a SAM 2 state dict"):
        read_state_dict(other)


def test_unknown_hub_id_lists_known_ids():
    with pytest.raises(CheckpointError) as info:
        read_state_dict("someone/not-a-sam2-repo")
    assert not isinstance(info.value, OfflineError)
    assert "facebook/sam2.1-hiera-large" in str(info.value)


def test_hub_id_without_network_is_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    for source in ("facebook/sam2.1-hiera-large", "sam2_hiera_t"):
        with pytest.raises(OfflineError) as info:
            read_state_dict(source)
        msg = str(info.value)
        repo = "facebook/sam2.1-hiera-large" if "large" in source else "facebook/sam2-hiera-tiny"
        filename = HF_MODEL_FILES[repo][1]
        assert repo in msg and filename in msg
        assert f"https://huggingface.co/{repo}/resolve/main/{filename}" in msg
