"""Presets build (on meta) exactly the official key sets and shapes of both manifests."""
from __future__ import annotations

import json

import pytest

from threeam.errors import InputError
from threeam.models.must3r.config import MUST3R_PRESETS, Must3rDecoderConfig, get_must3r_config, must3r_presets
from threeam.models.must3r.model import build_must3r


def _shapes(module):
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("preset,manifest", [
    ("must3r_512", "feedback"), ("must3r_224", "feedback"),
    ("must3r_512_nofeedback", "nofeedback"), ("must3r_224_nofeedback", "nofeedback"),
])
def test_preset_matches_manifest(golden_dir, preset, manifest):
    ref = json.loads((golden_dir / "must3r" / f"manifest_must3r_{manifest}.json").read_text())
    model = build_must3r(preset, device="meta")
    enc, dec = _shapes(model.encoder), _shapes(model.decoder)
    assert set(enc) == set(ref["encoder"]) and set(dec) == set(ref["decoder"])
    assert enc == {k: list(v) for k, v in ref["encoder"].items()}
    assert dec == {k: list(v) for k, v in ref["decoder"].items()}
    assert ("feedback_layer.fc1.weight" in dec) == (manifest == "feedback")
    # official order too (useful for inspection, not needed by load_state_dict)
    assert list(enc) == list(ref["encoder"]) and list(dec) == list(ref["decoder"])


def test_parameter_counts():
    model = build_must3r("must3r_512", device="meta")
    assert sum(p.numel() for p in model.encoder.parameters()) == 303_098_880
    assert sum(p.numel() for p in model.decoder.parameters()) == 120_331_264
    nofb = build_must3r("must3r_512_nofeedback", device="meta")
    assert sum(p.numel() for p in nofb.decoder.parameters()) == 115_607_296


def test_preset_names_and_errors():
    assert must3r_presets() == list(MUST3R_PRESETS)
    assert get_must3r_config("MUSt3R-512") == MUST3R_PRESETS["must3r_512"]
    assert get_must3r_config("must3r_512") is not MUST3R_PRESETS["must3r_512"]  # a fresh copy
    assert get_must3r_config("must3r_512_cvpr") == MUST3R_PRESETS["must3r_512"]
    with pytest.raises(InputError, match="must3r_512"):
        get_must3r_config("must3r_1024")
    with pytest.raises(InputError, match="memory_mode"):
        Must3rDecoderConfig(memory_mode="fast")
    with pytest.raises(InputError, match="feedback_type"):
        Must3rDecoderConfig(feedback_type="double_mlp")
    assert build_must3r("must3r_224", memory_mode="raw", device="meta").memory_mode == "raw"


@pytest.mark.parametrize("feedback,manifest", [("'single_mlp'", "feedback"), ("None", "nofeedback")])
def test_official_args_build_the_manifest(golden_dir, feedback, manifest):
    """Constructor strings as stored in released checkpoints give exactly the manifest's model."""
    import argparse

    from threeam.models.must3r.config import from_checkpoint_args
    from threeam.models.must3r.model import Must3r
    import torch

    args = argparse.Namespace(
        encoder="Dust3rEncoder(img_size=(512, 512), patch_embed='ManyAR_PatchEmbed', pos_embed='RoPE100')",
        decoder=f"CausalMUSt3R(img_size=(512, 512), feedback_type={feedback}, memory_mode='kv', "
                "mem_dropout=0.1, dropout_mode='permanent', use_xformers_mask=True, use_mem_mask=True)",
    )
    cfg = from_checkpoint_args(args)
    assert cfg.decoder.memory_mode == "kv" and cfg.encoder.img_size == (512, 512)
    with torch.device("meta"):
        model = Must3r(cfg)
    ref = json.loads((golden_dir / "must3r" / f"manifest_must3r_{manifest}.json").read_text())
    assert _shapes(model.encoder) == {k: list(v) for k, v in ref["encoder"].items()}
    assert _shapes(model.decoder) == {k: list(v) for k, v in ref["decoder"].items()}
