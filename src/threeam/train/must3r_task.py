"""The ``must3r`` training task: MUSt3R (encoder + decoder + head) on posed RGB-D clips.

MUSt3R's pointmap regression (DUSt3R's confidence-aware loss, as MUSt3R trains it), streaming over
the clip with MUSt3R's memory: frame 0 starts the memory (the reference camera), every later frame
is written to it in turn (`Must3r.init_memory` / `add_frames`, gradients through the memory).

Per frame ``i`` and pixel (network resolution, crop16 preprocessing as in streaming inference):

* GT: ``X_i,i`` the back-projected GT depth in the frame's own camera, ``X_i,1`` the same points in
  the reference camera (GT poses); pixels without depth are invalid;
* prediction: ``pts_ref`` (channels 0-2), ``pts_self`` (3-5), confidence ``c = 1 + exp(logit)``;
* normalisation (``avg_dis``, our choice for scale-free toy scenes): reference-frame points of the
  whole clip are divided by their mean distance to the origin (prediction and GT separately); each
  view's own-frame points by their own mean distance;
* loss per head: ``mean_valid(c * ||x_pred - x_gt|| - alpha * log c)`` with ``alpha = 0.2``; the
  total is the reference-frame term plus the own-frame term;
* optional (``must3r_loss.attn_corr`` > 0, our addition for training from scratch): the
  cross-attention of the first ``attn_corr_heads`` heads of every decoder block is pulled towards the
  GT correspondences of each query patch among the memory's patches (:func:`attention_targets`,
  :func:`attention_correspondence_loss`), a cross-entropy averaged over blocks, heads and the query
  patches that have a correspondence.

Held-out metrics (``run.eval_every``), on two validation scenes streamed in order: the relative depth
error (AbsRel after per-frame median scaling), the reference-frame pointmap error (after one median
scale per clip, divided by the GT's mean distance), how much the decoder reads its memory
(:func:`memory_use`) and the look-alike pick rate
(:func:`lookalike_picks`: is the nearest predicted 3-D centroid to the target's earlier centroid the
target's, rather than its exact copy's?).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from threeam.errors import InputError
from threeam.train.config import ATTENTION_TARGET_MODES, TrainConfig

__all__ = ["must3r_config_for", "build_must3r_for_training", "gt_pointmaps", "pointmap_loss", "stream_clip",
           "lookalike_picks", "memory_use", "must3r_task", "CONF_ALPHA", "GTPointmaps",
           "attention_targets", "CrossAttentionRecorder", "attention_correspondence_loss"]

CONF_ALPHA = 0.2
"""Weight of the log-confidence regulariser (DUSt3R / MUSt3R: 0.2)."""


def must3r_config_for(config: TrainConfig):
    from threeam.models.must3r.config import get_must3r_config
    from threeam.models.three_am import is_tiny_must3r, tiny_must3r_config

    name = config.model.must3r
    return tiny_must3r_config(name) if is_tiny_must3r(name) else get_must3r_config(name)


def stream_res(config: TrainConfig) -> int:
    """MUSt3R input long side: ``model.must3r_res``; by default 64 for a tiny model (as `3am_tiny`),
    else the model's training size."""
    from threeam.models.three_am import get_three_am_config, is_tiny_must3r

    if config.model.must3r_res is not None:
        return int(config.model.must3r_res)
    if is_tiny_must3r(config.model.must3r):
        return int(get_three_am_config("3am_tiny").must3r_res)  # the size three_am_config_from_sam2 gives it
    return int(must3r_config_for(config).encoder.img_size[0])


def build_must3r_for_training(config: TrainConfig):
    """A `Must3r` with the random-weights rule of `threeam.predictor.build` (stream ``"must3r"``:
    the MUSt3R part of a random 3AM of the same seed), or ``model.must3r_checkpoint``."""
    from threeam.models.must3r.model import Must3r
    from threeam.predictor.build import random_init_

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Must3r(must3r_config_for(config))
    random_init_(model, config.seed, "must3r")
    if config.model.must3r_checkpoint:
        from threeam.train.export import load_part_weights

        load_part_weights(model, config.model.must3r_checkpoint, part="must3r")
    return model


@dataclass
class GTPointmaps:
    """GT of one clip at network resolution: images (T, 3, h, w), pts_self / pts_ref (T, h, w, 3),
    valid (T, h, w) bool, net_to_orig (h, w) flat original-pixel index of each network pixel."""

    images: torch.Tensor
    pts_self: torch.Tensor
    pts_ref: torch.Tensor
    valid: torch.Tensor
    rows: np.ndarray
    cols: np.ndarray


def _net_to_orig(to_orig: np.ndarray, h: int, w: int, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Original pixel (row, col) under each network pixel's centre, (h, w) int arrays."""
    u = (np.arange(w) + 0.5) * to_orig[0, 0] + to_orig[0, 2]
    v = (np.arange(h) + 0.5) * to_orig[1, 1] + to_orig[1, 2]
    cols = np.clip(np.floor(u).astype(np.int64), 0, W - 1)
    rows = np.clip(np.floor(v).astype(np.int64), 0, H - 1)
    return np.broadcast_to(rows[:, None], (h, w)).copy(), np.broadcast_to(cols[None, :], (h, w)).copy()


def network_pixel_grid(H: int, W: int, res: int) -> tuple[np.ndarray, np.ndarray]:
    """The original pixel (row, col) under each pixel of MUSt3R's network input (crop16 at ``res``) of an
    H x W frame: two (h, w) int arrays, as `gt_frame_points` returns them (for `_to_frame` without GT)."""
    from threeam.models.must3r.preprocess import preprocess_frame

    prep = preprocess_frame(np.zeros((H, W, 3), np.uint8), res=res, mode="crop16")
    h, w = prep.true_shape
    return _net_to_orig(prep.to_orig, h, w, H, W)


def gt_frame_points(rgb: np.ndarray, depth: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray,
                    ref_cam_to_world: np.ndarray, res: int):
    """One frame's GT at MUSt3R's network resolution (crop16 at ``res``).

    rgb (H, W, 3) uint8, depth (H, W) metres (0 invalid), K (3, 3), cam_to_world and ref_cam_to_world
    (4, 4): this frame's and the reference camera's poses. Returns ``(prepared frame, pts_self (h, w, 3),
    pts_ref (h, w, 3), valid (h, w), rows, cols)``: numpy float64 points in this camera's and in the
    reference camera's frame, and the original pixel (row, col) under each network pixel's centre.
    """
    from threeam.models.must3r.preprocess import preprocess_frame

    H, W = depth.shape
    prep = preprocess_frame(rgb, res=res, mode="crop16")
    h, w = prep.true_shape
    rows, cols = _net_to_orig(prep.to_orig, h, w, H, W)
    d = depth[rows, cols].astype(np.float64)
    pix = np.stack([cols, rows, np.ones_like(cols)], -1).astype(np.float64)  # (h, w, 3) integer pixel centres
    p_self = (pix @ np.linalg.inv(K).T) * d[..., None]
    rel = np.linalg.inv(ref_cam_to_world) @ cam_to_world
    p_ref = p_self @ rel[:3, :3].T + rel[:3, 3]
    return prep, p_self, p_ref, d > 0, rows, cols


def gt_pointmaps(rgb: np.ndarray, depth: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray,
                 res: int) -> GTPointmaps:
    """Preprocess a clip for MUSt3R (crop16 at ``res``) and build its GT pointmaps.

    rgb (T, H, W, 3) uint8, depth (T, H, W) metres (0 invalid), K (T, 3, 3), cam_to_world (T, 4, 4);
    frame 0 is the reference camera.
    """
    images, selfs, refs, valids = [], [], [], []
    rows = cols = None
    for t in range(depth.shape[0]):
        prep, p_self, p_ref, valid, rows, cols = gt_frame_points(rgb[t], depth[t], K[t], cam_to_world[t],
                                                                 cam_to_world[0], res)
        images.append(prep.image)
        selfs.append(p_self)
        refs.append(p_ref)
        valids.append(valid)
    f = lambda xs: torch.from_numpy(np.stack(xs)).float()  # noqa: E731
    return GTPointmaps(torch.stack(images), f(selfs), f(refs), torch.from_numpy(np.stack(valids)), rows, cols)


def stream_clip(model, images: torch.Tensor) -> list:
    """MUSt3R over a clip with gradients: ``init_memory`` on frame 0, ``add_frames`` for each later
    frame. images (T, 3, h, w) -> list of T `Must3rPointmaps` with batch 1 (``pts_ref`` (1, h, w, 3))."""
    from threeam.models.must3r.postprocess import postprocess

    act = model.config.decoder.pointmaps_activation
    out = model.init_memory(images[:1][None], keep_levels=())
    res = [postprocess(out.pointmaps_raw[:, 0], act)]
    memory = out.memory
    for t in range(1, images.shape[0]):
        out = model.add_frames(memory, images[t:t + 1][None], keep_levels=())
        memory = out.memory
        res.append(postprocess(out.pointmaps_raw[:, 0], act))
    return res


def _avg_dis(pts: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    n = pts.norm(dim=-1)[valid]
    return n.mean().clamp_min(1e-8) if n.numel() else pts.new_ones(())


def pointmap_loss(pred: Sequence, gt: GTPointmaps, alpha: float = CONF_ALPHA,
                  ref_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Confidence-weighted regression of normalised pointmaps (see the module docstring);
    ``ref_weight`` scales the reference-frame term (1.0: MUSt3R's loss).

    Returns ``loss`` and the unweighted mean regression errors ``regr_ref`` / ``regr_self``."""
    device = pred[0].pts_ref.device
    valid = gt.valid.to(device)
    if not bool(valid.any()):
        raise InputError("the clip has no pixel with valid depth")
    p_ref = torch.cat([p.pts_ref for p in pred])  # (T, h, w, 3)
    p_self = torch.cat([p.pts_self for p in pred])
    conf = torch.cat([p.conf for p in pred])  # (T, h, w)
    g_ref, g_self = gt.pts_ref.to(device), gt.pts_self.to(device)
    pr = p_ref / _avg_dis(p_ref, valid)
    gr = g_ref / _avg_dis(g_ref, valid)
    ps = torch.stack([p_self[t] / _avg_dis(p_self[t], valid[t]) for t in range(len(pred))])
    gs = torch.stack([g_self[t] / _avg_dis(g_self[t], valid[t]) for t in range(len(pred))])
    e_ref = (pr - gr).norm(dim=-1)[valid]
    e_self = (ps - gs).norm(dim=-1)[valid]
    c = conf[valid]
    loss = ref_weight * (c * e_ref - alpha * c.log()).mean() + (c * e_self - alpha * c.log()).mean()
    return {"loss": loss, "regr_ref": e_ref.mean().detach(), "regr_self": e_self.mean().detach()}


def attention_targets(gt: GTPointmaps, K: np.ndarray, cam_to_world: np.ndarray, patch: int,
                      depth_tol: float = 0.05, mode: str = "reference_first") -> list[torch.Tensor]:
    """GT correspondences of every frame's patches among the patches of the frames before it.

    gt: the clip's `GTPointmaps` (network resolution h x w, frame 0 the reference camera); K
    (T, 3, 3) and cam_to_world (T, 4, 4) of the original frames. Every valid pixel of frame ``t`` is
    projected into each earlier frame ``s``; where it lands inside the crop on a pixel whose depth
    agrees within ``depth_tol`` (relative: the point is visible there), it votes for that pixel's
    patch. Returns for ``t = 1 .. T-1`` a (N, t * N) float tensor (N = (h/p)(w/p) patches, columns in
    the memory's order: frame 0's patches, then frame 1's, ...) whose rows are the normalised votes
    (a row of zeros: the patch is seen in no earlier frame). ``mode``: ``"all"`` keeps every earlier
    frame's votes; ``"reference_first"`` lets a patch seen in frame 0 vote for frame 0's patches only:
    the reference frame's tokens are the only ones whose own geometry is the answer (reference-frame
    points), while the other frames' tokens hold their own estimates of it, so attending to them can
    propagate a wrong answer (docs/evidence.md); ``"earliest"`` extends that along the stream: every
    patch votes only in the earliest frame that sees it (the fewest hops from the reference).
    """
    if mode not in ATTENTION_TARGET_MODES:
        raise InputError(f"attention target mode must be one of {ATTENTION_TARGET_MODES}, got {mode!r}")
    from threeam.data.geometry import project_points, transform_points

    T, h, w, _ = gt.pts_ref.shape
    if h % patch or w % patch:
        raise InputError(f"network size {h}x{w} is not a multiple of the patch size {patch}")
    gh, gw = h // patch, w // patch
    N = gh * gw
    rows, cols = gt.rows[:, 0].astype(np.float64), gt.cols[0].astype(np.float64)
    # network pixel (i, j) sits over original pixel (rows[i], cols[j]): invert that linear map
    ai, bi = (np.polyfit(rows, np.arange(h), 1) if h > 1 else (0.0, 0.0))
    aj, bj = (np.polyfit(cols, np.arange(w), 1) if w > 1 else (0.0, 0.0))
    w2c0 = np.linalg.inv(cam_to_world[0])
    ref_to_cam = [np.linalg.inv(w2c0 @ cam_to_world[s]) for s in range(T)]
    depth = gt.pts_self[..., 2].numpy().astype(np.float64)
    valid = gt.valid.numpy()
    qpatch = ((np.arange(h)[:, None] // patch) * gw + np.arange(w)[None, :] // patch)  # (h, w)
    out = []
    for t in range(1, T):
        votes = np.zeros((N, t * N))
        v = valid[t]
        pts = gt.pts_ref[t].numpy().astype(np.float64)[v]  # (P, 3) in the reference camera
        q = qpatch[v]
        for s in range(t):
            uv, z = project_points(K[s], transform_points(ref_to_cam[s], pts))
            u, vv = uv[:, 0], uv[:, 1]
            front = z > 1e-6
            # original pixel (floor) -> network pixel (points behind the camera: NaN, masked below)
            with np.errstate(invalid="ignore"):
                i = np.round(ai * np.floor(vv) + bi).astype(np.int64) if h > 1 else np.zeros(len(z), np.int64)
                j = np.round(aj * np.floor(u) + bj).astype(np.int64) if w > 1 else np.zeros(len(z), np.int64)
            inside = front & np.isfinite(u) & np.isfinite(vv) & (i >= 0) & (i < h) & (j >= 0) & (j < w)
            ii, jj = np.clip(i, 0, h - 1), np.clip(j, 0, w - 1)
            d_s = depth[s][ii, jj]
            seen = inside & valid[s][ii, jj] & (np.abs(z - d_s) <= depth_tol * np.maximum(d_s, 1e-6))
            np.add.at(votes, (q[seen], s * N + qpatch[ii[seen], jj[seen]]), 1.0)
        if mode == "reference_first":
            in_ref = votes[:, :N].sum(1) > 0
            votes[in_ref, N:] = 0.0
        elif mode == "earliest":
            per_frame = votes.reshape(N, t, N).sum(2) > 0  # (N, t): which earlier frames see the patch
            first = np.where(per_frame.any(1), per_frame.argmax(1), t)  # t: seen in none
            keep = np.arange(t)[None, :] == first[:, None]
            votes = (votes.reshape(N, t, N) * keep[:, :, None]).reshape(N, t * N)
        tot = votes.sum(1, keepdims=True)
        out.append(torch.from_numpy(np.divide(votes, tot, out=np.zeros_like(votes), where=tot > 0)).float())
    return out


class CrossAttentionRecorder:
    """Records the cross-attention log-probabilities of the first ``heads`` heads of every decoder
    block while it is entered (``with CrossAttentionRecorder(model, heads) as rec:``).

    ``rec.records`` holds one (B, heads, N, M) tensor per block call in call order, with gradients:
    for `stream_clip` over T frames, ``records[t * depth + l]`` is frame ``t``'s block ``l``.
    """

    def __init__(self, model, heads: int = 1):
        self.blocks = [blk.cross_attn for blk in model.decoder.blocks_dec]
        self.heads = int(heads)
        self.records: list[torch.Tensor] = []
        self._handles: list = []

    def _hook(self, module, args, output) -> None:
        x, keys = args[0], args[1]
        B, N, C = x.shape
        M = keys.shape[1]
        nh = module.num_heads
        hd = C // nh
        hs = min(self.heads, nh)
        q = module.projq(x).reshape(B, N, nh, hd)[:, :, :hs].transpose(1, 2).float()
        k = keys.reshape(B, M, nh, hd)[:, :, :hs].transpose(1, 2).float()
        self.records.append(torch.log_softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1))

    def __enter__(self) -> "CrossAttentionRecorder":
        self.records = []
        self._handles = [b.register_forward_hook(self._hook) for b in self.blocks]
        return self

    def __exit__(self, *exc) -> None:
        for hnd in self._handles:
            hnd.remove()
        self._handles = []


def attention_correspondence_loss(records: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
                                  depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of recorded cross-attention (`CrossAttentionRecorder` over `stream_clip`) against
    `attention_targets`, averaged over frames 1.., blocks, recorded heads and query patches that have
    a correspondence. Returns ``(loss, top1)``: top1 is the share of those queries whose most attended
    memory patch has a GT vote (no gradient)."""
    losses, hits = [], []
    for t, tgt in enumerate(targets, start=1):
        rows = tgt.sum(1) > 0
        if not bool(rows.any()):
            continue
        for l in range(depth):
            logp = records[t * depth + l][0]  # (heads, N, M)
            if logp.shape[-1] != tgt.shape[1] or logp.shape[-2] != tgt.shape[0]:
                raise InputError(f"attention of frame {t} block {l} is {tuple(logp.shape[-2:])}, its target "
                                 f"{tuple(tgt.shape)}: the clip and the memory disagree")
            g = tgt.to(logp.device)
            losses.append(-(g[None, rows] * logp[:, rows]).sum(-1).mean())
            with torch.no_grad():
                top = logp[:, rows].argmax(-1)  # (heads, R)
                hits.append((g[rows].gather(1, top.T).T > 0).float().mean())
    if not losses:
        z = records[0].new_zeros(()) if records else torch.zeros(())
        return z, z.detach()
    return torch.stack(losses).mean(), torch.stack(hits).mean()


# ------------------------------------------------------------------------------------ metrics

def _families(meta: Mapping[str, Any]) -> list[list[int]]:
    """Groups of look-alike instance ids (an original and its exact copies) from the generator's meta."""
    groups: dict[int, list[int]] = {}
    for o in meta.get("objects", []):
        if o.get("distractor_of") is not None:
            groups.setdefault(int(o["distractor_of"]), [int(o["distractor_of"])]).append(int(o["id"]))
    return [g for g in groups.values() if len(g) >= 2]


def lookalike_picks(ids: Sequence[np.ndarray], points: Sequence[np.ndarray], meta: Mapping[str, Any],
                    min_pixels: int = 20, valid: Sequence[np.ndarray] | None = None) -> list[tuple[bool, int]]:
    """Look-alike hand-off trials on one stream.

    ids: per frame (H, W) instance ids; points: per frame (H, W, 3) 3-D points in one common frame
    (e.g. MUSt3R's reference-frame pointmap resampled to the frame, or GT world points); ``valid``:
    optional per-frame (H, W) bool of usable points. For every look-alike family and member ``a``:
    the target is ``a``'s mean point in the first frame showing it (>= ``min_pixels``); every later
    frame showing ``a`` and another member is a trial whose pick is the member (visible there) with
    the nearest mean point. Returns ``[(correct, n_candidates)]``.
    """
    trials: list[tuple[bool, int]] = []
    for fam in _families(meta):
        for a in fam:
            target = None
            for t in range(len(ids)):
                ok = np.ones(ids[t].shape, bool) if valid is None else valid[t]
                vis = {m: (ids[t] == m) & ok for m in fam}
                vis = {m: v for m, v in vis.items() if v.sum() >= min_pixels}
                if a not in vis:
                    continue
                if target is None:
                    target = points[t][vis[a]].mean(0)
                    continue
                if len(vis) < 2:
                    continue
                cents = {m: points[t][v].mean(0) for m, v in vis.items()}
                pick = min(cents, key=lambda m: float(np.linalg.norm(cents[m] - target)))
                trials.append((pick == a, len(vis)))
    return trials


def _to_frame(pts: torch.Tensor, rows: np.ndarray, cols: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Network-resolution points (h, w, 3) spread back to the (H, W) frame (nearest network pixel);
    returns points and a valid mask (pixels outside the crop are invalid)."""
    out = np.zeros((H, W, 3), np.float32)
    ok = np.zeros((H, W), bool)
    p = pts.detach().float().cpu().numpy()
    h, w = rows.shape
    r0, r1 = rows[0, 0], rows[-1, 0]
    c0, c1 = cols[0, 0], cols[0, -1]
    rr = np.arange(H)
    cc = np.arange(W)
    # nearest network row / col for every frame row / col
    ri = np.clip(np.round((rr - r0) / max(r1 - r0, 1) * (h - 1)).astype(int), 0, h - 1)
    ci = np.clip(np.round((cc - c0) / max(c1 - c0, 1) * (w - 1)).astype(int), 0, w - 1)
    out[:] = p[ri[:, None], ci[None, :]]
    inside = ((rr >= r0 - 1) & (rr <= r1 + 1))[:, None] & ((cc >= c0 - 1) & (cc <= c1 + 1))[None, :]
    ok[:] = inside
    return out, ok


def _net_images(scene, frames: Sequence[int], res: int) -> torch.Tensor:
    """Frames of ``scene`` preprocessed for MUSt3R (crop16 at ``res``): (len(frames), 3, h, w)."""
    from threeam.models.must3r.preprocess import preprocess_frame

    return torch.stack([preprocess_frame(scene.frame(t).rgb, res=res, mode="crop16").image for t in frames])


def evaluate_stream(model, scene, frames: Sequence[int], res: int) -> dict[str, Any]:
    """Stream ``frames`` of ``scene`` through MUSt3R (no gradients) and measure it: ``abs_rel``,
    ``pointmap_error``, look-alike ``trials`` of the prediction and of the GT points."""
    fr = [scene.frame(t) for t in frames]
    gt = gt_pointmaps(np.stack([f.rgb for f in fr]), np.stack([f.depth for f in fr]), np.stack([f.K for f in fr]),
                      np.stack([f.cam_to_world for f in fr]), res)
    device = next(model.parameters()).device
    with torch.no_grad():
        pred = stream_clip(model, gt.images.to(device))
    rels, ref_err = [], []
    p_ref_all = torch.cat([p.pts_ref for p in pred]).cpu()
    valid = gt.valid
    g_ref = gt.pts_ref
    for t, p in enumerate(pred):
        v = valid[t]
        if not v.any():
            continue
        dp, dg = p.pts_self[0, ..., 2].cpu()[v], gt.pts_self[t, ..., 2][v]
        s = torch.median(dg / dp.clamp_min(1e-6))
        rels.append(float(((dp * s - dg).abs() / dg).mean()))
    num = g_ref.norm(dim=-1)[valid]
    den = p_ref_all.norm(dim=-1)[valid].clamp_min(1e-8)
    scale = torch.median(num / den)
    ref_err = float(((p_ref_all * scale - g_ref).norm(dim=-1)[valid]).mean() / num.mean().clamp_min(1e-8))
    H, W = fr[0].rgb.shape[:2]
    ids = [f.instance_ids for f in fr]
    pts, oks = zip(*[_to_frame(pred[t].pts_ref[0], gt.rows, gt.cols, H, W) for t in range(len(fr))])
    world = []  # GT control: the true world points
    for f in fr:
        rows, cols = np.nonzero(np.ones((H, W), bool))
        pix = np.stack([cols, rows, np.ones_like(cols)], -1).astype(np.float64)
        p_cam = (pix @ np.linalg.inv(f.K).T) * f.depth.reshape(-1, 1)
        world.append((p_cam @ f.cam_to_world[:3, :3].T + f.cam_to_world[:3, 3]).reshape(H, W, 3))
    return {"abs_rel": float(np.mean(rels)) if rels else math.nan, "pointmap_error": ref_err,
            "trials": lookalike_picks(ids, pts, scene.meta, valid=oks),
            "gt_trials": lookalike_picks(ids, world, scene.meta)}


def memory_use(model, images: torch.Tensor, other: torch.Tensor) -> float:
    """How much the decoder reads its memory: the relative change of frame 1's reference-frame
    pointmap when the reference frame 0 is replaced by ``other``.

    images: (T >= 2, 3, h, w) one clip; other: (3, h, w) a frame of another scene, same size.
    Returns ``mean |p - p'| / mean |p|`` over frame 1's pixels (no gradients). A model that
    registers views must change its answer when the reference changes (random weights: about 1);
    one whose cross-attention ignores the memory content gives about 0 (docs/evidence.md).
    """
    if images.shape[0] < 2 or other.shape != images.shape[1:]:
        raise InputError(f"memory_use needs a clip of >= 2 frames and a frame of the same shape, got "
                         f"{tuple(images.shape)} and {tuple(other.shape)}")
    with torch.no_grad():
        p = stream_clip(model, images[:2])[1].pts_ref
        q = stream_clip(model, torch.stack([other, images[1]]))[1].pts_ref
    return float((p - q).norm(dim=-1).mean() / p.norm(dim=-1).mean().clamp_min(1e-8))


def summarize_trials(trials: Sequence[tuple[bool, int]]) -> dict[str, float]:
    if not trials:
        return {"pick_rate": math.nan, "chance": math.nan, "trials": 0.0}
    return {"pick_rate": float(np.mean([c for c, _ in trials])), "chance": float(np.mean([1.0 / n for _, n in trials])),
            "trials": float(len(trials))}


def lookalike_gate(model, scenes: Sequence, res: int, stride: int = 2, memory_scenes: int = 6) -> dict[str, Any]:
    """The look-alike gate of a MUSt3R (issue #14: it must pick the right one of two look-alikes): each
    of ``scenes`` streamed every ``stride``-th frame (`evaluate_stream`), plus `memory_use` on the first
    two frames of the first ``memory_scenes`` scenes (each against the next one's reference frame).

    Returns ``trials`` (the concatenated per-scene ``(correct, candidates)`` list, in scene order, so
    trial k is the same question for any model: paired comparisons), ``gt_trials`` (GT world points,
    the control), ``memory_use`` (mean; NaN when fewer than two scenes) and `summarize_trials`'s
    ``pick_rate`` / ``chance`` / ``trials`` count under ``summary``.
    """
    if stride < 1:
        raise InputError(f"lookalike_gate: stride must be >= 1, got {stride}")
    trials: list = []
    gt_trials: list = []
    for scene in scenes:
        r = evaluate_stream(model, scene, list(range(0, len(scene), stride)), res)
        trials += r["trials"]
        gt_trials += r["gt_trials"]
    return {"trials": trials, "gt_trials": gt_trials,
            "memory_use": ring_memory_use(model, list(scenes)[:memory_scenes], res), "summary": summarize_trials(trials)}


def ring_memory_use(model, scenes: Sequence, res: int) -> float:
    """Mean `memory_use` of each scene's first two frames with the reference frame replaced by the next
    scene's (cyclically); scenes whose frame sizes differ from the next one's are left out. NaN when fewer
    than two scenes (no other reference to swap in) or none comparable."""
    if len(scenes) < 2:
        return math.nan
    device = next(model.parameters()).device
    clips = [_net_images(sc, [0, 1], res).to(device) for sc in scenes]
    uses = []
    for j, clip in enumerate(clips):
        other = clips[(j + 1) % len(clips)][0]
        if other.shape == clip.shape[1:]:
            uses.append(memory_use(model, clip, other))
    return float(np.mean(uses)) if uses else math.nan


def make_must3r_evaluator(config: TrainConfig):
    from threeam.data.scene_store import cached_scene, train_scene_seed
    from threeam.train.clips import scene_seed, synthetic_scene_config

    state: dict[str, Any] = {}
    res = stream_res(config)

    def evaluate(model: nn.Module) -> dict[str, float]:
        net = model.module if hasattr(model, "module") else model
        if "scenes" not in state:
            cfg = synthetic_scene_config(config)
            state["scenes"] = [cached_scene(cfg, train_scene_seed(scene_seed(config), "validation", j),
                                            config.data.scene_cache or None, name=f"val_{j}") for j in range(2)]
        was = net.training
        net.eval()
        rows, trials = [], []
        try:
            for scene in state["scenes"]:
                n = len(scene)
                k = min(n, max(config.run.eval_items, 2))
                frames = sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))
                r = evaluate_stream(net, scene, frames, res)
                rows.append(r)
                trials += r["trials"]
            use = ring_memory_use(net, state["scenes"], res)
        finally:
            net.train(was)
        s = summarize_trials(trials)
        return {"abs_rel": float(np.nanmean([r["abs_rel"] for r in rows])),
                "pointmap_error": float(np.nanmean([r["pointmap_error"] for r in rows])),
                "lookalike_pick_rate": s["pick_rate"], "lookalike_chance": s["chance"],
                "memory_use": use}

    return evaluate


# ------------------------------------------------------------------------------------ task

def must3r_task(config: TrainConfig, ctx) -> "TrainTask":  # noqa: F821
    """Build MUSt3R, its step function (streamed pointmap regression) and one clip source per data source."""
    from threeam.train.clips import ClipDrawer, clip_source, open_source_scenes
    from threeam.train.recipes import TrainTask

    model = build_must3r_for_training(config)
    res = stream_res(config)
    lcfg = config.must3r_loss
    patch = int(model.config.decoder.patch_size)
    depth = len(model.decoder.blocks_dec)

    def make_item(clip, data, item_seed):
        if data.depth is None or data.cam_to_world is None:
            raise InputError(f"the must3r task needs depth and poses; scene {clip.scene_name} has none")
        gt = gt_pointmaps(data.rgb, data.depth, data.K, data.cam_to_world, res)
        item = {"gt": gt}
        if lcfg.attn_corr > 0:
            item["attn_targets"] = attention_targets(gt, data.K, data.cam_to_world, patch,
                                                     mode=lcfg.attn_corr_targets)
        return item

    def step(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        net = model.module if hasattr(model, "module") else model
        gt: GTPointmaps = batch["gt"]
        device = next(net.parameters()).device
        if lcfg.attn_corr > 0:
            with CrossAttentionRecorder(net, lcfg.attn_corr_heads) as rec:
                pred = stream_clip(net, gt.images.to(device))
        else:
            pred = stream_clip(net, gt.images.to(device))
        out = pointmap_loss(pred, gt, lcfg.conf_alpha, lcfg.ref_weight)
        logs = {"regr_ref": out["regr_ref"], "regr_self": out["regr_self"]}
        loss = out["loss"]
        if lcfg.attn_corr > 0:
            a_loss, top1 = attention_correspondence_loss(rec.records, batch["attn_targets"], depth)
            loss = loss + lcfg.attn_corr * a_loss
            logs.update(attn_corr=a_loss.detach(), attn_top1=top1)
        return {"loss": loss, **logs}

    sources = {}
    for k, src in enumerate(config.data.sources):
        drawer = ClipDrawer(open_source_scenes(src, config, k), src, config, seed=config.seed + k)
        sources[src.name] = clip_source(drawer, make_item)
    if not sources:
        raise InputError("the must3r task needs at least one data source (data.sources)")
    evaluate = make_must3r_evaluator(config) if config.run.eval_every else None
    return TrainTask(model=model, step_fn=step, sources=sources, evaluate=evaluate)
