"""MUSt3R decoder: one ViT-B decoder shared by all views, cross-attending to a per-layer token memory.

Memory semantics (as in the official inference class ``MUSt3R``):

* The memory holds, for every decoder layer ``l``, the tokens *entering* block ``l`` of every frame
  written so far, in the stored form of the memory mode (see :class:`DecoderBlock`), plus an image
  label per token.
* When frames are written (``render=False``), their layer-``l`` tokens are appended before block
  ``l`` runs, and each written frame is masked from its own tokens (except a single frame starting an
  empty memory, which attends to itself).
* ``image2_embed`` is added to every frame except frame 0 of a call that starts the memory.
* With the feedback MLP, ``offset = feedback_layer(feedback_norm(tokens entering the last block))`` is
  added to the stored tokens of layers ``0 .. depth-2`` after the pass (not to the current pass).
* ``render=True`` reads the memory without changing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from threeam.errors import InputError
from threeam.models.must3r.blocks import DecoderBlock, Mlp
from threeam.models.must3r.config import MEMORY_MODES, Must3rDecoderConfig
from threeam.models.must3r.head import LinearHead
from threeam.models.must3r.rope import RoPE2D, parse_rope_name

__all__ = ["Must3rMemory", "Must3rDecoderOutput", "Must3rDecoder"]


@dataclass
class Must3rMemory:
    """Per-layer token memory.

    Attributes:
        layers: ``depth`` tensors (B, M, C) (``raw``/``norm_y``) or (B, M, 2C) (``kv``).
        labels: (B, M) int64, the image index of each memory token.
        num_images: how many images were ever written (the next image gets this label).
        memory_mode: the stored form of ``layers``.
        spans: ``[(label, token_count), ...]`` of the images in storage order, kept on the host
            so that listing and removing images never reads ``labels`` back from the device (no
            host synchronisation in a streaming loop); None for a memory built elsewhere (then
            ``labels`` is read).
    """

    layers: list[Tensor]
    labels: Tensor
    num_images: int
    memory_mode: str
    spans: Optional[list[tuple[int, int]]] = None

    @property
    def num_tokens(self) -> int:
        return int(self.labels.shape[1])

    def image_labels(self) -> list[int]:
        """Labels of the images present in memory, in storage order."""
        if self.spans is not None:
            return [lab for lab, _ in self.spans]
        if self.labels.numel() == 0:
            return []
        return list(dict.fromkeys(self.labels[0].tolist()))

    def remove_images(self, labels: Sequence[int]) -> "Must3rMemory":
        """A memory without the tokens of the images ``labels`` (all batch items share labels)."""
        if not len(labels):
            return self
        gone = {int(lab) for lab in labels}
        if self.spans is not None:
            # contiguous token ranges of the kept images, from the host-side spans
            keep_ranges, spans, start = [], [], 0
            for lab, count in self.spans:
                if lab not in gone:
                    if keep_ranges and keep_ranges[-1][1] == start:
                        keep_ranges[-1] = (keep_ranges[-1][0], start + count)
                    else:
                        keep_ranges.append((start, start + count))
                    spans.append((lab, count))
                start += count

            def take(t: Tensor) -> Tensor:
                parts = [t[:, a:b] for a, b in keep_ranges]
                return torch.cat(parts, dim=1) if parts else t[:, :0]

            return Must3rMemory([take(m) for m in self.layers], take(self.labels), self.num_images,
                                self.memory_mode, spans)
        drop = torch.zeros_like(self.labels[0], dtype=torch.bool)
        for lab in gone:
            drop |= self.labels[0] == lab
        keep = ~drop
        return Must3rMemory([m[:, keep] for m in self.layers], self.labels[:, keep], self.num_images, self.memory_mode)

    def nbytes(self) -> int:
        return sum(m.numel() * m.element_size() for m in self.layers) + self.labels.numel() * 8


@dataclass
class Must3rDecoderOutput:
    """Outputs of one decoder call on ``n`` frames of size H x W (N tokens each).

    Attributes:
        memory: the memory after the call (unchanged for a render).
        pointmaps_raw: (B, n, H, W, 7) head output before activation.
        feats: ``depth + 1`` levels: level 0 the encoder tokens (B, n, N, C_enc); level ``l`` the
            output of decoder block ``l`` (1-based), (B, n, N, C), the last after ``norm_dec``.
            Only the requested levels are kept (others are ``None``) when ``keep_levels`` is given.
    """

    memory: Must3rMemory
    pointmaps_raw: Tensor
    feats: list[Optional[Tensor]]


class Must3rDecoder(nn.Module):
    """Official keys: ``image2_embed``, ``feat_embed_enc_to_dec``, ``blocks_dec.{i}``, ``feedback_layer``,
    ``feedback_norm`` (only with feedback), ``norm_dec``, ``head_dec.proj``.
    """

    def __init__(self, config: Must3rDecoderConfig = Must3rDecoderConfig()):
        super().__init__()
        self.config = config
        D = config.embed_dim
        freq, f0 = parse_rope_name(config.pos_embed)
        self.rope = RoPE2D(freq, f0)
        self.feat_embed_enc_to_dec = nn.Linear(config.enc_embed_dim, D, bias=True)
        self.image2_embed = nn.Parameter(torch.zeros(1, 1, D))
        nn.init.normal_(self.image2_embed, std=0.02)
        self.blocks_dec = nn.ModuleList(
            DecoderBlock(D, config.num_heads, config.mlp_ratio, self.rope, config.memory_mode)
            for _ in range(config.depth)
        )
        if config.feedback_type == "single_mlp":
            self.feedback_layer = Mlp(D, 4 * D, D)
            self.feedback_norm = nn.LayerNorm(D)  # default eps 1e-5, as in the official code
        elif config.feedback_type == "single_linear":
            self.feedback_layer = nn.Linear(D, D)
            self.feedback_norm = nn.LayerNorm(D)
        else:
            self.feedback_layer = None
            self.feedback_norm = None
        self.norm_dec = nn.LayerNorm(D, eps=1e-6)
        self.head_dec = LinearHead(D, config.output_dim, config.patch_size)
        self.memory_mode = config.memory_mode

    # ------------------------------------------------------------------ memory helpers
    def set_memory_mode(self, memory_mode: str) -> None:
        """Switch the stored form of new memories (``kv``, ``norm_y``, ``raw``); weights are unchanged."""
        if memory_mode not in MEMORY_MODES:
            raise InputError(f"memory_mode {memory_mode!r} is not one of {MEMORY_MODES}")
        self.memory_mode = memory_mode
        for blk in self.blocks_dec:
            blk.memory_mode = memory_mode

    @property
    def memory_width(self) -> int:
        return 2 * self.config.embed_dim if self.memory_mode == "kv" else self.config.embed_dim

    def empty_memory(self, batch: int, device=None, dtype=torch.float32) -> Must3rMemory:
        layers = [torch.zeros(batch, 0, self.memory_width, device=device, dtype=dtype) for _ in self.blocks_dec]
        return Must3rMemory(layers, torch.zeros(batch, 0, dtype=torch.long, device=device), 0, self.memory_mode, [])

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        enc_tokens: Tensor,
        pos: Tensor,
        true_shape: tuple[int, int],
        memory: Optional[Must3rMemory] = None,
        render: bool = False,
        keep_levels: Optional[Sequence[int]] = None,
    ) -> Must3rDecoderOutput:
        """Decode ``n`` frames of one size against (and optionally into) the memory.

        Args:
            enc_tokens: (B, n, N, C_enc) encoder tokens of ``n`` frames of the same size.
            pos: (B, n, N, 2) or (B, N, 2) token (row, col) positions.
            true_shape: (H, W) pixel size of the frames (multiples of the patch size).
            memory: current memory, or ``None`` to start one (frame 0 becomes the reference).
            render: read the memory without writing the frames (needs a memory).
            keep_levels: feature levels to return (default all ``depth + 1``).
        """
        return self.forward_groups([(enc_tokens, pos, true_shape)], memory, render, keep_levels)[0]

    def forward_groups(
        self,
        groups: Sequence[tuple[Tensor, Tensor, tuple[int, int]]],
        memory: Optional[Must3rMemory] = None,
        render: bool = False,
        keep_levels: Optional[Sequence[int]] = None,
    ) -> list[Must3rDecoderOutput]:
        """Decode frames of several sizes in one call (e.g. landscape and portrait together).

        ``groups`` is a list of ``(enc_tokens (B, n_i, N_i, C_enc), pos, (H_i, W_i))``. Written frames
        of all groups see each other (never themselves); frame 0 of group 0 is the reference when
        ``memory`` is None; new memory labels follow the group order. Every output carries the
        same final memory.
        """
        if not groups:
            raise InputError("at least one group of frames is needed")
        if render and memory is None:
            raise InputError("render=True needs an existing memory")
        if memory is not None and memory.memory_mode != self.memory_mode:
            raise InputError(f"memory was built in mode {memory.memory_mode!r} but the decoder is in {self.memory_mode!r}")
        levels = set(range(len(self.blocks_dec) + 1)) if keep_levels is None else set(keep_levels)
        D = self.config.embed_dim
        p = self.config.patch_size
        xs, poss, sizes, feats = [], [], [], []
        B = None
        for gi, (enc_tokens, pos, true_shape) in enumerate(groups):
            if enc_tokens.ndim != 4:
                raise InputError(f"encoder tokens must be (B, n, N, C), got {tuple(enc_tokens.shape)}")
            Bi, n, N, Cenc = enc_tokens.shape
            if B is None:
                B = Bi
            elif Bi != B:
                raise InputError(f"all groups need the same batch size, got {B} and {Bi}")
            H, W = (int(true_shape[0]), int(true_shape[1]))
            if H % p or W % p or (H // p) * (W // p) != N:
                raise InputError(f"true_shape {(H, W)} does not match {N} tokens of patch size {p}")
            if Cenc != self.config.enc_embed_dim:
                raise InputError(f"encoder tokens have {Cenc} channels, the decoder expects {self.config.enc_embed_dim}")
            if n < 1:
                raise InputError("a group needs at least one frame")
            if pos.ndim == 3:
                pos = pos.unsqueeze(1).expand(B, n, N, 2)
            feats.append([enc_tokens if 0 in levels else None])
            x = self.feat_embed_enc_to_dec(enc_tokens)  # (B, n, N, D)
            if memory is None and gi == 0:
                if n > 1:
                    x = torch.cat([x[:, :1], x[:, 1:] + self.image2_embed.to(x.dtype)], dim=1)
            else:
                x = x + self.image2_embed.to(x.dtype)
            xs.append(x.reshape(B * n, N, D))
            poss.append(pos.reshape(B * n, N, 2))
            sizes.append((n, N, H, W))
        if memory is None:
            memory = self.empty_memory(B, device=xs[0].device, dtype=xs[0].dtype)
        Nm = memory.num_tokens
        n_total = sum(n for n, *_ in sizes)
        new_tokens = sum(n * N for n, N, *_ in sizes)
        device = xs[0].device

        # which memory columns each written frame may read: old memory + the other new frames
        gather = [None] * len(groups)
        if not render and (Nm > 0 or n_total > 1):
            # every column but the frame's own tokens, in order (built from host integers: no
            # boolean indexing, so no host synchronisation)
            total = Nm + new_tokens
            offset = Nm
            for gi, (n, N, _, _) in enumerate(sizes):
                rows = []
                for i in range(n):
                    s0 = offset + i * N
                    rows.append(torch.cat([torch.arange(0, s0, device=device),
                                           torch.arange(s0 + N, total, device=device)]))
                gather[gi] = torch.stack(rows)
                offset += n * N

        written: list[Tensor] = []
        depth = len(self.blocks_dec)
        for li, (blk, mem_l) in enumerate(zip(self.blocks_dec, memory.layers)):
            if not render:
                xw = torch.cat([x.reshape(B, -1, D) for x in xs], dim=1)
                written.append(xw)
                mem_l = torch.cat([mem_l, blk.to_memory(xw)], dim=1)
            Mw = mem_l.shape[-1]
            for gi, (n, N, _, _) in enumerate(sizes):
                if gather[gi] is not None:
                    mem_frames = mem_l[:, gather[gi]].reshape(B * n, -1, Mw)
                else:
                    mem_frames = mem_l.unsqueeze(1).expand(B, n, -1, Mw).reshape(B * n, -1, Mw)
                x = blk(xs[gi], mem_frames, poss[gi])
                if li == depth - 1:
                    x = self.norm_dec(x)
                xs[gi] = x
                feats[gi].append(x.reshape(B, n, N, D) if (li + 1) in levels else None)

        raws = []
        with torch.autocast(device.type, enabled=False):
            for gi, (n, N, H, W) in enumerate(sizes):
                raws.append(self.head_dec(xs[gi].float(), (H, W)).reshape(B, n, H, W, -1))

        if not render:
            if self.feedback_layer is not None:
                offset_fb = self.feedback_layer(self.feedback_norm(written[-1]))
                written = [w + offset_fb for w in written[:-1]] + [written[-1]]
            new_layers = [torch.cat([m, blk.to_memory(w)], dim=1)
                          for m, blk, w in zip(memory.layers, self.blocks_dec, written)]
            label_parts, next_label = [], memory.num_images
            spans = None if memory.spans is None else list(memory.spans)
            for n, N, _, _ in sizes:
                label_parts.append((torch.arange(n, device=device, dtype=torch.long) + next_label).repeat_interleave(N))
                if spans is not None:
                    spans.extend((next_label + i, N) for i in range(n))
                next_label += n
            new_labels = torch.cat(label_parts)[None].expand(B, new_tokens)
            labels = torch.cat([memory.labels, new_labels], dim=1)
            memory = Must3rMemory(new_layers, labels, next_label, self.memory_mode, spans)
        return [Must3rDecoderOutput(memory, raws[gi], feats[gi]) for gi in range(len(groups))]
