"""Correspondence-supervised memory attention for SAM 2 trained from scratch (``sam2_attn.weight``).

Why (docs/evidence.md, "What blocks the gates"): a tiny SAM 2 pretrained from random weights on
generated clips learns to ignore its memory: its memory features become almost constant (their
variation around their mean falls from 1.25 at random weights to 0.14) and the tracked masks no
longer depend on the prompt. Real SAM 2 starts from SAM and learns on SA-V; our toy has neither.
This optional term pulls the memory attention of each tracked frame towards the memory tokens that
show the same surface (GT depth and poses), which makes the memory keys - and so the memory
features - carry appearance again. Our addition, off by default; the toy recipe applies it to
continuous clips only (small motions, as in ordinary videos), so SAM 2 is not taught wide-baseline
matching, which is what 3AM's geometry is for.

Pieces:

* :func:`token_votes`: for two posed RGB-D frames, which of the second frame's stride-16 tokens
  (the SAM 2 grid ``g x g`` over the frame resized to a square) each token of the first one shows;
* :class:`MemoryAttentionRecorder`: records, per tracked frame, the memory frames in the order
  SAM 2 concatenates them and the log-attention of the first heads of every memory-attention layer;
* :func:`memory_attention_loss`: cross-entropy of those against the votes.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from threeam.data.geometry import backproject, seen_by_depth_frame
from threeam.errors import InputError

__all__ = ["token_votes", "MemoryAttentionRecorder", "memory_attention_loss"]


def _token_index(rows: np.ndarray, cols: np.ndarray, H: int, W: int, g: int) -> np.ndarray:
    """Original pixel -> index of the SAM 2 token (g x g grid over the square-resized frame)."""
    ti = np.clip((rows * g) // H, 0, g - 1)
    tj = np.clip((cols * g) // W, 0, g - 1)
    return ti * g + tj


def token_votes(depth_a: np.ndarray, K_a: np.ndarray, c2w_a: np.ndarray, depth_b: np.ndarray, K_b: np.ndarray,
                c2w_b: np.ndarray, grid: int, depth_tol: float = 0.05, step: int = 2) -> np.ndarray:
    """Token correspondences from frame ``a`` to frame ``b``.

    depth (H, W) metres (0 invalid), K (3, 3), c2w (4, 4) of both frames (same size); ``grid``: tokens
    per side. Every ``step``-th valid pixel of ``a`` is moved into ``b``; where it lands inside ``b`` on
    a pixel whose depth agrees within ``depth_tol`` (relative), it votes for that pixel's token.
    Returns (grid**2, grid**2) float32 votes, rows normalised to sum 1 (zero rows: not seen in ``b``).
    """
    H, W = depth_a.shape
    if depth_b.shape != (H, W):
        raise InputError(f"frames differ in size: {depth_a.shape} and {depth_b.shape}")
    n = grid * grid
    r, c = np.nonzero(depth_a[::step, ::step] > 0)
    r, c = r * step, c * step
    votes = np.zeros((n, n), np.float64)
    if r.size:
        pts = backproject(depth_a, K_a, c2w_a, (r, c))
        seen, rb, cb = seen_by_depth_frame(pts, depth_b, K_b, c2w_b, depth_tol)
        np.add.at(votes, (_token_index(r[seen], c[seen], H, W, grid), _token_index(rb[seen], cb[seen], H, W, grid)), 1.0)
    tot = votes.sum(1, keepdims=True)
    return np.divide(votes, tot, out=np.zeros_like(votes), where=tot > 0).astype(np.float32)


class MemoryAttentionRecorder:
    """While entered, records SAM 2's memory attention of every tracked frame.

    ``rec.calls``: one dict per memory-conditioned call, in call order: ``frame`` (the tracked frame),
    ``memory`` (frames whose spatial memories form the keys, in SAM 2's order: selected conditioning
    frames, then recent frames), ``logp`` (one (B, heads, HW, M * HW) tensor per memory-attention
    layer, log-softmax over the spatial memory keys, with gradients). Object-pointer keys are left
    out (their attention is not supervised). Uses SAM 2's public observers (``memory_observer`` of
    the model, ``attention_observer`` of each layer's ``cross_attn_image``), restored on exit.
    """

    def __init__(self, sam2, heads: int = 1):
        self.sam2 = sam2
        self.heads = int(heads)
        self.calls: list[dict[str, Any]] = []
        self._layers: list = []

    def _on_memory(self, frame_idx: int, memory_frames: list[int]) -> None:
        self.calls.append({"frame": int(frame_idx), "memory": [int(t) for t in memory_frames], "logp": []})

    def _on_attention(self, q: torch.Tensor, k: torch.Tensor, num_k_exclude_rope: int) -> None:
        call = self.calls[-1] if self.calls else None
        if call is None or not call["memory"]:
            return
        n_sp = len(call["memory"]) * q.shape[-2]
        if n_sp != k.shape[-2] - num_k_exclude_rope:
            raise InputError(f"memory attention has {k.shape[-2] - num_k_exclude_rope} spatial keys for "
                             f"{len(call['memory'])} memory frames of {q.shape[-2]} tokens")
        hs = min(self.heads, q.shape[1])
        logits = q[:, :hs].float() @ k[:, :hs, :n_sp].float().transpose(-1, -2) / math.sqrt(q.shape[-1])
        call["logp"].append(torch.log_softmax(logits, dim=-1))

    def __enter__(self) -> "MemoryAttentionRecorder":
        self.calls = []
        self.sam2.memory_observer = self._on_memory
        self._layers = [layer.cross_attn_image for layer in self.sam2.memory_attention.layers]
        if not all(hasattr(attn, "attention_observer") for attn in self._layers):
            self.sam2.memory_observer = None
            raise InputError("memory-attention supervision needs RoPE cross-attention in every memory-attention layer")
        for attn in self._layers:
            attn.attention_observer = self._on_attention
        return self

    def __exit__(self, *exc) -> None:
        self.sam2.memory_observer = None
        for attn in self._layers:
            attn.attention_observer = None
        self._layers = []


def memory_attention_loss(calls: Sequence[dict], votes) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of recorded memory attention (`MemoryAttentionRecorder`) against GT votes.

    ``votes(a, b)`` returns the (HW, HW) `token_votes` of tracked frame ``a`` into memory frame ``b``
    as a tensor. Averaged over calls, layers, recorded heads and query tokens seen in some memory
    frame. Returns ``(loss, top1)``: top1 is the share of those queries whose most attended memory
    token has a vote (no gradient). Zero loss when no call has a supervised query.
    """
    losses, hits = [], []
    for call in calls:
        if not call["memory"] or not call["logp"]:
            continue
        tgt = torch.cat([votes(call["frame"], s) for s in call["memory"]], dim=1)  # (HW, M*HW)
        tot = tgt.sum(1, keepdim=True)
        rows = tot[:, 0] > 0
        if not bool(rows.any()):
            continue
        tgt = tgt[rows] / tot[rows]
        for logp in call["logp"]:
            lp = logp[0][:, rows]  # (heads, R, M*HW)
            if lp.shape[-1] != tgt.shape[-1]:
                raise InputError(f"memory attention has {lp.shape[-1]} spatial keys, the votes {tgt.shape[-1]}: "
                                 "the memory order and the model disagree")
            g = tgt.to(lp.device)
            losses.append(-(g[None] * lp).sum(-1).mean())
            with torch.no_grad():
                top = lp.argmax(-1)  # (heads, R)
                hits.append((g.gather(1, top.T).T > 0).float().mean())
    if not losses:
        z = torch.zeros(())
        return z, z
    return torch.stack(losses).mean(), torch.stack(hits).mean()
