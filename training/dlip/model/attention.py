"""Multi-head attention shared by the ViT and the BERT stacks.

Written out (softmax(QK^T / sqrt(d)) V) rather than through a fused kernel when the attention map is requested, since
distillation needs the probabilities; otherwise ``scaled_dot_product_attention`` gives the same result faster.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    b, n, d = x.shape
    return x.view(b, n, num_heads, d // num_heads).transpose(1, 2)  # (B, nh, N, hd)


def merge_heads(x: Tensor) -> Tensor:
    b, nh, n, hd = x.shape
    return x.transpose(1, 2).reshape(b, n, nh * hd)  # (B, N, D)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, need_weights: bool) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention over heads.

    q: (B, nh, Nq, hd); k, v: (B, nh, Nk, hd); mask: additive, broadcastable to (B, nh, Nq, Nk) (0 keep, -inf-ish drop).
    Returns the context (B, nh, Nq, hd) and, when ``need_weights``, the probabilities (B, nh, Nq, Nk).
    """
    if not need_weights:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, nh, Nq, Nk)
    if mask is not None:
        scores = scores + mask
    probs = scores.softmax(dim=-1)
    return probs @ v, probs  # (B, nh, Nq, hd)


def padding_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, Nk) 1/0 keep mask -> additive (B, 1, 1, Nk) mask."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def causal_padding_mask(attention_mask: Tensor, num_queries: int, dtype: torch.dtype) -> Tensor:
    """Additive (B, 1, Nq, Nk) mask letting query i (the last Nq of Nk positions) see keys <= its position."""
    nk = attention_mask.shape[1]
    offset = nk - num_queries  # cached positions before the first query
    q_pos = torch.arange(num_queries, device=attention_mask.device)[:, None] + offset  # (Nq, 1)
    k_pos = torch.arange(nk, device=attention_mask.device)[None, :]  # (1, Nk)
    keep = (k_pos <= q_pos)[None, None] & attention_mask[:, None, None, :].bool()  # (B, 1, Nq, Nk)
    return (~keep).to(dtype) * torch.finfo(dtype).min
