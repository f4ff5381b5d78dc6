"""``Must3r``: encoder + decoder with a small memory API (``init_memory``, ``add_frames``, ``render``)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from threeam.errors import InputError
from threeam.models.must3r.config import Must3rConfig, get_must3r_config
from threeam.models.must3r.decoder import Must3rDecoder, Must3rDecoderOutput, Must3rMemory
from threeam.models.must3r.encoder import Must3rEncoder

__all__ = ["Must3r", "build_must3r"]


class Must3r(nn.Module):
    """MUSt3R geometry model. ``self.encoder`` and ``self.decoder`` load the official
    ``ckpt["encoder"]`` / ``ckpt["decoder"]`` state dicts unchanged.

    All frame inputs are ``images (B, n, 3, H, W)`` (or ``(n, 3, H, W)`` for B = 1) normalised to
    [-1, 1], with H and W multiples of 16 and shared by the ``n`` frames of one call.
    """

    def __init__(self, config: Must3rConfig = Must3rConfig()):
        super().__init__()
        self.config = config
        self.encoder = Must3rEncoder(config.encoder)
        self.decoder = Must3rDecoder(config.decoder)

    @property
    def memory_mode(self) -> str:
        return self.decoder.memory_mode

    def set_memory_mode(self, memory_mode: str) -> None:
        self.decoder.set_memory_mode(memory_mode)

    @staticmethod
    def _as_5d(images: Tensor) -> Tensor:
        if images.ndim == 4:
            images = images.unsqueeze(0)
        if images.ndim != 5 or images.shape[2] != 3:
            raise InputError(f"images must be (B, n, 3, H, W) or (n, 3, H, W), got {tuple(images.shape)}")
        if images.shape[1] == 0:
            raise InputError("at least one frame is needed")
        return images

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images (B, n, 3, H, W) -> tokens (B, n, N, C_enc) float32, pos (B, n, N, 2)."""
        images = self._as_5d(images)
        B, n = images.shape[:2]
        tokens, pos = self.encoder(images.flatten(0, 1))
        return tokens.reshape(B, n, *tokens.shape[1:]), pos.reshape(B, n, *pos.shape[1:])

    def decode(self, tokens: Tensor, pos: Tensor, true_shape: tuple[int, int], memory: Optional[Must3rMemory] = None,
               render: bool = False, keep_levels: Optional[Sequence[int]] = None) -> Must3rDecoderOutput:
        """Run the decoder on encoded frames (see :meth:`Must3rDecoder.forward`)."""
        return self.decoder(tokens, pos, true_shape, memory=memory, render=render, keep_levels=keep_levels)

    def _run(self, images: Tensor, memory, render, keep_levels) -> Must3rDecoderOutput:
        images = self._as_5d(images)
        tokens, pos = self.encode(images)
        return self.decode(tokens, pos, tuple(images.shape[-2:]), memory=memory, render=render, keep_levels=keep_levels)

    def init_memory(self, images: Tensor, keep_levels: Optional[Sequence[int]] = None) -> Must3rDecoderOutput:
        """Start a memory from 1 or more frames (frame 0 is the reference camera)."""
        return self._run(images, None, False, keep_levels)

    def add_frames(self, memory: Must3rMemory, images: Tensor,
                   keep_levels: Optional[Sequence[int]] = None) -> Must3rDecoderOutput:
        """Write frames into ``memory`` and predict them; returns the grown memory."""
        return self._run(images, memory, False, keep_levels)

    def render(self, memory: Must3rMemory, images: Tensor,
               keep_levels: Optional[Sequence[int]] = None) -> Must3rDecoderOutput:
        """Predict frames against ``memory`` without changing it."""
        return self._run(images, memory, True, keep_levels)

    def run_groups(self, images: Sequence[Tensor], memory: Optional[Must3rMemory] = None, render: bool = False,
                   keep_levels: Optional[Sequence[int]] = None) -> list[Must3rDecoderOutput]:
        """Frames of several sizes in one call: ``images`` is a list of (B, n_i, 3, H_i, W_i) groups.

        Written frames of all groups see each other (see :meth:`Must3rDecoder.forward_groups`).
        """
        groups = []
        for imgs in images:
            imgs = self._as_5d(imgs)
            tokens, pos = self.encode(imgs)
            groups.append((tokens, pos, tuple(imgs.shape[-2:])))
        return self.decoder.forward_groups(groups, memory=memory, render=render, keep_levels=keep_levels)


def build_must3r(config: "Must3rConfig | str" = "must3r_512", *, memory_mode: Optional[str] = None,
                 device=None) -> Must3r:
    """Build a (randomly initialised) model from a config or preset name; pass ``device="meta"`` for
    a shape-only model."""
    cfg = get_must3r_config(config) if isinstance(config, str) else config
    if memory_mode is not None:
        cfg = cfg.with_memory_mode(memory_mode)
    if device is not None:
        with torch.device(device):
            return Must3r(cfg)
    return Must3r(cfg)
