"""3AM checkpoints: safetensors + JSON, all parts or trained parts referring to official files."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from threeam.errors import CheckpointError, InputError, OfflineError
from threeam.io.atomic import MARKER_NAME
from threeam.models.merger import get_merger_config
from threeam.models.three_am import TRAINABLE_PREFIXES, ThreeAM, ThreeAMConfig, debug_sam2_config, tiny_must3r_config
from threeam.models.three_am_weights import load_three_am, save_three_am
from threeam.predictor.build import build_three_am_model


@pytest.fixture(scope="module")
def model() -> ThreeAM:
    m = build_three_am_model("3am_tiny", random_weights=True, seed=1)
    with torch.no_grad():
        m.merger.last_conv.weight.normal_(0, 0.1)  # a "trained" merger
    return m.eval()


def _same(a: ThreeAM, b: ThreeAM) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_all_parts_round_trip(model, tmp_path):
    out = save_three_am(model, tmp_path / "ckpt")
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME, "config.json", "model.safetensors"]
    _same(model, ThreeAM.from_pretrained(str(out)))
    with pytest.raises(InputError, match="already exists"):
        save_three_am(model, out)
    save_three_am(model, out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary or old folder left
    (out / "notes.txt").write_text("mine")  # a file threeam did not write: never deleted
    with pytest.raises(InputError, match="did not write"):
        save_three_am(model, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="not written by threeam"):
        save_three_am(model, foreign, overwrite=True)
    assert (foreign / "data.bin").read_bytes() == b"x"


@pytest.mark.parametrize("edit, message", [
    (lambda m: [m], "must hold a JSON object, got a list"),
    (lambda m: {**m, "version": "1"}, "version must be an integer"),
    (lambda m: {**m, "version": 99}, "format version 99"),
    (lambda m: {**m, "format": "other"}, "not a 3AM checkpoint config"),
    (lambda m: {**m, "parts": "some"}, "parts must be"),
    (lambda m: {**m, "config": [1, 2]}, "'config' must be a JSON object"),
    (lambda m: {**m, "config": {**m["config"], "sam2": 3}}, "invalid 3AM config"),
    (lambda m: {**m, "sam2_checkpoint": 5}, "sam2_checkpoint must be"),
])
def test_a_malformed_config_json_is_one_checkpoint_error(model, tmp_path, edit, message):
    out = save_three_am(model, tmp_path / "ckpt")
    meta = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(edit(meta)))
    with pytest.raises(CheckpointError, match=message) as err:
        load_three_am(out)
    assert "\n" not in str(err.value)


def test_trained_parts_refer_to_official_files(model, tmp_path):
    torch.save({"model": model.sam2.state_dict()}, tmp_path / "sam2.pt")
    torch.save({"encoder": model.must3r.encoder.state_dict(), "decoder": model.must3r.decoder.state_dict(),
                "args": argparse.Namespace(model="MUSt3R(...)")}, tmp_path / "must3r.pth")
    out = save_three_am(model, tmp_path / "heads", parts="trained", sam2_checkpoint="../sam2.pt",
                       must3r_checkpoint="../must3r.pth")
    meta = json.loads((out / "config.json").read_text())
    assert meta["parts"] == "trained"
    from safetensors.torch import load_file

    keys = load_file(str(out / "model.safetensors")).keys()
    assert keys and all(k.startswith(TRAINABLE_PREFIXES) for k in keys)
    _same(model, load_three_am(out))
    (tmp_path / "must3r.pth").unlink()
    with pytest.raises(CheckpointError):
        load_three_am(out)


def test_mismatch_missing_and_offline_errors(model, tmp_path, monkeypatch):
    out = save_three_am(model, tmp_path / "ckpt")
    meta = json.loads((out / "config.json").read_text())
    good = json.dumps(meta)
    meta["config"]["merger"] = "paper"  # 12 heads cannot split the tiny 32-wide MUSt3R decoder
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="invalid 3AM config"):
        load_three_am(out)
    # weights of a merger with other conv widths: the error names the keys and shapes
    other = ThreeAM(ThreeAMConfig(debug_sam2_config(), tiny_must3r_config(), get_merger_config("tiny", up_dim=8),
                                  must3r_res=64))
    save_three_am(other, tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text(good)
    with pytest.raises(CheckpointError, match=r"shape mismatches \(merger\.up_conv"):
        load_three_am(tmp_path / "other")
    with pytest.raises(CheckpointError, match="not found"):
        load_three_am(tmp_path / "nowhere")
    (out / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_three_am(out)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="someone/threeam-large"):
        load_three_am("someone/threeam-large")
