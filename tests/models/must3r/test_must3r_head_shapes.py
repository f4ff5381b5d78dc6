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
