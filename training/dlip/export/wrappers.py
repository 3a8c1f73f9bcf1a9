"""Thin ``nn.Module`` wrappers, one per bundle graph: tensors in, tensors out, in the contract's order.

Each wrapper only routes tensors through ``BlipMED``'s own methods, so the exported graph computes exactly what the
PyTorch evaluation does. Input and output names come from ``contract.graph_specs``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..model.med import BlipMED
from .contract import DECODER, ITM, TEXT, VISION, VQA_ENCODER


class VisionGraph(nn.Module):
    """pixel_values (B, 3, S, S) -> image_embeds (B, N, Dv), image_feat (B, E)."""

    def __init__(self, model: BlipMED):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        image_embeds = self.model.encode_image(pixel_values).last_hidden  # (B, N, Dv)
        return image_embeds, self.model.image_feature(image_embeds)


class TextGraph(nn.Module):
    """[CLS] text (B, L) -> text_feat (B, E); unimodal, no cross-attention."""

    def __init__(self, model: BlipMED):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.text_feature(self.model.encode_text(input_ids, attention_mask).last_hidden)


class ITMGraph(nn.Module):
    """image_embeds (B, N, Dv) + [ENC] text (B, L) -> itm_logits (B, 2): [no match, match]."""

    def __init__(self, model: BlipMED):
        super().__init__()
        self.model = model

    def forward(self, image_embeds: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.itm_logits(self.model.fuse(input_ids, attention_mask, image_embeds).last_hidden)


class VQAEncoderGraph(nn.Module):
    """image_embeds (B, N, Dv) + [ENC] question (B, Lq) -> question_states (B, Lq, Dt)."""

    def __init__(self, model: BlipMED):
        super().__init__()
        self.model = model

    def forward(self, image_embeds: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.fuse(input_ids, attention_mask, image_embeds).last_hidden


class DecoderGraph(nn.Module):
    """One decoder step with the key/value cache.

    input_ids (B, T) new tokens; attention_mask (B, P+T); encoder_hidden (B, M, De); encoder_mask (B, M);
    ``past`` = past_key_0, past_value_0, ... each (B, H, P, Dh), P may be 0.
    Returns logits (B, T, V), then present_key_0, present_value_0, ... each (B, H, P+T, Dh).
    """

    def __init__(self, model: BlipMED):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, encoder_hidden: Tensor, encoder_mask: Tensor,
                *past: Tensor) -> tuple[Tensor, ...]:
        assert len(past) == 2 * len(self.model.text_decoder.layers), "one key and one value per decoder layer"
        past_key_values = tuple((past[i], past[i + 1]) for i in range(0, len(past), 2))
        out = self.model.decode(input_ids, attention_mask, encoder_hidden, encoder_mask,
                                past_key_values=past_key_values, use_cache=True)
        present = [t for kv in out.past_key_values for t in kv]
        return (out.logits, *present)


WRAPPERS: dict[str, type[nn.Module]] = {
    VISION: VisionGraph, TEXT: TextGraph, ITM: ITMGraph, VQA_ENCODER: VQAEncoderGraph, DECODER: DecoderGraph,
}
