"""BLIP's multimodal mixture of encoder-decoder (MED): ViT + BERT text encoder (unimodal or image-grounded) + causal
text decoder, with the ITC projections, learnable temperature and ITM head. ``forward``-style methods take tensors
only: tokenisation and image transforms live in data code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from .outputs import ITCOutput, TextOutput, VisionOutput
from .text import TextTransformer
from .vit import VisionTransformer


class BlipMED(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        dv = cfg.vision.hidden_size
        self.visual_encoder = VisionTransformer(cfg.vision)
        self.text_encoder = TextTransformer(cfg.text, image_width=dv, causal=False)
        self.text_decoder = TextTransformer(cfg.decoder, image_width=dv, causal=True)
        self.vision_proj = nn.Linear(dv, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.text.hidden_size, cfg.embed_dim)
        self.itm_head = nn.Linear(cfg.text.hidden_size, 2)
        self.temp = nn.Parameter(torch.tensor(cfg.temp))

    # ----------------------------------------------------------------- unimodal encoders (ITC)
    def encode_image(self, pixel_values: Tensor, output_hidden_states: bool = False,
                     output_attentions: bool = False) -> VisionOutput:
        return self.visual_encoder(pixel_values, output_hidden_states, output_attentions)

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor, output_hidden_states: bool = False,
                    output_attentions: bool = False) -> TextOutput:
        """Unimodal text encoding: ``input_ids`` start with [CLS]; no cross-attention."""
        return self.text_encoder(input_ids, attention_mask, output_hidden_states=output_hidden_states,
                                 output_attentions=output_attentions)

    def image_feature(self, image_embeds: Tensor) -> Tensor:
        return F.normalize(self.vision_proj(image_embeds[:, 0]), dim=-1)  # (B, E)

    def text_feature(self, text_embeds: Tensor) -> Tensor:
        return F.normalize(self.text_proj(text_embeds[:, 0]), dim=-1)  # (B, E)

    def clamped_temp(self) -> Tensor:
        return self.temp.clamp(0.001, 0.5)

    def itc(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor,
            output_hidden_states: bool = False, output_attentions: bool = False) -> ITCOutput:
        vision = self.encode_image(pixel_values, output_hidden_states, output_attentions)
        text = self.encode_text(input_ids, attention_mask, output_hidden_states, output_attentions)
        image_feat, text_feat = self.image_feature(vision.last_hidden), self.text_feature(text.last_hidden)
        sim_i2t = image_feat @ text_feat.t() / self.clamped_temp()  # (B_img, B_txt)
        return ITCOutput(image_feat, text_feat, sim_i2t, sim_i2t.t(), vision, text)

    # ----------------------------------------------------------------- image-grounded encoder (ITM, VQA)
    def fuse(self, input_ids: Tensor, attention_mask: Tensor, image_embeds: Tensor,
             image_mask: Tensor | None = None, output_hidden_states: bool = False,
             output_attentions: bool = False) -> TextOutput:
        """Text encoder with cross-attention over image tokens; ``input_ids`` start with [ENC]."""
        return self.text_encoder(input_ids, attention_mask, image_embeds, image_mask,
                                 output_hidden_states=output_hidden_states, output_attentions=output_attentions)

    def itm_logits(self, fused_hidden: Tensor) -> Tensor:
        return self.itm_head(fused_hidden[:, 0])  # (B, 2): [no match, match]

    # ----------------------------------------------------------------- decoder (LM, captions, VQA answers)
    def answer_context(self, question_states: Tensor, question_mask: Tensor,
                       image_embeds: Tensor) -> tuple[Tensor, Tensor]:
        """What the VQA answer decoder cross-attends to, and its mask: the question states (B, Lq, D), followed by
        the image tokens (B, N, D) where ``cfg.vqa_decoder_reads_image`` (cross-attention has no positions, so the
        order does not matter; padded question positions stay masked)."""
        if not self.cfg.vqa_decoder_reads_image:
            return question_states, question_mask
        image_mask = torch.ones(image_embeds.shape[:2], dtype=question_mask.dtype, device=question_mask.device)
        return torch.cat([question_states, image_embeds], dim=1), torch.cat([question_mask, image_mask], dim=1)

    def decode(self, input_ids: Tensor, attention_mask: Tensor, encoder_hidden: Tensor | None,
               encoder_mask: Tensor | None = None, output_hidden_states: bool = False,
               output_attentions: bool = False, past_key_values=None, use_cache: bool = False,
               position_ids: Tensor | None = None, cross_key_values=None) -> TextOutput:
        """Causal decoding conditioned on ``encoder_hidden`` (image tokens for captions, fused question states for
        VQA), or on their ``cross_key_values`` (``decoder_cross_key_values``, computed once for every step; then
        ``encoder_hidden`` may be None). ``input_ids`` start with [DEC]; ``logits`` (B, L, V) predict the next
        token at every position; ``position_ids`` (B, L) give each row its own positions (a padded cache)."""
        return self.text_decoder(input_ids, attention_mask, encoder_hidden, encoder_mask,
                                 output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                                 past_key_values=past_key_values, use_cache=use_cache, position_ids=position_ids,
                                 cross_key_values=cross_key_values)

    def decoder_cross_key_values(self, encoder_hidden: Tensor) -> tuple[tuple[Tensor, Tensor], ...]:
        """The decoder's cross-attention keys and values of ``encoder_hidden`` (B, M, D), one (B, H, M, Dh) pair
        per decoder layer with cross-attention."""
        return self.text_decoder.cross_key_values(encoder_hidden)

