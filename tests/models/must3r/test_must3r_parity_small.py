"""Parity with the official MUSt3R on the golden case_small_kv: every step, memory and feature level."""
from __future__ import annotations

import pytest
import torch

from must3r_golden import load_case, rel_err

TOL = 1e-4
H, W = 96, 128


@pytest.fixture(scope="module")
def case(golden_dir, fill):
    model, js, npz, frames = load_case(golden_dir, fill)
    with torch.no_grad():
        tokens, pos = model.encode(frames[None])
    return model, js, npz, tokens, pos


def _check_step(name, out, npz, js):
    assert rel_err(out.pointmaps_raw, npz[f"{name}/pointmaps_raw"]) < TOL
    assert len(out.feats) == js["decoder"]["depth"] + 1
    for level, feat in enumerate(out.feats):
        assert rel_err(feat, npz[f"{name}/feats/{level}"]) < TOL, (name, level)
    assert len(out.memory.layers) == js["decoder"]["depth"]
    for layer, mem in enumerate(out.memory.layers):
        assert rel_err(mem, npz[f"{name}/mem/{layer}"]) < TOL, (name, layer)
    assert torch.equal(out.memory.labels, torch.from_numpy(npz[f"{name}/mem_labels"]))


def test_encoder_tokens_and_positions(case):
    model, js, npz, tokens, pos = case
    assert tokens.shape == (1, 5, 48, 64)
    for i in range(5):
        assert rel_err(tokens[0, i:i + 1], npz[f"enc/f{i}"]) < TOL
    assert torch.equal(pos[0, 0:1], torch.from_numpy(npz["enc/pos"]))


def test_memory_steps_in_order(case):
    model, js, npz, tokens, pos = case
    assert list(js["steps"]) == ["init01", "add2", "add3", "render4", "render_all", "init0"]
    with torch.no_grad():
        init01 = model.decode(tokens[:, :2], pos[:, :2], (H, W))
        _check_step("init01", init01, npz, js)
        add2 = model.decode(tokens[:, 2:3], pos[:, 2:3], (H, W), init01.memory)
        _check_step("add2", add2, npz, js)
        add3 = model.decode(tokens[:, 3:4], pos[:, 3:4], (H, W), add2.memory)
        _check_step("add3", add3, npz, js)
        render4 = model.decode(tokens[:, 4:5], pos[:, 4:5], (H, W), add3.memory, render=True)
        _check_step("render4", render4, npz, js)
        assert render4.memory is add3.memory
        render_all = model.decode(tokens, pos, (H, W), add3.memory, render=True)
        _check_step("render_all", render_all, npz, js)
        init0 = model.decode(tokens[:, :1], pos[:, :1], (H, W))
        _check_step("init0", init0, npz, js)


def test_model_api_matches_steps(case, golden_dir, fill):
    """init_memory / add_frames / render from images reproduce the golden steps."""
    model, _, npz, _ = load_case(golden_dir, fill)
    frames = torch.from_numpy(npz["frames"]).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    with torch.no_grad():
        out = model.init_memory(frames[:2])
        out = model.add_frames(out.memory, frames[2:3])
        out = model.add_frames(out.memory, frames[3:4])
        r = model.render(out.memory, frames[4:5], keep_levels=[0, 2])
    assert rel_err(r.pointmaps_raw, npz["render4/pointmaps_raw"]) < TOL
    assert r.feats[1] is None and r.feats[3] is None
    assert rel_err(r.feats[2], npz["render4/feats/2"]) < TOL


def test_single_frame_update_equals_render(case):
    model, _, _, tokens, pos = case
    with torch.no_grad():
        init = model.decode(tokens[:, :2], pos[:, :2], (H, W))
        upd = model.decode(tokens[:, 2:3], pos[:, 2:3], (H, W), init.memory)
        ren = model.decode(tokens[:, 2:3], pos[:, 2:3], (H, W), init.memory, render=True)
    torch.testing.assert_close(upd.pointmaps_raw, ren.pointmaps_raw)
    assert upd.memory.num_tokens == init.memory.num_tokens + 48
    assert ren.memory.num_tokens == init.memory.num_tokens


@pytest.mark.parametrize("mode", ["norm_y", "raw"])
def test_other_memory_modes(golden_dir, fill, mode):
    """norm_y and raw store other forms of memory but give the same predictions as kv."""
    model, js, npz, frames = load_case(golden_dir, fill, memory_mode=mode)
    D = js["decoder"]["embed_dim"]
    with torch.no_grad():
        out = model.init_memory(frames[:2])
        out = model.add_frames(out.memory, frames[2:3])
        out = model.add_frames(out.memory, frames[3:4])
        r = model.render(out.memory, frames[4:5])
    assert out.memory.memory_mode == mode
    for layer, mem in enumerate(out.memory.layers):
        assert mem.shape == (1, 192, D)  # kv stores 2D
        ref = torch.from_numpy(npz[f"add3/mem/{layer}"])
        assert mem.shape != ref.shape
    # the stored form differs from kv ...
    if mode == "norm_y":
        # ... norm_y memory projected by projk reproduces the kv keys
        blk = model.decoder.blocks_dec[1]
        with torch.no_grad():
            keys = blk.cross_attn.projk(out.memory.layers[1])
        assert rel_err(keys, npz["add3/mem/1"][..., :D]) < TOL
    else:
        with torch.no_grad():
            keys = model.decoder.blocks_dec[1].cross_attn.projk(model.decoder.blocks_dec[1].norm_y(out.memory.layers[1]))
        assert rel_err(keys, npz["add3/mem/1"][..., :D]) < TOL
        raw = out.memory.layers[1]
        with torch.no_grad():  # raw tokens are stored before norm_y
            assert (raw - model.decoder.blocks_dec[1].norm_y(raw)).norm() > 0.1 * raw.norm()
    # ... but predictions are the same as the kv reference
    assert rel_err(r.pointmaps_raw, npz["render4/pointmaps_raw"]) < TOL
    for level in range(len(r.feats)):
        assert rel_err(r.feats[level], npz[f"render4/feats/{level}"]) < TOL


def test_memory_mode_mismatch_is_a_clear_error(case, golden_dir, fill):
    from threeam.errors import InputError

    model, _, _, tokens, pos = case
    other, *_ = load_case(golden_dir, fill, memory_mode="raw")
    with torch.no_grad():
        mem = model.decode(tokens[:, :1], pos[:, :1], (H, W)).memory
        with pytest.raises(InputError, match="memory_mode|mode"):
            other.decode(tokens[:, 1:2], pos[:, 1:2], (H, W), mem)
        with pytest.raises(InputError):
            model.decode(tokens[:, :1], pos[:, :1], (H, W + 16))
