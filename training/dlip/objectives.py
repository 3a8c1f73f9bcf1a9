"""One pre-training / VQA step's forward pass: model outputs -> a dict of named losses (BLIP's recipe).

The weighted total is computed in exactly one place, ``total_loss``; a weight of 0 skips computing its term.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .losses import itc_loss, itc_targets, itm_loss, lm_loss, lm_loss_per_sequence, sample_hard_negatives
from .model.med import BlipMED
from .model.outputs import TextOutput, VisionOutput

if TYPE_CHECKING:
    from .data.batches import CaptionBatch, VQABatch
    from .data.tokenizer import SpecialTokens


@dataclass
class PretrainOutputs:
    """What the distillation step reuses from the student's forward pass."""

    losses: dict[str, Tensor]
    vision: VisionOutput
    text: TextOutput | None  # unimodal encoder (None: not run, ``unimodal=False``)
    fused: TextOutput | None  # image-grounded encoder on the B positive pairs
    decoder: TextOutput | None
    sim_i2t: Tensor | None  # (B, B); None when the unimodal encoder did not run
    itm_logits: Tensor | None  # (3B, 2)
    neg_text: Tensor | None
    neg_image: Tensor | None


def with_first_token(input_ids: Tensor, token_id: int) -> Tensor:
    """BLIP swaps [CLS] for [ENC] (image-grounded encoder) or [DEC] (decoder)."""
    ids = input_ids.clone()
    ids[:, 0] = token_id
    return ids


Flags = bool | Collection[str]  # True / False for every part, or the parts ("vision", "text", "fusion", "decoder")


def _wants(part: str, output_hidden_states: Flags, output_attentions: Flags) -> dict[str, bool]:
    """The ``output_hidden_states`` / ``output_attentions`` keyword arguments for one part's forward pass."""
    pick = lambda flag: flag if isinstance(flag, bool) else part in flag  # noqa: E731
    return dict(output_hidden_states=pick(output_hidden_states), output_attentions=pick(output_attentions))


def pretrain_forward(model: BlipMED, batch: CaptionBatch, special: SpecialTokens, weights: dict[str, float],
                     output_hidden_states: Flags = False, output_attentions: Flags = False,
                     neg_idx: tuple[Tensor, Tensor] | None = None, unimodal: bool = True,
                     similarity: bool = True) -> PretrainOutputs:
    """ITC + ITM (hard negatives) + LM on a batch of B aligned (image, caption) pairs.

    ``batch.image_ids`` (B,) identify the source image of each pair so captions of one image are not negatives.
    ``neg_idx`` lets a caller (distillation) impose the negatives instead of sampling them. The hidden-state and
    attention flags apply to every part, or to the parts named. A distillation teacher runs only what its terms read:
    ``unimodal=False`` skips the unimodal text encoder, ``similarity=False`` the ITC projections and similarities
    (then ``itc`` must have weight 0, and an ITM pass needs ``neg_idx``, since negatives are mined from them).
    """
    pixel_values, input_ids, attention_mask, image_ids = (batch.pixel_values, batch.input_ids, batch.attention_mask,
                                                          batch.image_ids)
    want = lambda part: _wants(part, output_hidden_states, output_attentions)  # noqa: E731
    losses: dict[str, Tensor] = {}
    assert unimodal or not similarity, "ITC similarities need the unimodal text encoder"
    vision = model.encode_image(pixel_values, **want("vision"))
    image_embeds = vision.last_hidden  # (B, N, Dv)
    text = model.encode_text(input_ids, attention_mask, **want("text")) if unimodal else None
    sim_i2t = None
    if similarity:
        image_feat, text_feat = model.image_feature(image_embeds), model.text_feature(text.last_hidden)  # (B, E)
        sim_i2t = image_feat @ text_feat.t() / model.clamped_temp()  # (B_img, B_txt), as BlipMED.itc
    if weights.get("itc", 0) > 0:
        assert sim_i2t is not None, "the ITC loss needs similarity=True"
        targets = itc_targets(image_ids, image_ids)
        losses["itc_loss"] = itc_loss(sim_i2t, sim_i2t.t(), targets, targets.t())

    fused = itm = neg_text = neg_image = None
    if weights.get("itm", 0) > 0:
        enc_ids = with_first_token(input_ids, special.enc)
        if neg_idx is None:
            assert sim_i2t is not None, "ITM negatives are mined from ITC similarities: pass neg_idx"
            neg_text, neg_image = sample_hard_negatives(sim_i2t, sim_i2t.t(), image_ids)
        else:
            neg_text, neg_image = neg_idx
        # positives, then (image, hard negative text), then (hard negative image, text): 3B pairs
        ids_all = torch.cat([enc_ids, enc_ids[neg_text], enc_ids], dim=0)  # (3B, L)
        mask_all = torch.cat([attention_mask, attention_mask[neg_text], attention_mask], dim=0)
        img_all = torch.cat([image_embeds, image_embeds, image_embeds[neg_image]], dim=0)  # (3B, N, Dv)
        fused_all = model.fuse(ids_all, mask_all, img_all, **want("fusion"))
        itm = model.itm_logits(fused_all.last_hidden)  # (3B, 2)
        b = input_ids.shape[0]
        labels = torch.cat([torch.ones(b), torch.zeros(2 * b)]).long().to(itm.device)
        losses["itm_loss"] = itm_loss(itm, labels)
        fused = _slice_text(fused_all, b)

    decoder = None
    if weights.get("lm", 0) > 0:
        dec_ids = with_first_token(batch.decoder_ids, special.dec)  # the LM's own captions where the data sets them
        decoder = model.decode(dec_ids, batch.decoder_mask, image_embeds, **want("decoder"))
        losses["lm_loss"] = lm_loss(decoder.logits, dec_ids, batch.decoder_mask, model.cfg.label_smoothing)
    return PretrainOutputs(losses, vision, text, fused, decoder, sim_i2t, itm, neg_text, neg_image)


def vqa_forward(model: BlipMED, batch: VQABatch, special: SpecialTokens, output_hidden_states: bool = False,
                output_attentions: bool = False) -> tuple[dict[str, Tensor], VisionOutput, TextOutput, TextOutput]:
    """BLIP VQA fine-tuning: the question is encoded with cross-attention over the image; the decoder generates the
    answer conditioned on the question states. Question i has ``batch.n_answers[i]`` weighted answers (flattened)."""
    question_mask, answer_mask, n_answers = batch.question_mask, batch.answer_mask, batch.n_answers
    want = dict(output_hidden_states=output_hidden_states, output_attentions=output_attentions)
    vision = model.encode_image(batch.pixel_values, **want)
    question = model.fuse(with_first_token(batch.question_ids, special.enc), question_mask, vision.last_hidden, **want)
    # what the answer decoder reads (the question states, plus the image tokens where configured), once per answer
    context, context_mask = model.answer_context(question.last_hidden, question_mask, vision.last_hidden)
    q_states = context.repeat_interleave(n_answers, dim=0)
    q_mask = context_mask.repeat_interleave(n_answers, dim=0)
    dec_ids = with_first_token(batch.answer_ids, special.dec)
    decoder = model.decode(dec_ids, answer_mask, q_states, q_mask, **want)
    per_token = lm_loss_per_sequence(decoder.logits, dec_ids, answer_mask, model.cfg.label_smoothing)  # (sum n,)
    loss = (batch.answer_weights * per_token).sum() / batch.pixel_values.shape[0]
    return {"vqa_loss": loss}, vision, question, decoder


def total_loss(losses: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """The one place where named losses are weighted and summed: ``x_loss`` is scaled by ``weights['x']``."""
    terms = [weights[name.removesuffix("_loss")] * value for name, value in losses.items()]
    if not terms:
        raise ValueError("every loss weight is 0: nothing to train")
    return torch.stack(terms).sum()


def _slice_text(out: TextOutput, b: int) -> TextOutput:
    """Keeps the first b rows (the positive pairs) of every tensor in a TextOutput."""
    cut = lambda ts: tuple(t[:b] for t in ts) if ts is not None else None  # noqa: E731
    return TextOutput(out.last_hidden[:b], cut(out.hidden_states), cut(out.self_attentions),
                      cut(out.cross_attentions), None, out.logits[:b] if out.logits is not None else None)
