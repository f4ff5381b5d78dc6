"""Memory attention: conditions the current frame's stride-16 features on the memory bank.

Tensors follow the official sequence-first layout at the module boundary:
``curr`` (HW, B, C), ``memory`` (M, B, C_mem). Inside, layers work batch-first.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from threeam.models.sam2.mlp import activation_fn
from threeam.models.sam2.transformer import RoPEAttention

__all__ = ["MemoryAttentionLayer", "MemoryAttention", "RoPEAttention"]


class MemoryAttentionLayer(nn.Module):
    """Pre-norm block: self-attention, cross-attention to the memory, then an MLP.

    tgt (B, HW, C), memory (B, M, C_mem), pos (B, M, C_mem), query_pos (B, HW, C).
    The last `num_k_exclude_rope` memory tokens (object pointers) get no rotary encoding.
    """

    def __init__(self, activation: str, cross_attention: nn.Module, d_model: int, dim_feedforward: int,
                 dropout: float, pos_enc_at_attn: bool, pos_enc_at_cross_attn_keys: bool,
                 pos_enc_at_cross_attn_queries: bool, self_attention: nn.Module) -> None:
        super().__init__()
        self.d_model = d_model
        self.dim_feedforward = dim_feedforward
        self.dropout_value = dropout
        self.self_attn = self_attention
        self.cross_attn_image = cross_attention
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation_str = activation
        self.activation = activation_fn(activation)
        self.pos_enc_at_attn = pos_enc_at_attn
        self.pos_enc_at_cross_attn_queries = pos_enc_at_cross_attn_queries
        self.pos_enc_at_cross_attn_keys = pos_enc_at_cross_attn_keys

    def _forward_sa(self, tgt: Tensor, query_pos: Tensor | None) -> Tensor:
        x = self.norm1(tgt)
        qk = x + query_pos if self.pos_enc_at_attn else x
        return tgt + self.dropout1(self.self_attn(qk, qk, v=x))

    def _forward_ca(self, tgt: Tensor, memory: Tensor, query_pos: Tensor | None, pos: Tensor | None,
                    num_k_exclude_rope: int = 0) -> Tensor:
        kwargs = {}
        if num_k_exclude_rope > 0:
            if not isinstance(self.cross_attn_image, RoPEAttention):
                raise TypeError("num_k_exclude_rope needs a RoPEAttention cross-attention")
            kwargs["num_k_exclude_rope"] = num_k_exclude_rope
        x = self.norm2(tgt)
        q = x + query_pos if self.pos_enc_at_cross_attn_queries else x
        k = memory + pos if self.pos_enc_at_cross_attn_keys else memory
        return tgt + self.dropout2(self.cross_attn_image(q=q, k=k, v=memory, **kwargs))

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor | None = None, query_pos: Tensor | None = None,
                num_k_exclude_rope: int = 0) -> Tensor:
        tgt = self._forward_sa(tgt, query_pos)
        tgt = self._forward_ca(tgt, memory, query_pos, pos, num_k_exclude_rope)
        x = self.norm3(tgt)
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return tgt + self.dropout3(x)


class MemoryAttention(nn.Module):
    """`num_layers` copies of `layer` followed by a LayerNorm.

    forward(curr (HW, B, C) or [that], memory (M, B, C_mem), curr_pos (HW, B, C) or [that],
    memory_pos (M, B, C_mem), num_obj_ptr_tokens) -> (HW, B, C).
    """

    def __init__(self, d_model: int, pos_enc_at_input: bool, layer: nn.Module, num_layers: int,
                 batch_first: bool = True) -> None:
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = nn.LayerNorm(d_model)
        self.pos_enc_at_input = pos_enc_at_input
        self.batch_first = batch_first

    def forward(self, curr: Tensor | list[Tensor], memory: Tensor, curr_pos: Tensor | list[Tensor] | None = None,
                memory_pos: Tensor | None = None, num_obj_ptr_tokens: int = 0) -> Tensor:
        if isinstance(curr, (list, tuple)):
            if len(curr) != 1 or not isinstance(curr_pos, (list, tuple)) or len(curr_pos) != 1:
                raise ValueError("MemoryAttention takes exactly one feature level")
            curr, curr_pos = curr[0], curr_pos[0]
        if curr.shape[1] != memory.shape[1]:
            raise ValueError(f"batch of current features ({curr.shape[1]}) and memory ({memory.shape[1]}) differ")
        out = curr
        if self.pos_enc_at_input and curr_pos is not None:
            out = out + 0.1 * curr_pos
        if self.batch_first:
            out = out.transpose(0, 1)
            curr_pos = curr_pos.transpose(0, 1) if curr_pos is not None else None
            memory = memory.transpose(0, 1)
            memory_pos = memory_pos.transpose(0, 1) if memory_pos is not None else None
        for layer in self.layers:
            kwargs = {}
            if isinstance(layer.cross_attn_image, RoPEAttention):
                kwargs["num_k_exclude_rope"] = num_obj_ptr_tokens
            out = layer(tgt=out, memory=memory, pos=memory_pos, query_pos=curr_pos, **kwargs)
        out = self.norm(out)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out
