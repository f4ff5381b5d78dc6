"""J and F against hand-made cases and against the `vos-benchmark` package (dev extra)."""
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from vos_benchmark.benchmark import benchmark as vos_benchmark_run
from vos_benchmark.evaluator import Evaluator
from vos_benchmark.utils import _seg2bmap as vos_seg2bmap

from threeam.errors import InputError
from threeam.eval.boundary import boundary_radius, f_boundary, j_region, seg2bmap
from threeam.eval.metrics import aggregate_davis, davis_track
from threeam.io.masks import write_palette_png


def test_seg2bmap_by_hand() -> None:
    m = np.zeros((3, 3), bool)
    m[1, 1] = True
    expected = [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    np.testing.assert_array_equal(seg2bmap(m), np.array(expected, bool))
    full = np.ones((2, 3), bool)
    assert not seg2bmap(full).any()
    # last column compares only downwards, last row only rightwards
    col = np.zeros((3, 3), bool)
    col[0, 2] = True
    np.testing.assert_array_equal(seg2bmap(col), np.array([[0, 1, 1], [0, 0, 0], [0, 0, 0]], bool))


def test_boundary_radius() -> None:
    assert boundary_radius(480, 854) == 8
    assert boundary_radius(256, 256) == 3
    assert boundary_radius(1440, 1920) == 20
    assert boundary_radius(10, 10, bound_th=4) == 4
    with pytest.raises(InputError):
        boundary_radius(10, 10, bound_th=2.5)
    with pytest.raises(InputError):
        boundary_radius(10, 10, bound_th=0)


def test_f_by_hand() -> None:
    sq = np.zeros((1, 40, 40), bool)
    sq[0, 10:20, 10:20] = True
    far = np.zeros_like(sq)
    far[0, 30:35, 30:35] = True
    empty = np.zeros_like(sq)
    # 40x40: radius ceil(0.008 * 56.6) = 1
    assert f_boundary(sq, sq).tolist() == [1.0]
    assert f_boundary(sq, far).tolist() == [0.0]
    assert f_boundary(empty, sq).tolist() == [0.0]
    assert f_boundary(sq, empty).tolist() == [0.0]
    assert f_boundary(empty, empty).tolist() == [1.0]
    # shifting by 1 px stays within tolerance 1 -> perfect; by 2 px (tolerance 1): only the
    # boundary pixels on the two sides parallel to the shift still match
    assert f_boundary(np.roll(sq, 1, axis=2), sq).tolist() == [1.0]
    f2 = float(f_boundary(np.roll(sq, 2, axis=2), sq)[0])
    assert 0 < f2 < 1
    assert f_boundary(np.roll(sq, 2, axis=2), sq, bound_th=2).tolist() == [1.0]
    # 2-D input gives a 0-d result
    assert f_boundary(sq[0], sq[0]).shape == ()


def test_j_with_void() -> None:
    gt = np.zeros((2, 4, 4), bool)
    gt[:, 1, 1] = True
    pred = gt.copy()
    pred[:, 2, 2] = True
    np.testing.assert_allclose(j_region(pred, gt), [0.5, 0.5])
    void = np.zeros((4, 4), bool)
    void[2, 2] = True
    np.testing.assert_allclose(j_region(pred, gt, void), [1.0, 1.0])
    with pytest.raises(InputError, match="void"):
        j_region(pred, gt, np.zeros((3, 3), bool))


def blob_sequence(rng: np.random.Generator, t: int, h: int, w: int, n_obj: int, sigma: float) -> np.ndarray:
    """(T, H, W) uint8 id maps of smooth random blobs; every object is present on frame 0."""
    ids = np.zeros((t, h, w), np.uint8)
    for k in range(1, n_obj + 1):
        field = ndimage.gaussian_filter(rng.random((t, h, w)), (0, sigma, sigma))
        on = field > np.quantile(field, 0.85, axis=(1, 2), keepdims=True)
        on[1:] &= rng.random((t - 1, 1, 1)) > 0.25  # some frames without the object
        ids[on] = k
    for k in range(1, n_obj + 1):
        ids[0, 0, k - 1] = k
    return ids


SHAPES = [(6, 24, 32, 2, 1.5), (5, 61, 47, 3, 3.0), (4, 120, 200, 2, 6.0), (5, 480, 854, 2, 12.0),
          (4, 1, 9, 1, 0.5), (4, 7, 1, 1, 0.5)]


@pytest.mark.parametrize("t,h,w,n_obj,sigma", SHAPES)
def test_j_f_match_vos_benchmark(t: int, h: int, w: int, n_obj: int, sigma: float) -> None:
    rng = np.random.default_rng(h * 1000 + w)
    gt = blob_sequence(rng, t, h, w, n_obj, sigma)
    pred = blob_sequence(rng, t, h, w, n_obj, sigma)
    # make predictions related to the GT on some frames: shifted / eroded copies
    pred[1] = np.roll(gt[1], 2, axis=-1)
    pred[2] = np.where(ndimage.binary_erosion(gt[2] > 0, iterations=1), gt[2], 0)
    ref = Evaluator()
    for i in range(t):
        ref.feed_frame(pred[i], gt[i])
    for k in range(1, n_obj + 1):
        j = j_region(pred == k, gt == k)
        f = f_boundary(pred == k, gt == k)
        np.testing.assert_allclose(j, ref.object_iou[k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(f, ref.boundary_f[k], rtol=0, atol=1e-12)
        for i in range(t):
            np.testing.assert_array_equal(seg2bmap(gt[i] == k), vos_seg2bmap(gt[i] == k).astype(bool))
    if min(h, w) > 1:
        assert len({round(x, 6) for x in np.concatenate([ref.boundary_f[k] for k in ref.boundary_f])}) > 2


def test_davis_global_scores_match_vos_benchmark_on_png_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    ours = []
    for seq, (t, h, w, n_obj, sigma) in {"a": (6, 40, 64, 2, 2.0), "b": (5, 33, 50, 3, 2.5)}.items():
        gt = blob_sequence(rng, t, h, w, n_obj, sigma)
        pred = np.where(rng.random((t, 1, 1)) > 0.3, np.roll(gt, 1, axis=-2), blob_sequence(rng, t, h, w, n_obj, sigma))
        gt[1, 0, :n_obj] = np.arange(1, n_obj + 1)  # every object present on the first scored frame
        pred[1, 0, :n_obj] = np.arange(1, n_obj + 1)
        for i in range(t):
            write_palette_png(tmp_path / "gt" / seq / f"{i:05d}.png", gt[i])
            write_palette_png(tmp_path / "pred" / seq / f"{i:05d}.png", pred[i])
        for k in range(1, n_obj + 1):
            ours.append(davis_track(pred == k, gt == k, name=f"{seq}/{k}", frames=range(1, t - 1)))
    jf, j, f, _ = vos_benchmark_run([str(tmp_path / "gt")], [str(tmp_path / "pred")], num_processes=1,
                                    verbose=False, skip_first_and_last=True)
    s = aggregate_davis(ours)
    assert s.n_objects == 5
    assert 100 * s.j_mean == pytest.approx(j[0], abs=1e-9)
    assert 100 * s.f_mean == pytest.approx(f[0], abs=1e-9)
    assert 100 * s.jf_mean == pytest.approx(jf[0], abs=1e-9)
    assert 0 < s.jf_mean < 1
