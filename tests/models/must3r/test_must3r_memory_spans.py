"""MUSt3R's memory keeps its images' token spans on the host, so listing and evicting keyframes
never reads the labels back from the device (no host synchronisation in the streaming loop on
CUDA); the result equals the label-based removal. (The decoder's gather of "every column but the
frame's own", now built from host integers, is checked against the official outputs by
test_must3r_parity_small.)"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from threeam.models.must3r.config import Must3rConfig, Must3rDecoderConfig, Must3rEncoderConfig
from threeam.models.must3r.model import Must3r
from threeam.models.must3r.session import Must3rStreamConfig, Must3rStreamingSession


def _tiny():
    torch.manual_seed(0)
    cfg = Must3rConfig(
        Must3rEncoderConfig(img_size=(64, 64), embed_dim=32, depth=1, num_heads=2),
        Must3rDecoderConfig(img_size=(64, 64), enc_embed_dim=32, embed_dim=16, depth=2, num_heads=2),
    )
    return Must3r(cfg).eval()


def _frames(n, h=32, w=48):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, i, axis=1) for i in range(n)]


def test_spans_follow_the_labels_through_eviction():
    cfg = Must3rStreamConfig(res=32, feature_levels=(0, 2), keyframe_interval=1, max_keyframes=4, compute_camera=False)
    session = Must3rStreamingSession(_tiny(), cfg)
    for frame in _frames(9):
        session.add_frame(frame)
        mem = session.memory
        assert mem.spans is not None
        labels = mem.labels[0].tolist()
        expanded = [lab for lab, count in mem.spans for _ in range(count)]
        assert expanded == labels
        assert mem.image_labels() == list(dict.fromkeys(labels))
    assert session.memory.image_labels() == [0, 6, 7, 8]
    mem = session.memory
    for gone in ([6], [0, 8], [7, 6], [0, 6, 7, 8], []):
        by_spans = mem.remove_images(gone)
        by_labels = dataclasses.replace(mem, spans=None).remove_images(gone)
        assert torch.equal(by_spans.labels, by_labels.labels)
        assert all(torch.equal(a, b) for a, b in zip(by_spans.layers, by_labels.layers))
        assert by_spans.image_labels() == [lab for lab in [0, 6, 7, 8] if lab not in gone]
