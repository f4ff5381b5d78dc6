"""3AM Feature Merger: shapes, identity at init, gradients, token-grid alignment, PE3D."""
from __future__ import annotations

import pytest
import torch

from threeam.errors import InputError
from threeam.models.merger import (CropGeometry, FeatureMerger, FeatureMergerConfig, Must3rFrameFeatures,
                                   align_to_sam_grid, get_merger_config, merger_parameter_count,
                                   sam_grid_in_token_coords)
from threeam.models.must3r.rope import grid_positions
from threeam.models.pe3d import PE3D, pool_to_tokens, ray_map

TINY = get_merger_config("tiny")
LANDSCAPE = CropGeometry.must3r(480, 640)   # 640x480 frame -> 512x384, tokens 24x32
PORTRAIT = CropGeometry.must3r(1000, 700)   # 700x1000 frame -> 358x512, cropped to 352x512, tokens 32x22


def make_feats(cfg: FeatureMergerConfig, geometry: CropGeometry, b: int = 2, seed: int = 0,
               requires_grad: bool = False) -> Must3rFrameFeatures:
    g = torch.Generator().manual_seed(seed)
    h, w = geometry.token_hw(cfg.patch_size)
    n = h * w
    hp, wp = h * cfg.patch_size, w * cfg.patch_size
    points = torch.randn(b, hp, wp, 3, generator=g)
    points[..., 2] = points[..., 2].abs() + 2.0
    rays = torch.nn.functional.normalize(torch.randn(b, hp, wp, 3, generator=g), dim=-1)
    return Must3rFrameFeatures(
        encoder=torch.randn(b, n, cfg.enc_dim, generator=g).requires_grad_(requires_grad),
        decoder=[torch.randn(b, n, cfg.width, generator=g) for _ in cfg.must3r_levels],
        pointmap=points, raymap=rays, geometry=geometry,
        positions=grid_positions(h, w, batch=b))


def perturbed(cfg=TINY, seed=0) -> FeatureMerger:
    torch.manual_seed(seed)
    m = FeatureMerger(cfg)
    with torch.no_grad():
        m.last_conv.weight.normal_(0, 0.1)
        if m.last_conv.bias is not None:
            m.last_conv.bias.normal_(0, 0.1)
    return m


# ------------------------------------------------------------------ crop geometry / alignment


def test_must3r_crop_geometry_landscape_and_portrait():
    assert LANDSCAPE == CropGeometry((480, 640), (384, 512), (0, 0), (384, 512))
    assert LANDSCAPE.token_hw() == (24, 32)
    # 1000x700 (W x H): resized 512x358 (358.4 rounded), height cropped to 352 from y = 179 - 176 = 3
    land = CropGeometry.must3r(700, 1000)
    assert land == CropGeometry((700, 1000), (358, 512), (0, 3), (352, 512))
    assert PORTRAIT == CropGeometry((1000, 700), (512, 358), (3, 0), (512, 352))
    assert PORTRAIT.token_hw() == (32, 22)
    with pytest.raises(InputError):
        CropGeometry((10, 10), (8, 8), (4, 0), (8, 8))


def _coordinate_token_map(geometry: CropGeometry, patch: int = 16) -> torch.Tensor:
    """(1, 2, h, w): original-frame x and y of every token centre."""
    h, w = geometry.token_hw(patch)
    (oh, ow), (rh, rw), (cx, cy) = geometry.orig_hw, geometry.resized_hw, geometry.crop_xy
    x = ((torch.arange(w, dtype=torch.float64) + 0.5) * patch + cx) * ow / rw
    y = ((torch.arange(h, dtype=torch.float64) + 0.5) * patch + cy) * oh / rh
    return torch.stack([x.expand(h, w), y[:, None].expand(h, w)]).unsqueeze(0)


@pytest.mark.parametrize("geometry", [
    LANDSCAPE, PORTRAIT, CropGeometry.must3r(700, 1000),
    # a large centre crop (as the bucketed MUSt3R demo pipeline makes): 600x300 -> 512x256, keep 384x192
    CropGeometry((300, 600), (256, 512), (64, 32), (192, 384)),
], ids=["landscape", "portrait", "landscape-cropped", "big-crop"])
def test_alignment_reproduces_original_frame_coordinates(geometry):
    hs, ws = 16, 16
    tokens = _coordinate_token_map(geometry).float()
    out, valid = align_to_sam_grid(tokens, geometry, (hs, ws))
    assert out.shape == (1, 2, hs, ws) and valid.shape == (hs, ws)
    (oh, ow) = geometry.orig_hw
    want_x = ((torch.arange(ws, dtype=torch.float64) + 0.5) * ow / ws).expand(hs, ws)
    want_y = ((torch.arange(hs, dtype=torch.float64) + 0.5) * oh / hs)[:, None].expand(hs, ws)
    u, v = sam_grid_in_token_coords(geometry, (hs, ws))
    h, w = geometry.token_hw()
    # between the outermost token centres bilinear interpolation of a linear map is exact
    inner_x = ((u >= 0.5) & (u <= w - 0.5))[None, :].expand(hs, ws)
    inner_y = ((v >= 0.5) & (v <= h - 0.5))[:, None].expand(hs, ws)
    assert inner_x.any() and inner_y.any()
    assert torch.allclose(out[0, 0][inner_x].double(), want_x[inner_x], atol=1e-3)
    assert torch.allclose(out[0, 1][inner_y].double(), want_y[inner_y], atol=1e-3)
    # beyond them: edge padding (first / last token centre's coordinate)
    left = (u < 0.5)[None, :].expand(hs, ws)
    assert torch.allclose(out[0, 0][left], tokens[0, 0, 0, 0].expand(int(left.sum())), atol=1e-3)
    right = (u > w - 0.5)[None, :].expand(hs, ws)
    assert torch.allclose(out[0, 0][right], tokens[0, 0, 0, -1].expand(int(right.sum())), atol=1e-3)
    # validity: the cell centre lies inside MUSt3R's crop (in original-frame pixels)
    (rh, rw), (cx, cy), (ch, cw) = geometry.resized_hw, geometry.crop_xy, geometry.crop_hw
    x0, x1 = cx * ow / rw, (cx + cw) * ow / rw
    y0, y1 = cy * oh / rh, (cy + ch) * oh / rh
    inside = (want_x >= x0) & (want_x < x1) & (want_y >= y0) & (want_y < y1)
    assert torch.equal(valid, inside)


def test_alignment_big_crop_marks_border_invalid():
    geometry = CropGeometry((300, 600), (256, 512), (64, 32), (192, 384))
    _, valid = align_to_sam_grid(torch.zeros(1, 1, 12, 24), geometry, (16, 16))
    # x: crop covers orig [75, 525) of 600 -> columns 2..13 valid; y: [37.5, 262.5) of 300 -> rows 2..13
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[2:14, 2:14] = True
    assert torch.equal(valid, expected)
    with pytest.raises(InputError):
        align_to_sam_grid(torch.zeros(1, 1, 12, 23), geometry, (16, 16))


# ------------------------------------------------------------------ merger


@pytest.mark.parametrize("geometry", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
def test_shapes_and_identity_at_init(geometry):
    torch.manual_seed(0)
    merger = FeatureMerger(TINY)
    f2d = torch.randn(2, TINY.sam_dim, 16, 16)
    out = merger(f2d, make_feats(TINY, geometry))
    assert out.shape == f2d.shape
    assert torch.equal(out, f2d)


@pytest.mark.parametrize("geometry", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
def test_perturbed_last_layer_changes_output_and_depends_on_must3r(geometry):
    merger = perturbed()
    f2d = torch.randn(2, TINY.sam_dim, 16, 16)
    feats = make_feats(TINY, geometry)
    out = merger(f2d, feats)
    assert out.shape == f2d.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, f2d, atol=1e-4)
    other = make_feats(TINY, geometry, seed=1)
    assert not torch.allclose(merger(f2d, other), out, atol=1e-5)
    # positions default to the row-major grid
    feats.positions = None
    assert torch.allclose(merger(f2d, feats), out, atol=1e-6)


def test_gradients_reach_every_parameter():
    merger = perturbed()
    f2d = torch.randn(2, TINY.sam_dim, 16, 16, requires_grad=True)
    feats = make_feats(TINY, LANDSCAPE, requires_grad=True)
    merger(f2d, feats).square().mean().backward()
    missing = [name for name, p in merger.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []
    assert f2d.grad.abs().sum() > 0 and feats.encoder.grad.abs().sum() > 0


def test_fresh_merger_trains_only_last_conv_first():
    torch.manual_seed(0)
    merger = FeatureMerger(TINY)
    merger(torch.randn(1, TINY.sam_dim, 16, 16), make_feats(TINY, LANDSCAPE, b=1)).square().mean().backward()
    assert merger.last_conv.weight.grad.abs().sum() > 0
    others = [n for n, p in merger.named_parameters() if not n.startswith("fuse.3.") and p.grad is not None
              and p.grad.abs().sum() > 0]
    assert others == []  # zero-init residual: the rest starts learning once last_conv is non-zero


def test_rope_positions_are_relative_and_used():
    merger = perturbed()
    f2d = torch.randn(1, TINY.sam_dim, 16, 16)
    feats = make_feats(TINY, LANDSCAPE, b=1)
    out = merger(f2d, feats)
    feats.positions = feats.positions + 5  # RoPE depends only on position differences
    assert torch.allclose(merger(f2d, feats), out, atol=1e-4)
    feats.positions = feats.positions.flip(1)  # a different layout changes the result
    assert not torch.allclose(merger(f2d, feats), out, atol=1e-4)


def test_parameter_count():
    built = sum(p.numel() for p in FeatureMerger(TINY).parameters())
    assert merger_parameter_count("tiny") == built
    # paper preset, by hand: per attention 4*768^2+4*768, per FFN 8*768^2+3840+768, LayerNorm 2*768
    d = 768
    attn = 4 * d * d + 4 * d
    ffn = 2 * 4 * d * d + 4 * d + d
    ln = 2 * d
    self_block = 2 * ln + attn + ffn
    hier_block = 4 * ln + 2 * attn + ffn
    pe3d = (6 * 13) * d + d + d * d + d
    head = (d * 256 * 9 + 256) + ((256 + 256 + 1) * 256 * 9 + 256) + 2 * 256 + (256 * 256 + 256)
    expected = (1024 * d + d) + pe3d + self_block + 3 * hier_block + ln + head
    assert merger_parameter_count("paper") == expected == 39_906_048


def test_bad_inputs_raise_input_error():
    merger = FeatureMerger(TINY)
    feats = make_feats(TINY, LANDSCAPE)
    with pytest.raises(InputError):
        merger(torch.zeros(2, TINY.sam_dim + 1, 16, 16), feats)
    with pytest.raises(InputError):
        merger(torch.zeros(2, TINY.sam_dim, 16, 16),
               Must3rFrameFeatures(feats.encoder, feats.decoder[:2], feats.pointmap, feats.raymap, LANDSCAPE))
    with pytest.raises(InputError):
        merger(torch.zeros(2, TINY.sam_dim, 16, 16),
               Must3rFrameFeatures(feats.encoder, feats.decoder, feats.pointmap, feats.raymap, PORTRAIT))
    with pytest.raises(InputError):
        FeatureMergerConfig(width=30, num_heads=2)
    with pytest.raises(InputError):
        get_merger_config("huge")


# ------------------------------------------------------------------ PE3D


def test_pool_to_tokens_averages_patches():
    pix = torch.arange(4 * 4 * 1, dtype=torch.float32).reshape(1, 4, 4, 1).expand(1, 4, 4, 3).clone()
    pix[0, 0, 0, 0] = float("nan")
    out = pool_to_tokens(pix, (2, 2))
    assert out.shape == (1, 4, 3)
    # patch (0,0) holds 0(nan->0), 1, 4, 5; patch (1,1) holds 10, 11, 14, 15
    assert out[0, 0, 0].item() == pytest.approx((0 + 1 + 4 + 5) / 4)
    assert out[0, 0, 1].item() == pytest.approx((0 + 1 + 4 + 5) / 4)
    assert out[0, 3, 2].item() == pytest.approx((10 + 11 + 14 + 15) / 4)


def test_pe3d_is_scale_invariant_and_respects_given_scale():
    torch.manual_seed(0)
    pe = PE3D(32, num_freqs=3)
    feats = make_feats(TINY, LANDSCAPE, b=1)
    a = pe(feats.pointmap, feats.raymap, (24, 32))
    b = pe(feats.pointmap * 7.0, feats.raymap * 3.0, (24, 32))  # median-depth normalisation, unit rays
    assert a.shape == (1, 24 * 32, 32)
    assert torch.allclose(a, b, atol=1e-5)
    fixed = pe(feats.pointmap * 7.0, feats.raymap, (24, 32), scale=torch.tensor([1.0]))
    assert not torch.allclose(a, fixed, atol=1e-3)


def test_ray_map_from_local_points():
    pts = torch.tensor([[[[0.0, 0.0, 2.0], [3.0, 0.0, 4.0]]]])  # (1, 1, 2, 3)
    rays = ray_map(pts)
    assert torch.allclose(rays, torch.tensor([[[[0.0, 0.0, 1.0], [0.6, 0.0, 0.8]]]]))
    c2w = torch.eye(4)[None].clone()
    c2w[0, :3, :3] = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    c2w[0, :3, 3] = torch.tensor([5.0, 5.0, 5.0])  # translation does not move directions
    rotated = ray_map(pts, c2w)
    assert torch.allclose(rotated, torch.tensor([[[[0.0, 0.0, 1.0], [0.0, 0.6, 0.8]]]]), atol=1e-6)
    with pytest.raises(InputError):
        ray_map(pts, torch.eye(4))


def test_pe3d_fan_in_init_starts_the_3d_code_at_unit_scale():
    fan_in = get_merger_config("tiny_pe3d_fan_in")
    assert fan_in == FeatureMergerConfig(**{**TINY.__dict__, "pe3d_init": "fan_in"})
    feats = make_feats(TINY, LANDSCAPE)
    h, w = LANDSCAPE.token_hw()
    rms = {}
    for cfg in (TINY, fan_in):
        torch.manual_seed(0)
        m = FeatureMerger(cfg)
        pe = m.pe3d(feats.pointmap, feats.raymap, (h, w))
        enc = m.enc_proj(feats.encoder)
        rms[cfg.pe3d_init] = float(pe.detach().pow(2).mean().sqrt() / enc.detach().pow(2).mean().sqrt())
        for lin in (m.pe3d.mlp[0], m.pe3d.mlp[2]):
            want = 0.02 if cfg.pe3d_init == "small" else lin.in_features ** -0.5
            assert float(lin.weight.detach().std()) == pytest.approx(want, rel=0.15)
        f2d = torch.randn(2, cfg.sam_dim, 24, 24)
        assert torch.equal(m(f2d, feats), f2d)  # still the identity at init
    assert rms["small"] < 0.1 < 1.0 < rms["fan_in"]
    with pytest.raises(InputError, match="pe3d_init"):
        FeatureMergerConfig(pe3d_init="big")


def test_geometry_fuse_offset_is_made_of_the_geometry_alone():
    geo = get_merger_config("tiny_geometry_fuse")
    assert geo == FeatureMergerConfig(**{**TINY.__dict__, "fuse_input": "geometry"})
    torch.manual_seed(0)
    assert torch.equal(FeatureMerger(geo)(f2d := torch.randn(2, TINY.sam_dim, 16, 16),
                                          make_feats(TINY, LANDSCAPE)), f2d)  # identity at init
    feats, other = make_feats(TINY, LANDSCAPE), make_feats(TINY, LANDSCAPE, seed=1)
    a, b = torch.randn(2, TINY.sam_dim, 16, 16), torch.randn(2, TINY.sam_dim, 16, 16)
    offsets = {}
    for cfg in (TINY, geo):
        m = perturbed(cfg)
        assert m.fuse[0].in_channels == cfg.fuse_in_channels
        offsets[cfg.fuse_input] = (m(a, feats) - a, m(b, feats) - b, m(a, other) - a)
    same_geo_a, same_geo_b, other_geo = offsets["geometry"]
    assert torch.allclose(same_geo_a, same_geo_b, atol=1e-6)     # F2D does not enter the offset
    assert not torch.allclose(same_geo_a, other_geo, atol=1e-4)  # the geometry does
    concat_a, concat_b, _ = offsets["concat"]
    assert not torch.allclose(concat_a, concat_b, atol=1e-4)     # the paper's block reads F2D
    assert TINY.fuse_in_channels == TINY.sam_dim + TINY.up_dim + 1 and geo.fuse_in_channels == TINY.up_dim + 1
    with pytest.raises(InputError, match="fuse_input"):
        FeatureMergerConfig(fuse_input="add")
    from threeam.errors import CheckpointError
    from threeam.models.state_dict_check import check_keys
    with pytest.raises(CheckpointError, match=r"fuse\.0\.weight: checkpoint \(16, 17, 3, 3\) vs model \(16, 33, 3, 3\)"):
        check_keys(FeatureMerger(TINY).state_dict(), FeatureMerger(geo).state_dict(), "geometry merger")


def test_centred_offset_has_no_per_channel_constant_and_every_parameter_learns():
    """``centre_offset``: identity at init; the offset added to F2D has zero mean over the grid per frame and
    channel (a bias on F2D is impossible), yet still depends on the geometry; the last conv has no (inert) bias,
    so every parameter still receives a gradient."""
    centred = get_merger_config("tiny_pe3d_fan_in_centred")
    assert centred == FeatureMergerConfig(**{**get_merger_config("tiny_pe3d_fan_in").__dict__, "centre_offset": True})
    torch.manual_seed(0)
    f2d = torch.randn(2, TINY.sam_dim, 16, 16)
    assert torch.equal(FeatureMerger(centred)(f2d, make_feats(TINY, LANDSCAPE)), f2d)
    m = perturbed(centred)
    assert m.last_conv.bias is None and "fuse.3.bias" not in m.state_dict()
    f2d.requires_grad_(True)
    feats = make_feats(TINY, LANDSCAPE, requires_grad=True)
    offset = m(f2d, feats) - f2d
    assert offset.abs().amax() > 1e-3
    assert torch.allclose(offset.mean(dim=(-2, -1)), torch.zeros(2, TINY.sam_dim), atol=1e-6)
    assert not torch.allclose(m(f2d, make_feats(TINY, LANDSCAPE, seed=1)) - f2d, offset, atol=1e-4)
    # the same weights without centring: the offset is the centred one plus its grid mean
    plain = FeatureMerger(get_merger_config("tiny_pe3d_fan_in"))
    state = dict(m.state_dict(), **{"fuse.3.bias": torch.zeros(TINY.sam_dim)})
    plain.load_state_dict(state)
    raw = plain(f2d, feats) - f2d
    assert torch.allclose(raw - raw.mean(dim=(-2, -1), keepdim=True), offset, atol=1e-5)
    offset.square().mean().backward()
    assert [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0] == []
