"""BERT text stack (post-norm), used as BLIP's text encoder and, with a causal mask and LM head, its decoder.

The last ``fusion_layers`` layers carry cross-attention to the image tokens: skipped in unimodal mode (ITC), run in
image-grounded mode (ITM, VQA question encoding) and in the decoder. Layout mirrors BLIP's text model so real
checkpoints map onto it one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import TextConfig
from .attention import attend, causal_padding_mask, merge_heads, padding_mask, split_heads
from .outputs import TextOutput

KV = tuple[Tensor, Tensor]


class BertAttention(nn.Module):
    """Self- or cross-attention with BERT's residual + LayerNorm output."""

    def __init__(self, cfg: TextConfig, kv_width: int):
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(kv_width, d)
        self.value = nn.Linear(kv_width, d)
        self.out = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)

    def project_kv(self, context: Tensor) -> KV:
        """The keys and values of ``context`` (B, Lk, kv_width), each (B, nh, Lk, hd)."""
        return split_heads(self.key(context), self.num_heads), split_heads(self.value(context), self.num_heads)

    def forward(self, x: Tensor, context: Tensor | None, mask: Tensor | None, need_weights: bool,
                past: KV | None = None, kv: KV | None = None) -> tuple[Tensor, Tensor | None, KV]:
        """``kv``: the keys and values of ``context`` already projected (``project_kv``; cross-attention, whose
        context is the same at every decoder step), in which case ``context`` is not read."""
        q = split_heads(self.query(x), self.num_heads)  # (B, nh, Lq, hd)
        k, v = kv if kv is not None else self.project_kv(context)  # (B, nh, Lk, hd)
        if past is not None:  # decoder cache: prepend earlier positions
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        ctx, probs = attend(q, k, v, mask, need_weights)
        return self.norm(self.out(merge_heads(ctx)) + x), probs, (k, v)


class BertLayer(nn.Module):
    def __init__(self, cfg: TextConfig, cross_width: int | None):
        super().__init__()
        self.self_attn = BertAttention(cfg, cfg.hidden_size)
        self.cross_attn = BertAttention(cfg, cross_width) if cross_width is not None else None
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor, self_mask: Tensor, image: Tensor | None, image_mask: Tensor | None,
                need_weights: bool, past: KV | None,
                cross_kv: KV | None = None) -> tuple[Tensor, Tensor | None, Tensor | None, KV]:
        x, self_probs, kv = self.self_attn(x, x, self_mask, need_weights, past)
        cross_probs = None
        if (image is not None or cross_kv is not None) and self.cross_attn is not None:
            x, cross_probs, _ = self.cross_attn(x, image, image_mask, need_weights, kv=cross_kv)
        x = self.ffn_norm(self.fc2(F.gelu(self.fc1(x))) + x)
        return x, self_probs, cross_probs, kv


class LMHead(nn.Module):
    """BERT's prediction head: dense + GELU + LayerNorm, then the vocabulary projection."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(x))))  # (B, L, V)


class TextTransformer(nn.Module):
    """Token ids (B, L) -> hidden states (B, L, Dt); bidirectional (encoder) or causal with LM head (decoder)."""

    def __init__(self, cfg: TextConfig, image_width: int, causal: bool):
        super().__init__()
        self.cfg = cfg
        self.causal = causal
        self.word_embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.pos_embed = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.embed_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(
            BertLayer(cfg, image_width if cfg.has_cross_attention(i) else None) for i in range(cfg.num_layers))
        self.lm_head = LMHead(cfg) if causal else None
        self.apply(_init_bert)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, image_embeds: Tensor | None = None,
                image_mask: Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, past_key_values: tuple[KV, ...] | None = None,
                use_cache: bool = False, position_ids: Tensor | None = None,
                cross_key_values: tuple[KV, ...] | None = None) -> TextOutput:
        """``image_embeds`` None = unimodal (no cross-attention). With ``past_key_values`` (decoder), ``input_ids``
        holds only the new tokens and ``attention_mask`` covers past + new positions (0 over padded past ones).

        ``position_ids`` (B, L): each row's own positions (a row with fewer real cached positions than the cache
        holds continues from its own count); None: ``past_len .. past_len + L - 1`` for every row.
        ``cross_key_values``: the cross-attention keys and values of ``image_embeds``, one pair per layer with
        cross-attention (the method ``cross_key_values``), given instead of ``image_embeds`` (they do not change between
        decoder steps); ``image_mask`` then covers their positions."""
        b, length = input_ids.shape
        past_len = past_key_values[0][0].shape[2] if past_key_values is not None else 0
        if past_len + length > self.cfg.max_position_embeddings:
            raise ValueError(f"sequence of {past_len + length} tokens exceeds max_position_embeddings "
                             f"{self.cfg.max_position_embeddings}")
        if position_ids is None:
            positions = torch.arange(past_len, past_len + length, device=input_ids.device)
            x = self.embed_norm(self.word_embed(input_ids) + self.pos_embed(positions)[None])  # (B, L, Dt)
        else:
            x = self.embed_norm(self.word_embed(input_ids) + self.pos_embed(position_ids))
        dtype = x.dtype
        if self.causal:
            self_mask = causal_padding_mask(attention_mask, length, dtype)  # (B, 1, L, past+L)
        else:
            self_mask = padding_mask(attention_mask, dtype)  # (B, 1, 1, L)
        cross = iter(cross_key_values) if cross_key_values is not None else None
        if cross is not None and image_mask is None:
            k = cross_key_values[0][0]  # (B, nh, M, hd)
            image_mask = torch.ones(k.shape[0], k.shape[2], dtype=torch.long, device=k.device)
        if image_embeds is not None and image_mask is None:
            image_mask = torch.ones(image_embeds.shape[:2], dtype=torch.long, device=image_embeds.device)
        cross_mask = padding_mask(image_mask, dtype) if image_mask is not None else None

        hidden, self_attns, cross_attns, cache = [], [], [], []
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                hidden.append(x)
            past = past_key_values[i] if past_key_values is not None else None
            cross_kv = next(cross) if cross is not None and layer.cross_attn is not None else None
            x, self_probs, cross_probs, kv = layer(x, self_mask, image_embeds, cross_mask, output_attentions, past,
                                                   cross_kv)
            if output_attentions:
                self_attns.append(self_probs)
                if cross_probs is not None:
                    cross_attns.append(cross_probs)
            if use_cache:
                cache.append(kv)
        if output_hidden_states:
            hidden.append(x)
        return TextOutput(
            last_hidden=x,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            self_attentions=tuple(self_attns) if output_attentions else None,
            cross_attentions=tuple(cross_attns) if output_attentions else None,
            past_key_values=tuple(cache) if use_cache else None,
            logits=self.lm_head(x) if self.lm_head is not None else None,
        )

    def cross_key_values(self, image_embeds: Tensor) -> tuple[KV, ...]:
        """The cross-attention keys and values of ``image_embeds`` (B, M, Dv), (B, nh, M, hd) each, one pair per
        layer with cross-attention, in layer order: what ``forward(cross_key_values=...)`` takes, computed once
        for all the decoder steps over the same image tokens or question states."""
        return tuple(layer.cross_attn.project_kv(image_embeds) for layer in self.layers
                     if layer.cross_attn is not None)


def _init_bert(module: nn.Module) -> None:
    """BERT initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
