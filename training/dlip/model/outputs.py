"""Typed model outputs. Shapes: B batch, N image tokens (1 + patches), L text tokens, D widths, V vocabulary,
nh heads. ``hidden_states`` has num_layers + 1 entries (the input to each layer, then the final output);
``attentions`` one (B, nh, Lq, Lk) probability map per layer; both are None unless requested."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class VisionOutput:
    last_hidden: Tensor  # (B, N, Dv) image token embeddings, [CLS] first
    hidden_states: tuple[Tensor, ...] | None = None  # each (B, N, Dv)
    attentions: tuple[Tensor, ...] | None = None  # each (B, nh, N, N)


@dataclass
class TextOutput:
    last_hidden: Tensor  # (B, L, Dt)
    hidden_states: tuple[Tensor, ...] | None = None  # each (B, L, Dt)
    self_attentions: tuple[Tensor, ...] | None = None  # each (B, nh, L, L)
    cross_attentions: tuple[Tensor, ...] | None = None  # one per fusion layer that ran, each (B, nh, L, N)
    past_key_values: tuple[tuple[Tensor, Tensor], ...] | None = None  # decoder self-attention cache, per layer
    logits: Tensor | None = None  # (B, L, V) from the LM head (decoder only)


@dataclass
class ITCOutput:
    image_feat: Tensor  # (B, E) L2-normalised
    text_feat: Tensor  # (B, E) L2-normalised
    sim_i2t: Tensor  # (B, B) image-to-text similarity / temperature
    sim_t2i: Tensor  # (B, B)
    vision: VisionOutput
    text: TextOutput
