"""Head pixel layout, portrait frames and input errors of the encoder/decoder."""
from __future__ import annotations

import pytest
import torch

from threeam.errors import InputError
from threeam.models.must3r import Must3r, Must3rConfig, Must3rDecoderConfig, Must3rEncoderConfig
from threeam.models.must3r.head import LinearHead


def _tiny():
    torch.manual_seed(0)
    return Must3r(Must3rConfig(
        Must3rEncoderConfig(img_size=(64, 64), embed_dim=32, depth=1, num_heads=2),
        Must3rDecoderConfig(img_size=(64, 64), enc_embed_dim=32, embed_dim=16, depth=2, num_heads=2),
    )).eval()


def test_linear_head_pixel_shuffle_order():
    torch.manual_seed(0)
    head = LinearHead(8, 7 * 256, 16)
    tokens = torch.randn(1, 6, 8)  # 2 x 3 token grid -> 32 x 48 pixels
    out = head(tokens, (32, 48))
    assert out.shape == (1, 32, 48, 7)
    proj = head.proj(tokens)
    for (ty, tx, py, px, c) in [(0, 0, 0, 0, 0), (1, 2, 15, 3, 6), (0, 1, 7, 9, 4)]:
        expected = proj[0, ty * 3 + tx, c * 256 + py * 16 + px]
        assert torch.isclose(out[0, ty * 16 + py, tx * 16 + px, c], expected)


def test_portrait_frames_stay_portrait():
    model = _tiny()
    portrait = torch.rand(1, 2, 3, 48, 32) * 2 - 1
    with torch.no_grad():
        out = model.init_memory(portrait)
        tokens, pos = model.encode(portrait)
    assert out.pointmaps_raw.shape == (1, 2, 48, 32, 7)
    assert pos[0, 0, -1].tolist() == [2, 1]  # 3 rows x 2 cols of tokens
    # the transposed frame is a different input, not a relabelled one
    with torch.no_grad():
        land = model.init_memory(portrait.transpose(-1, -2))
    assert land.pointmaps_raw.shape == (1, 2, 32, 48, 7)
    assert not torch.allclose(land.pointmaps_raw.transpose(2, 3), out.pointmaps_raw)


def test_clear_input_errors():
    model = _tiny()
    with pytest.raises(InputError, match="multiples of 16"):
        model.init_memory(torch.zeros(1, 3, 40, 32))
    with pytest.raises(InputError, match=r"\(B, n, 3, H, W\)"):
        model.init_memory(torch.zeros(3, 32))
    with pytest.raises(InputError, match="true_shape"):
        model.encoder(torch.zeros(1, 3, 32, 32), true_shape=(32, 48))
    tokens, pos = model.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputError, match="render"):
        model.decode(tokens, pos, (32, 32), render=True)


def test_groups_of_one_size_equal_a_single_call():
    model = _tiny()
    frames = torch.rand(1, 4, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        whole = model.init_memory(frames)
        parts = model.run_groups([frames[:, :1], frames[:, 1:3], frames[:, 3:]])
    torch.testing.assert_close(torch.cat([p.pointmaps_raw for p in parts], 1), whole.pointmaps_raw)
    for a, b in zip(parts[-1].memory.layers, whole.memory.layers):
        torch.testing.assert_close(a, b)
    assert torch.equal(parts[0].memory.labels, whole.memory.labels)


def test_mixed_landscape_and_portrait_groups():
    model = _tiny()
    land = torch.rand(1, 2, 3, 32, 48) * 2 - 1
    port = torch.rand(1, 1, 3, 48, 32) * 2 - 1
    with torch.no_grad():
        mem = model.init_memory(torch.rand(1, 2, 3, 32, 32) * 2 - 1).memory
        a = model.run_groups([land, port], memory=mem)
        b = model.run_groups([port, land], memory=mem)
        rend = model.run_groups([land, port], memory=mem, render=True)
    assert a[0].pointmaps_raw.shape == (1, 2, 32, 48, 7) and a[1].pointmaps_raw.shape == (1, 1, 48, 32, 7)
    # each written frame sees the memory and the other new frames, whatever the group order
    torch.testing.assert_close(a[0].pointmaps_raw, b[1].pointmaps_raw, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[1].pointmaps_raw, b[0].pointmaps_raw, rtol=1e-5, atol=1e-5)
    assert a[0].memory.num_tokens == mem.num_tokens + 2 * 6 + 6
    assert a[0].memory.image_labels() == [0, 1, 2, 3, 4]
    assert rend[0].memory is mem
    # written frames see each other, so they differ from a render against the old memory alone
    assert not torch.allclose(a[0].pointmaps_raw, rend[0].pointmaps_raw)
