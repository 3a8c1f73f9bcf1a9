"""Batched inference over a test split: features, ITC/ITM retrieval scores, captions, VQA answers.

Pure model work (tensors in, arrays/ids out); metrics and files live in ``evaluate.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..data.tokenizer import TextTokenizer
from ..model.generate import beam_decode, greedy_decode, rank_answers
from ..model.med import BlipMED
from ..objectives import with_first_token


def _batches(n: int, size: int, desc: str, progress: bool):
    return tqdm(range(0, n, size), desc=desc, disable=not progress, dynamic_ncols=True, leave=False)


@torch.no_grad()
def encode_images(model: BlipMED, images: Tensor, batch_size: int = 64, progress: bool = True) -> tuple[Tensor, Tensor]:
    """(N, 3, H, W) -> image token embeddings (N, T, Dv) and normalised ITC features (N, E)."""
    embeds, feats = [], []
    for s in _batches(len(images), batch_size, "encode images", progress):
        e = model.encode_image(images[s:s + batch_size]).last_hidden
        embeds.append(e)
        feats.append(model.image_feature(e))
    return torch.cat(embeds), torch.cat(feats)


@torch.no_grad()
def encode_texts(model: BlipMED, tokenizer: TextTokenizer, texts: list[str], max_tokens: int,
                 batch_size: int = 256, progress: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Texts -> ids (N, L) and mask padded to a common L, and normalised ITC features (N, E)."""
    ids, mask = tokenizer(texts, max_tokens)
    feats = []
    for s in _batches(len(texts), batch_size, "encode texts", progress):
        out = model.encode_text(ids[s:s + batch_size], mask[s:s + batch_size])
        feats.append(model.text_feature(out.last_hidden))
    return ids, mask, torch.cat(feats)


@torch.no_grad()
def itm_scores(model: BlipMED, image_embeds: Tensor, enc_ids: Tensor, mask: Tensor,
               batch_size: int = 256) -> Tensor:
    """Match logits (P,) for P aligned (image tokens, [ENC] text) pairs."""
    out = []
    for s in range(0, len(enc_ids), batch_size):
        fused = model.fuse(enc_ids[s:s + batch_size], mask[s:s + batch_size], image_embeds[s:s + batch_size])
        out.append(model.itm_logits(fused.last_hidden)[:, 1])
    return torch.cat(out)


@torch.no_grad()
def retrieval_scores(model: BlipMED, image_embeds: Tensor, image_feats: Tensor, text_ids: Tensor,
                     text_mask: Tensor, text_feats: Tensor, enc_token: int, k: int,
                     progress: bool = True) -> dict[str, np.ndarray]:
    """BLIP's retrieval inference: rank by ITC cosine similarity, then re-rank each query's top-k by ITM.

    Re-ranked score = ITM match logit + ITC similarity on the top-k, -100 elsewhere (as BLIP's evaluation).
    Returns ``itc_i2t`` (N_img, N_txt), ``itc_t2i`` and ``itm_i2t``, ``itm_t2i``.
    """
    sims = (image_feats @ text_feats.t()).float()  # (N_img, N_txt) cosine
    enc_ids = with_first_token(text_ids, enc_token)
    k_i2t, k_t2i = min(k, sims.shape[1]), min(k, sims.shape[0])
    i2t = torch.full_like(sims, -100.0)
    for i in tqdm(range(sims.shape[0]), desc="ITM re-rank i2t", disable=not progress, dynamic_ncols=True,
                  leave=False):
        top_sim, top = sims[i].topk(k_i2t)  # (k,)
        logits = itm_scores(model, image_embeds[i:i + 1].expand(k_i2t, -1, -1), enc_ids[top], text_mask[top])
        i2t[i, top] = logits + top_sim
    t2i = torch.full_like(sims.t(), -100.0)
    for t in tqdm(range(sims.shape[1]), desc="ITM re-rank t2i", disable=not progress, dynamic_ncols=True,
                  leave=False):
        top_sim, top = sims[:, t].topk(k_t2i)
        logits = itm_scores(model, image_embeds[top], enc_ids[t:t + 1].expand(k_t2i, -1),
                            text_mask[t:t + 1].expand(k_t2i, -1))
        t2i[t, top] = logits + top_sim
    return {"itc_i2t": sims.numpy(), "itc_t2i": sims.t().numpy(), "itm_i2t": i2t.numpy(), "itm_t2i": t2i.numpy()}


@torch.no_grad()
def generate_captions(model: BlipMED, tokenizer: TextTokenizer, image_embeds: Tensor, max_tokens: int = 20,
                      num_beams: int = 1, min_tokens: int = 1, batch_size: int = 64,
                      progress: bool = True) -> list[str]:
    sp = tokenizer.special
    out: list[str] = []
    for s in _batches(len(image_embeds), batch_size, f"captions (beams={num_beams})", progress):
        ids = beam_decode(model, image_embeds[s:s + batch_size], sp.dec, sp.sep, max_tokens, num_beams,
                          min_tokens=min_tokens)
        out += tokenizer.batch_decode(ids)
    return out


@torch.no_grad()
def answer_questions(model: BlipMED, tokenizer: TextTokenizer, image_embeds: Tensor, questions: list[str],
                     max_question_tokens: int, max_answer_tokens: int, candidates: list[str] | None = None,
                     batch_size: int = 64, progress: bool = True) -> list[str]:
    """VQA the BLIP way: the question is encoded with cross-attention over its image, then the decoder generates
    the answer (greedy), or, given ``candidates``, the most likely candidate is chosen (BLIP's ranking mode)."""
    sp = tokenizer.special
    if candidates is not None:
        cand_ids, cand_mask = tokenizer(candidates, max_answer_tokens)
    out: list[str] = []
    desc = "VQA (rank)" if candidates is not None else "VQA (generate)"
    for s in _batches(len(questions), batch_size, desc, progress):
        q_ids, q_mask = tokenizer(questions[s:s + batch_size], max_question_tokens)
        images = image_embeds[s:s + batch_size]
        states = model.fuse(with_first_token(q_ids, sp.enc), q_mask, images).last_hidden
        states, q_mask = model.answer_context(states, q_mask, images)
        if candidates is None:
            ids = greedy_decode(model, states, sp.dec, sp.sep, max_answer_tokens, encoder_mask=q_mask)
            out += tokenizer.batch_decode(ids)
        else:
            best = rank_answers(model, states, q_mask, cand_ids, cand_mask, sp.dec).argmax(dim=1)  # (B,)
            out += [candidates[i] for i in best.tolist()]
    return out
