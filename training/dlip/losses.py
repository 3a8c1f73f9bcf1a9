"""Pre-training objectives, one pure function each (BLIP): ITC, ITM with hard negatives, LM (per batch, and per
sequence for the VQA answers)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def itc_targets(image_ids: Tensor, text_image_ids: Tensor) -> Tensor:
    """(B_img, B_txt) target distribution: uniform over the texts of the same image (BLIP's idx trick), so two
    captions of one image in a batch are not treated as negatives of each other."""
    pos = (image_ids[:, None] == text_image_ids[None, :]).float()  # (B_img, B_txt)
    return pos / pos.sum(dim=1, keepdim=True)


def itc_loss(sim_i2t: Tensor, sim_t2i: Tensor, targets_i2t: Tensor, targets_t2i: Tensor) -> Tensor:
    """Symmetric InfoNCE with (possibly soft) targets. sim_*: logits already divided by the temperature."""
    loss_i2t = -(F.log_softmax(sim_i2t, dim=1) * targets_i2t).sum(dim=1).mean()
    loss_t2i = -(F.log_softmax(sim_t2i, dim=1) * targets_t2i).sum(dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


def sample_hard_negatives(sim_i2t: Tensor, sim_t2i: Tensor, image_ids: Tensor, generator=None) -> tuple[Tensor, Tensor]:
    """BLIP's ITM negative mining over a batch of B aligned (image, text) pairs.

    For each image a text is drawn with probability softmax(sim) over the texts of *other* images, and for each text
    an image likewise. Texts of the same image (same ``image_ids``) are never picked. Returns (neg_text_idx for each
    image, neg_image_idx for each text), both (B,) long tensors indexing the batch.
    """
    with torch.no_grad():
        same = image_ids[:, None] == image_ids[None, :]  # (B, B) positives, including the diagonal
        w_i2t = F.softmax(sim_i2t.float(), dim=1).masked_fill(same, 0)
        w_t2i = F.softmax(sim_t2i.float(), dim=1).masked_fill(same, 0)
        if bool((w_i2t.sum(1) <= 0).any()):
            raise ValueError("ITM needs at least two different images in every batch")
        # rows whose softmax underflowed everywhere outside the positives: fall back to uniform over negatives
        w_i2t = torch.where(w_i2t.sum(1, keepdim=True) > 0, w_i2t, (~same).float())
        w_t2i = torch.where(w_t2i.sum(1, keepdim=True) > 0, w_t2i, (~same).float())
        neg_text = torch.multinomial(w_i2t, 1, generator=generator).squeeze(1)  # (B,)
        neg_image = torch.multinomial(w_t2i, 1, generator=generator).squeeze(1)  # (B,)
    return neg_text, neg_image


def itm_loss(itm_logits: Tensor, itm_labels: Tensor) -> Tensor:
    """Binary match / no-match cross-entropy over (3B, 2) logits: B positives, 2B hard negatives."""
    return F.cross_entropy(itm_logits, itm_labels)


def lm_loss(logits: Tensor, input_ids: Tensor, label_mask: Tensor, label_smoothing: float = 0.1) -> Tensor:
    """Next-token cross-entropy. ``logits`` (B, L, V) predict ``input_ids`` shifted left by one; ``label_mask`` (B, L)
    marks target positions that count (padding and prompt excluded)."""
    targets = input_ids[:, 1:].masked_fill(~label_mask[:, 1:].bool(), -100)  # (B, L-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=-100, label_smoothing=label_smoothing)


def lm_loss_per_sequence(logits: Tensor, input_ids: Tensor, label_mask: Tensor, label_smoothing: float) -> Tensor:
    """Summed next-token cross-entropy per sequence (B,), as BLIP's VQA loss (reduction='none' then sum)."""
    targets = input_ids[:, 1:].masked_fill(~label_mask[:, 1:].bool(), -100)  # (B, L-1)
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100,
                         label_smoothing=label_smoothing, reduction="none")  # (B, L-1)
    return ce.sum(dim=1)
