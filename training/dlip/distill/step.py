"""One DLIP distillation step: the student's task losses plus representation, attention and output distillation
against a frozen teacher run on the same batch.

Only the terms with a weight > 0 are computed: hidden states and attention maps are requested from either model
only when some term needs them, and a term whose weight is 0 is never evaluated.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import CAPTION_TERMS, DistillConfig
from ..data.batches import CaptionBatch, VQABatch
from ..data.tokenizer import SpecialTokens
from ..model.med import BlipMED
from ..objectives import PretrainOutputs, pretrain_forward, vqa_forward
from . import terms
from .layer_map import resolve_layer_map

# which model part each representation / attention term reads, and the projector that serves it
PARTS = {"vision": "visual_encoder", "text": "text_encoder", "fusion": "text_encoder_fused", "decoder": "text_decoder"}


def make_projector(student: BlipMED, teacher: BlipMED, weights: dict[str, float]) -> terms.HiddenProjector:
    """Learnable student -> teacher width maps for every representation term with a weight > 0."""
    s, t = student.cfg, teacher.cfg
    widths = {"vision": (s.vision.hidden_size, t.vision.hidden_size),
              "text": (s.text.hidden_size, t.text.hidden_size),
              "fusion": (s.text.hidden_size, t.text.hidden_size),
              "decoder": (s.decoder.hidden_size, t.decoder.hidden_size)}
    return terms.HiddenProjector({PARTS[p]: widths[p] for p in PARTS if weights.get(f"hidden_{p}", 0) > 0})


def teacher_frozen(teacher: BlipMED) -> BlipMED:
    """The teacher never trains: no gradients, eval mode (dropout off), and every call runs under no_grad."""
    teacher.requires_grad_(False)
    return teacher.eval()


class DistillStep(nn.Module):
    """forward(captions, vqa) -> named losses ``x_loss`` for every term x with a weight > 0."""

    def __init__(self, student: BlipMED, teacher: BlipMED, special: SpecialTokens, weights: dict[str, float],
                 settings: DistillConfig, projector: terms.HiddenProjector | None = None):
        super().__init__()
        self.student = student
        self.teacher = [teacher_frozen(teacher)]  # a list hides it from .parameters(), state_dict() and DDP
        self.special = special  # the student's and the teacher's: they share a tokenizer (see load_teacher)
        self.w = {k: v for k, v in weights.items() if v > 0}
        self.settings = settings
        self.projector = projector if projector is not None else make_projector(student, teacher, self.w)
        s, t = student.cfg, teacher.cfg
        counts = {"vision": (s.vision.num_layers, t.vision.num_layers), "text": (s.text.num_layers, t.text.num_layers),
                  "fusion": (s.text.num_layers, t.text.num_layers),
                  "decoder": (s.decoder.num_layers, t.decoder.num_layers),
                  "cross_fusion": (s.text.num_fusion_layers, t.text.num_fusion_layers),
                  "cross_decoder": (s.decoder.num_layers, t.decoder.num_layers)}
        self.pairs = {}
        for part, (ns, nt) in counts.items():
            spec = settings.layer_map.get(part, "uniform")
            embed = settings.include_embeddings and not part.startswith("cross")
            self.pairs[part] = resolve_layer_map(spec, ns, nt, include_embeddings=embed)

    def train(self, mode: bool = True) -> DistillStep:
        super().train(mode)
        self.teacher[0].eval()  # stays in eval mode whatever the student does
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, captions: CaptionBatch | None, vqa: VQABatch | None) -> dict[str, Tensor]:
        losses: dict[str, Tensor] = {}
        if captions is not None:
            losses.update(self._caption_terms(captions))
        if vqa is not None:
            losses.update(self._vqa_terms(vqa))
        return losses

    def _needs(self, prefix: str, parts=("vision", "text", "fusion", "decoder")) -> bool:
        return any(f"{prefix}_{p}" in self.w for p in parts)

    def _caption_terms(self, b: CaptionBatch) -> dict[str, Tensor]:
        w = self.w
        want_hidden, want_attn = self._needs("hidden"), self._needs("attn") or self._needs("cross")
        # the student's task weights, plus the passes some distillation term reads even if its task weight is 0
        run = {"itc": 1.0 if "itc" in w or "out_itc" in w else 0.0,
               "itm": 1.0 if ("itm" in w or "out_itm" in w or "hidden_fusion" in w or "attn_fusion" in w
                              or "cross_fusion" in w) else 0.0,
               "lm": 1.0 if ("lm" in w or "out_lm" in w or "hidden_decoder" in w or "attn_decoder" in w
                             or "cross_decoder" in w) else 0.0}
        s = pretrain_forward(self.student, b, self.special, run, output_hidden_states=want_hidden,
                             output_attentions=want_attn)
        losses = {k: v for k, v in s.losses.items() if k.removesuffix("_loss") in w}
        if not any(k in w for k in CAPTION_TERMS if k not in ("itc", "itm", "lm")):
            return losses  # no distillation term on caption batches: the teacher is not run at all
        with torch.no_grad():
            t = pretrain_forward(self.teacher[0], b, self.special, run, output_hidden_states=want_hidden,
                                 output_attentions=want_attn,
                                 neg_idx=(s.neg_text, s.neg_image) if s.neg_text is not None else None)
        losses.update(self._representation(s, t, b.attention_mask))
        losses.update(self._attention(s, t, b.attention_mask))
        losses.update(self._outputs(s, t, b.attention_mask))
        return losses

    # ------------------------------------------------------------------ DLIP terms
    def _representation(self, s: PretrainOutputs, t: PretrainOutputs, mask: Tensor) -> dict[str, Tensor]:
        out, kind = {}, self.settings.hidden_kind
        sources = {"vision": (s.vision, t.vision, None), "text": (s.text, t.text, mask),
                   "fusion": (s.fused, t.fused, mask), "decoder": (s.decoder, t.decoder, mask)}
        for part, (so, to, m) in sources.items():
            if f"hidden_{part}" in self.w:
                out[f"hidden_{part}_loss"] = terms.hidden_distill_loss(
                    so.hidden_states, to.hidden_states, self.pairs[part], self.projector[PARTS[part]], kind, m)
        return out

    def _attention(self, s: PretrainOutputs, t: PretrainOutputs, mask: Tensor) -> dict[str, Tensor]:
        out = {}
        self_maps = {"vision": (s.vision.attentions, t.vision.attentions, None),
                     "text": (s.text.self_attentions, t.text.self_attentions, mask),
                     "fusion": (s.fused.self_attentions if s.fused else None,
                                t.fused.self_attentions if t.fused else None, mask),
                     "decoder": (s.decoder.self_attentions if s.decoder else None,
                                 t.decoder.self_attentions if t.decoder else None, mask)}
        for part, (sa, ta, m) in self_maps.items():
            if f"attn_{part}" in self.w:
                out[f"attn_{part}_loss"] = terms.attention_distill_loss(sa, ta, self.pairs[part], m)
        if "cross_fusion" in self.w:
            out["cross_fusion_loss"] = terms.attention_distill_loss(
                s.fused.cross_attentions, t.fused.cross_attentions, self.pairs["cross_fusion"], mask)
        if "cross_decoder" in self.w:
            out["cross_decoder_loss"] = terms.attention_distill_loss(
                s.decoder.cross_attentions, t.decoder.cross_attentions, self.pairs["cross_decoder"], mask)
        return out

    def _outputs(self, s: PretrainOutputs, t: PretrainOutputs, mask: Tensor) -> dict[str, Tensor]:
        out, temp = {}, self.settings.temperature
        if "out_itc" in self.w:
            out["out_itc_loss"] = terms.itc_distill_loss(s.sim_i2t, t.sim_i2t)
        if "out_itm" in self.w:
            out["out_itm_loss"] = terms.itm_distill_loss(s.itm_logits, t.itm_logits, temp)
        if "out_lm" in self.w:
            # logits at position p predict token p+1: count the positions whose target is a real token
            next_mask = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)  # (B, L)
            out["out_lm_loss"] = terms.logit_distill_loss(s.decoder.logits, t.decoder.logits, next_mask, temp)
        return out

    def _vqa_terms(self, v: VQABatch) -> dict[str, Tensor]:
        s_losses, _, _, s_dec = vqa_forward(self.student, v, self.special)
        losses = {k: val for k, val in s_losses.items() if k.removesuffix("_loss") in self.w}
        if "out_vqa" in self.w:
            with torch.no_grad():
                _, _, _, t_dec = vqa_forward(self.teacher[0], v, self.special)
            next_mask = torch.cat([v.answer_mask[:, 1:], torch.zeros_like(v.answer_mask[:, :1])], dim=1)
            losses["out_vqa_loss"] = terms.logit_distill_loss(s_dec.logits, t_dec.logits, next_mask,
                                                              self.settings.temperature)
        return losses
