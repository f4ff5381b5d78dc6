"""Attention blocks of SAM 2: the two-way transformer of the mask decoder and RoPE attention.

Sequences are batch-first: (B, N, C). Official attribute names are kept
(``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, ``norm1`` ... ``norm4``) so official
state dicts load unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from threeam.models.sam2.mlp import MLP
from threeam.models.sam2.rope import apply_rope_qk, axial_cos_sin


class Attention(nn.Module):
    """Multi-head attention whose inner width may be reduced by `downsample_rate`.

    q: (B, Nq, embedding_dim); k, v: (B, Nk, kv_in_dim) -> (B, Nq, embedding_dim).
    The inner width is ``embedding_dim // downsample_rate`` split over `num_heads` heads.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1,
                 dropout: float = 0.0, kv_in_dim: int | None = None) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = embedding_dim if kv_in_dim is None else kv_in_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must divide the inner width {self.internal_dim}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.dropout_p = dropout

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, N, C) -> (B, heads, N, C / heads)."""
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    @staticmethod
    def _merge_heads(x: Tensor) -> Tensor:
        """(B, heads, N, c) -> (B, N, heads * c)."""
        b, h, n, c = x.shape
        return x.transpose(1, 2).reshape(b, n, h * c)

    def _project(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return (self._split_heads(self.q_proj(q)), self._split_heads(self.k_proj(k)),
                self._split_heads(self.v_proj(v)))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        p = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out_proj(self._merge_heads(out))

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self._attend(*self._project(q, k, v))


class RoPEAttention(Attention):
    """Attention with 2-D axial rotary position encoding on queries and keys.

    Queries are one (H, W) grid of tokens in row-major order. With ``rope_k_repeat`` the
    keys may be several such grids (memory frames) followed by `num_k_exclude_rope`
    tokens that get no rotation (object pointers). `feat_sizes` is the expected grid as
    (W, H) as in the official config; for another token count a square grid is assumed.
    The rotation tables are computed on the fly and cached (not in the state dict).
    """

    def __init__(self, *args, rope_theta: float = 10000.0, rope_k_repeat: bool = False,
                 feat_sizes: tuple[int, int] = (64, 64), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rope_theta = rope_theta
        self.rope_k_repeat = rope_k_repeat
        self.feat_sizes = tuple(feat_sizes)
        self._rope_cache: dict = {}
        # Optional callable(q, k, num_k_exclude_rope) given the rotated queries and keys (B, heads, N,
        # head_dim) of every call (training aids such as attention supervision; None: off).
        self.attention_observer = None

    def _grid_for(self, n: int) -> tuple[int, int]:
        w, h = self.feat_sizes
        if w * h == n:
            return h, w
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"RoPE attention got {n} query tokens, which is not a square grid "
                             f"nor the configured {h}x{w}")
        return side, side

    def _cos_sin(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (n, str(device))
        if key not in self._rope_cache:
            h, w = self._grid_for(n)
            head_dim = self.internal_dim // self.num_heads
            self._rope_cache[key] = axial_cos_sin(head_dim, h, w, self.rope_theta, device)
        return self._rope_cache[key]

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0) -> Tensor:
        """q: (B, Nq, C); k, v: (B, Nk, kv_in_dim); the last `num_k_exclude_rope` keys are not rotated."""
        q, k, v = self._project(q, k, v)
        cos, sin = self._cos_sin(q.shape[-2], q.device)
        n_rope = k.shape[-2] - num_k_exclude_rope
        if k.shape[-2] != q.shape[-2] and not self.rope_k_repeat:
            raise ValueError("keys and queries differ in length but rope_k_repeat is off")
        q, k_rot = apply_rope_qk(q, k[:, :, :n_rope], cos, sin, repeat_k=self.rope_k_repeat)
        if num_k_exclude_rope > 0:
            k = torch.cat([k_rot, k[:, :, n_rope:]], dim=2)
        else:
            k = k_rot
        if self.attention_observer is not None:
            self.attention_observer(q, k, num_k_exclude_rope)
        return self._attend(q, k, v)


class TwoWayAttentionBlock(nn.Module):
    """One block of the two-way transformer.

    Four steps: self-attention of the prompt tokens, tokens -> image cross-attention,
    an MLP on the tokens, image -> tokens cross-attention; each followed by a LayerNorm.
    queries (B, Nt, C), keys (B, HW, C) and their positional encodings of the same shapes.
    """

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int = 2048,
                 activation: type[nn.Module] = nn.ReLU, attention_downsample_rate: int = 2,
                 skip_first_layer_pe: bool = False) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads,
                                                   downsample_rate=attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads,
                                                   downsample_rate=attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor]:
        if self.skip_first_layer_pe:
            # first block: the queries are the prompt embeddings themselves, replaced not added to
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            qp = queries + query_pe
            queries = queries + self.self_attn(q=qp, k=qp, v=queries)
        queries = self.norm1(queries)

        keys_pe = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=queries + query_pe, k=keys_pe, v=keys))
        queries = self.norm3(queries + self.mlp(queries))
        upd = self.cross_attn_image_to_token(q=keys_pe, k=queries + query_pe, v=queries)
        keys = self.norm4(keys + upd)
        return queries, keys


class TwoWayTransformer(nn.Module):
    """The mask decoder's transformer: prompt tokens and image tokens attend to each other.

    forward(image_embedding (B, C, H, W), image_pe (B, C, H, W), point_embedding (B, Nt, C))
    returns (queries (B, Nt, C), keys (B, H*W, C)).
    """

    def __init__(self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int,
                 activation: type[nn.Module] = nn.ReLU, attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim=embedding_dim, num_heads=num_heads, mlp_dim=mlp_dim,
                                 activation=activation, attention_downsample_rate=attention_downsample_rate,
                                 skip_first_layer_pe=(i == 0))
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads,
                                                   downsample_rate=attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor) -> tuple[Tensor, Tensor]:
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for block in self.layers:
            queries, keys = block(queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe)
        out = self.final_attn_token_to_image(q=queries + point_embedding, k=keys + key_pe, v=keys)
        queries = self.norm_final_attn(queries + out)
        return queries, keys
