"""Thin ``nn.Module`` wrappers, one per bundle graph: tensors in, tensors out, in the contract's order.

Each wrapper only routes tensors through ``BlipMED``'s own methods, so the exported graph computes exactly what the
PyTorch evaluation does. Input and output names come from ``contract.graph_specs``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..model.med import BlipMED
from .contract import CROSS_KV, DECODER, ITM, TEXT, VISION, VQA_ENCODER


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


class CrossKVGraph(nn.Module):
    """encoder_hidden (B, M, Dv) -> cross_key_0, cross_value_0, cross_key_1, ... each (B, H, M, Dh): the decoder
    layers' cross-attention key/value projections, computed once per image (captions) or question (VQA answers)
    instead of at every decoder step."""

    def __init__(self, model: BlipMED):
        super().__init__()
        self.model = model

    def forward(self, encoder_hidden: Tensor) -> tuple[Tensor, ...]:
        return tuple(t for kv in self.model.decoder_cross_key_values(encoder_hidden) for t in kv)


class DecoderGraph(nn.Module):
    """One decoder step with the key/value cache, over cross_kv's keys and values.

    input_ids (B, T) new tokens; position_ids (B, T) each row's positions; attention_mask (B, P+T), 0 over padded
    past positions; encoder_mask (B, M); then ``caches``: past_key_0, past_value_0, ... each (B, H, P, Dh), P may
    be 0, followed by cross_key_0, cross_value_0, ... each (B, H, M, Dh).
    Returns logits (B, T, V), then present_key_0, present_value_0, ... each (B, H, P+T, Dh) (past, then new).
    """

    def __init__(self, model: BlipMED):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, position_ids: Tensor, attention_mask: Tensor, encoder_mask: Tensor,
                *caches: Tensor) -> tuple[Tensor, ...]:
        layers = len(self.model.text_decoder.layers)
        assert len(caches) == 4 * layers, "one past key and value, one cross key and value per decoder layer"
        past_key_values = tuple((caches[i], caches[i + 1]) for i in range(0, 2 * layers, 2))
        cross_key_values = tuple((caches[i], caches[i + 1]) for i in range(2 * layers, 4 * layers, 2))
        out = self.model.decode(input_ids, attention_mask, None, encoder_mask, past_key_values=past_key_values,
                                use_cache=True, position_ids=position_ids, cross_key_values=cross_key_values)
        present = [t for kv in out.past_key_values for t in kv]
        return (out.logits, *present)


WRAPPERS: dict[str, type[nn.Module]] = {
    VISION: VisionGraph, TEXT: TextGraph, ITM: ITMGraph, VQA_ENCODER: VQAEncoderGraph, CROSS_KV: CrossKVGraph,
    DECODER: DecoderGraph,
}
