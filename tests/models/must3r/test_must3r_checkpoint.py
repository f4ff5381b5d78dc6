"""Official-format checkpoints: safe parsing of the constructor strings and clear loading errors."""
from __future__ import annotations

import argparse
import os
import pickle

import pytest
import torch

from threeam.errors import CheckpointError, OfflineError
from threeam.models.must3r.checkpoint import load_must3r, read_must3r_checkpoint, resolve_must3r_path
from threeam.models.must3r.config import Must3rConfig, Must3rDecoderConfig, Must3rEncoderConfig, from_checkpoint_args, parse_constructor_string
from threeam.models.must3r.model import Must3r

ENC = ("Dust3rEncoder(img_size=(64, 64), patch_size=16, embed_dim=32, depth=2, num_heads=2, "
       "norm_layer=partial(nn.LayerNorm, eps=1e-6), patch_embed='PatchEmbedDust3R', pos_embed='RoPE100')")
DEC = ("CausalMUSt3R(img_size=(64, 64), enc_embed_dim=32, embed_dim=32, depth=3, num_heads=2, "
       "feedback_type='single_mlp', memory_mode='kv', pos_embed='RoPE100', landscape_only=True, "
       "pointmaps_activation=ActivationType.NORM_EXP, mem_dropout=0.1, dropout_mode='permanent', protected_imgs=1)")


def _small(feedback="single_mlp"):
    return Must3rConfig(
        Must3rEncoderConfig(img_size=(64, 64), embed_dim=32, depth=2, num_heads=2),
        Must3rDecoderConfig(img_size=(64, 64), enc_embed_dim=32, embed_dim=32, depth=3, num_heads=2,
                            feedback_type=feedback),
    )


def _save(path, model, args, **extra):
    torch.save({"encoder": model.encoder.state_dict(), "decoder": model.decoder.state_dict(), "args": args,
                "epoch": 3, **extra}, path)
    return path


def test_parse_constructor_string_literals_and_names():
    name, kw = parse_constructor_string(DEC)
    assert name == "CausalMUSt3R"
    assert kw["img_size"] == (64, 64) and kw["feedback_type"] == "single_mlp" and kw["mem_dropout"] == 0.1
    assert str(kw["pointmaps_activation"]) == "ActivationType.NORM_EXP"
    for bad in ["MUSt3R(", "1 + 2", "MUSt3R(1, 2)", "MUSt3R(**kw)", "[MUSt3R()]"]:
        with pytest.raises(CheckpointError):
            parse_constructor_string(bad)


def test_from_checkpoint_args_namespace_and_dict():
    cfg = from_checkpoint_args(argparse.Namespace(encoder=ENC, decoder=DEC, lr=1e-4))
    assert cfg == _small()
    cfg2 = from_checkpoint_args({"encoder": ENC, "decoder": DEC.replace("'kv'", "'raw'")})
    assert cfg2.decoder.memory_mode == "raw"
    # official defaults when the strings name no value
    cfg3 = from_checkpoint_args({"encoder": "Dust3rEncoder()", "decoder": "CausalMUSt3R()"})
    assert cfg3.encoder.img_size == (224, 224) and cfg3.decoder.memory_mode == "norm_y"
    assert cfg3.decoder.feedback_type is None and cfg3.decoder.embed_dim == 768
    # running a 512 model at 768: adaptive RoPE, as the official loader does
    big = from_checkpoint_args({"encoder": "Dust3rEncoder(img_size=(512, 512), pos_embed='RoPE100')",
                                "decoder": "MUSt3R(img_size=(512, 512), feedback_type='single_mlp')"}, img_size=768)
    assert big.encoder.pos_embed == "RoPE100_512:768" and big.decoder.pos_embed == "RoPE100_512:768"
    adapted = from_checkpoint_args({"encoder": "Dust3rEncoder(img_size=(768, 768), pos_embed='RoPE100_512:768')",
                                    "decoder": "MUSt3R(img_size=(768, 768), pos_embed='RoPE100_512:768')"})
    assert adapted.decoder.pos_embed == "RoPE100_512:768"
    with pytest.raises(CheckpointError, match="memory_mode"):
        from_checkpoint_args({"encoder": ENC, "decoder": DEC.replace("'kv'", "'cache'")})
    with pytest.raises(CheckpointError, match="encoder class"):
        from_checkpoint_args({"encoder": "os.system(cmd='true')", "decoder": DEC})
    with pytest.raises(CheckpointError, match="positional"):
        from_checkpoint_args({"encoder": "os.system('true')", "decoder": DEC})


def test_malicious_strings_are_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    # 1. in an ignored argument: the model still loads, the payload is never run
    args = argparse.Namespace(encoder=ENC.replace("norm_layer=partial(nn.LayerNorm, eps=1e-6)", f"norm_layer={payload}"),
                              decoder=DEC.replace("act_layer", "x").replace("mem_dropout=0.1", f"block_type={payload}"))
    model = Must3r(_small())
    path = _save(tmp_path / "evil_ignored.pth", model, args)
    loaded = load_must3r(path)
    assert not marker.exists()
    assert isinstance(loaded, Must3r)
    # 2. in a value that matters: rejected, still not run
    args2 = argparse.Namespace(encoder=ENC, decoder=DEC.replace("'single_mlp'", payload))
    with pytest.raises(CheckpointError, match="feedback_type"):
        load_must3r(_save(tmp_path / "evil_value.pth", model, args2))
    # 3. as the whole string
    args3 = argparse.Namespace(encoder=payload, decoder=DEC)
    with pytest.raises(CheckpointError):
        load_must3r(_save(tmp_path / "evil_whole.pth", model, args3))
    assert not marker.exists()
    # sanity: the payload does have a side effect when evaluated
    eval(payload)  # noqa: S307 - proves the test would notice
    assert marker.exists()


def test_load_roundtrip_matches_outputs(tmp_path):
    torch.manual_seed(0)
    model = Must3r(_small()).eval()
    path = _save(tmp_path / "ok.pth", model, argparse.Namespace(encoder=ENC, decoder=DEC), optimizer={"lr": 1.0})
    loaded = load_must3r(path)
    assert loaded.config == _small() and not loaded.training
    images = torch.rand(1, 2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        a = model.init_memory(images).pointmaps_raw
        b = loaded.init_memory(images).pointmaps_raw
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert load_must3r(path, memory_mode="norm_y").memory_mode == "norm_y"


def test_feedback_detected_from_weights(tmp_path):
    model = Must3r(_small(feedback=None))
    args = argparse.Namespace(encoder=ENC, decoder=DEC)  # claims feedback
    with pytest.warns(UserWarning, match="feedback"):
        loaded = load_must3r(_save(tmp_path / "nofb.pth", model, args))
    assert loaded.config.decoder.feedback_type is None and loaded.decoder.feedback_layer is None
    # without args at all, the configuration comes from the weight shapes
    torch.save({"encoder": model.encoder.state_dict(), "decoder": model.decoder.state_dict()}, tmp_path / "noargs.pth")
    with pytest.warns(UserWarning, match="inferring"):
        inferred = load_must3r(tmp_path / "noargs.pth")
    assert inferred.config.decoder.depth == 3 and inferred.config.encoder.embed_dim == 32


def test_clear_errors(tmp_path):
    model = Must3r(_small())
    sd_dec = model.decoder.state_dict()
    sd_dec.pop("norm_dec.weight")
    sd_dec["extra.weight"] = torch.zeros(1)
    sd_dec["head_dec.proj.bias"] = torch.zeros(7)
    torch.save({"encoder": model.encoder.state_dict(), "decoder": sd_dec, "args": argparse.Namespace(encoder=ENC, decoder=DEC)},
               tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        load_must3r(tmp_path / "bad.pth")
    msg = str(info.value)
    assert "norm_dec.weight" in msg and "extra.weight" in msg and "head_dec.proj.bias" in msg
    with pytest.raises(CheckpointError, match="not found"):
        load_must3r(tmp_path / "missing.pth")
    torch.save({"model": {}}, tmp_path / "sam.pth")
    with pytest.raises(CheckpointError, match="missing"):
        read_must3r_checkpoint(tmp_path / "sam.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        read_must3r_checkpoint(tmp_path / "junk.pth")


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_pickled_code_is_refused(tmp_path):
    model = Must3r(_small())
    torch.save({"encoder": model.encoder.state_dict(), "decoder": model.decoder.state_dict(), "args": _Evil()},
               tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refusing"):
        read_must3r_checkpoint(tmp_path / "evil.pth")


def test_hub_id_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(OfflineError, match="owner/repo"):
        resolve_must3r_path("hf://owner/repo/MUSt3R_512.pth")
    with pytest.raises(CheckpointError):
        resolve_must3r_path("hf://owner/only")
