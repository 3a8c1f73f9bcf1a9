"""One DLIP distillation step: the student's task losses plus representation, attention and output distillation
against a frozen teacher run on the same batch.

Only the terms with a weight > 0 are computed: hidden states and attention maps are requested from either model
only when some term needs them, and a term whose weight is 0 is never evaluated.

The teacher may be several models (Hugging Face checkpoints each hold only some parts of BLIP): ``sources`` says
which one each distillation term is computed from (``teachers.assign_terms``), and each teacher runs only the passes
its terms read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


# the passes of pretrain_forward beyond the vision encoder that each caption-batch distillation term reads
_PASS = {"hidden_fusion": "itm", "attn_fusion": "itm", "cross_fusion": "itm", "out_itm": "itm",
         "hidden_decoder": "lm", "attn_decoder": "lm", "cross_decoder": "lm", "out_lm": "lm"}


def as_teachers(teacher: BlipMED | Sequence[BlipMED]) -> list[BlipMED]:
    return [teacher] if isinstance(teacher, BlipMED) else list(teacher)


def make_projector(student: BlipMED, teacher: BlipMED | Sequence[BlipMED], weights: dict[str, float],
                   sources: Mapping[str, int] | None = None) -> terms.HiddenProjector:
    """Learnable student -> teacher width maps for every representation term with a weight > 0 (to the width of the
    teacher ``sources`` names for the term; the first teacher by default)."""
    teachers, sources = as_teachers(teacher), sources or {}
    s = student.cfg
    widths = {}
    for p in PARTS:
        if weights.get(f"hidden_{p}", 0) > 0:
            t = teachers[sources.get(f"hidden_{p}", 0)].cfg
            student_width, teacher_width = {"vision": (s.vision.hidden_size, t.vision.hidden_size),
                                            "text": (s.text.hidden_size, t.text.hidden_size),
                                            "fusion": (s.text.hidden_size, t.text.hidden_size),
                                            "decoder": (s.decoder.hidden_size, t.decoder.hidden_size)}[p]
            widths[PARTS[p]] = (student_width, teacher_width)
    return terms.HiddenProjector(widths)


def teacher_frozen(teacher: BlipMED) -> BlipMED:
    """The teacher never trains: no gradients, eval mode (dropout off), and every call runs under no_grad."""
    teacher.requires_grad_(False)
    return teacher.eval()


class DistillStep(nn.Module):
    """forward(captions, vqa) -> named losses ``x_loss`` for every term x with a weight > 0.

    ``teacher``: one model, or several with ``sources`` mapping each distillation term to the index of the one it is
    computed from (terms not in ``sources`` use the first)."""

    def __init__(self, student: BlipMED, teacher: BlipMED | Sequence[BlipMED], special: SpecialTokens,
                 weights: dict[str, float], settings: DistillConfig, projector: terms.HiddenProjector | None = None,
                 sources: Mapping[str, int] | None = None):
        super().__init__()
        self.student = student
        # a plain list hides the teachers from .parameters(), state_dict() and DDP
        self.teachers = [teacher_frozen(t) for t in as_teachers(teacher)]
        self.special = special  # the student's and the teachers': they share a tokenizer (see load_teachers)
        self.w = {k: v for k, v in weights.items() if v > 0}
        self.src = {k: (sources or {}).get(k, 0) for k in self.w}  # term -> index of its teacher
        self.settings = settings
        self.projector = (projector if projector is not None
                          else make_projector(student, self.teachers, self.w, self.src))
        s = student.cfg
        self.pairs = {}
        for part in ("vision", "text", "fusion", "decoder", "cross_fusion", "cross_decoder"):
            # the representation and attention terms of one part read the same teacher parts: one teacher serves them
            served = {self.src[k] for k in (f"hidden_{part}", f"attn_{part}", part) if k in self.src}
            assert len(served) <= 1, f"the terms of part {part} come from different teachers: {served}"
            t = self.teachers[served.pop() if served else 0].cfg
            ns, nt = {"vision": (s.vision.num_layers, t.vision.num_layers),
                      "text": (s.text.num_layers, t.text.num_layers),
                      "fusion": (s.text.num_layers, t.text.num_layers),
                      "decoder": (s.decoder.num_layers, t.decoder.num_layers),
                      "cross_fusion": (s.text.num_fusion_layers, t.text.num_fusion_layers),
                      "cross_decoder": (s.decoder.num_layers, t.decoder.num_layers)}[part]
            spec = settings.layer_map.get(part, "uniform")
            embed = settings.include_embeddings and not part.startswith("cross")
            self.pairs[part] = resolve_layer_map(spec, ns, nt, include_embeddings=embed)

    @property
    def teacher(self) -> BlipMED:
        """The first teacher (the only one of a single-teacher run)."""
        return self.teachers[0]

    def train(self, mode: bool = True) -> DistillStep:
        super().train(mode)
        for t in self.teachers:
            t.eval()  # stays in eval mode whatever the student does
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
        distilled = [k for k in CAPTION_TERMS if k in w and k not in ("itc", "itm", "lm")]
        # each teacher runs once, with only the passes, hidden states and attention maps its own terms read; a
        # teacher that serves no caption-batch term (or no distillation term at all) is not run
        t_out: dict[int, PretrainOutputs] = {}
        for i in sorted({self.src[k] for k in distilled}):
            mine = [k for k in distilled if self.src[k] == i]
            t_run = {_PASS[k]: 1.0 for k in mine if k in _PASS}  # the teacher's own task losses are never read
            hidden = {p for p in PARTS if f"hidden_{p}" in mine}
            attn = {p for p in PARTS if f"attn_{p}" in mine or f"cross_{p}" in mine}  # cross_fusion, cross_decoder
            with torch.no_grad():
                t_out[i] = pretrain_forward(
                    self.teachers[i], b, self.special, t_run, output_hidden_states=hidden, output_attentions=attn,
                    neg_idx=(s.neg_text, s.neg_image) if s.neg_text is not None else None,
                    unimodal=any(k in mine for k in ("hidden_text", "attn_text", "out_itc")),
                    similarity="out_itc" in mine)
        # decoder terms read the LM's captions (CaptionBatch.decoder_mask), the other text parts the batch's captions
        losses.update(self._representation(s, t_out, b.attention_mask, b.decoder_mask))
        losses.update(self._attention(s, t_out, b.attention_mask, b.decoder_mask))
        losses.update(self._outputs(s, t_out, b.decoder_mask))
        return losses

    # ------------------------------------------------------------------ DLIP terms
    # ``t_out``: each teacher's outputs by index; term k reads ``t_out[self.src[k]]``
    def _representation(self, s: PretrainOutputs, t_out: dict[int, PretrainOutputs],
                        mask: Tensor, dec_mask: Tensor) -> dict[str, Tensor]:
        out, kind = {}, self.settings.hidden_kind
        for part, m in (("vision", None), ("text", mask), ("fusion", mask), ("decoder", dec_mask)):
            term = f"hidden_{part}"
            if term in self.w:
                so, to = _part(s, part), _part(t_out[self.src[term]], part)
                out[f"{term}_loss"] = terms.hidden_distill_loss(
                    so.hidden_states, to.hidden_states, self.pairs[part], self.projector[PARTS[part]], kind, m)
        return out

    def _attention(self, s: PretrainOutputs, t_out: dict[int, PretrainOutputs], mask: Tensor,
                   dec_mask: Tensor) -> dict[str, Tensor]:
        out = {}
        for part, m in (("vision", None), ("text", mask), ("fusion", mask), ("decoder", dec_mask)):
            term = f"attn_{part}"
            if term in self.w:
                sa, ta = _self_attentions(s, part), _self_attentions(t_out[self.src[term]], part)
                out[f"{term}_loss"] = terms.attention_distill_loss(sa, ta, self.pairs[part], m)
        for part in ("fusion", "decoder"):
            term = f"cross_{part}"
            if term in self.w:
                so, to = _part(s, part), _part(t_out[self.src[term]], part)
                out[f"{term}_loss"] = terms.attention_distill_loss(
                    so.cross_attentions, to.cross_attentions, self.pairs[term], dec_mask if part == "decoder" else mask)
        return out

    def _outputs(self, s: PretrainOutputs, t_out: dict[int, PretrainOutputs], dec_mask: Tensor) -> dict[str, Tensor]:
        out, temp = {}, self.settings.temperature
        if "out_itc" in self.w:
            out["out_itc_loss"] = terms.itc_distill_loss(s.sim_i2t, t_out[self.src["out_itc"]].sim_i2t)
        if "out_itm" in self.w:
            out["out_itm_loss"] = terms.itm_distill_loss(s.itm_logits, t_out[self.src["out_itm"]].itm_logits, temp)
        if "out_lm" in self.w:
            # logits at position p predict token p+1: count the positions whose target is a real token
            next_mask = torch.cat([dec_mask[:, 1:], torch.zeros_like(dec_mask[:, :1])], dim=1)  # (B, L)
            out["out_lm_loss"] = terms.logit_distill_loss(s.decoder.logits, t_out[self.src["out_lm"]].decoder.logits,
                                                          next_mask, temp)
        return out

    def _vqa_terms(self, v: VQABatch) -> dict[str, Tensor]:
        s_losses, _, _, s_dec = vqa_forward(self.student, v, self.special)
        losses = {k: val for k, val in s_losses.items() if k.removesuffix("_loss") in self.w}
        if "out_vqa" in self.w:
            with torch.no_grad():
                _, _, _, t_dec = vqa_forward(self.teachers[self.src["out_vqa"]], v, self.special)
            next_mask = torch.cat([v.answer_mask[:, 1:], torch.zeros_like(v.answer_mask[:, :1])], dim=1)
            losses["out_vqa_loss"] = terms.logit_distill_loss(s_dec.logits, t_dec.logits, next_mask,
                                                              self.settings.temperature)
        return losses


def _part(o: PretrainOutputs, part: str):
    """The VisionOutput / TextOutput of one part ("vision", "text", "fusion", "decoder") of a forward pass."""
    return {"vision": o.vision, "text": o.text, "fusion": o.fused, "decoder": o.decoder}[part]


def _self_attentions(o: PretrainOutputs, part: str):
    out = _part(o, part)
    if part == "vision":
        return out.attentions
    return out.self_attentions if out is not None else None
