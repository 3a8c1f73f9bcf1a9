"""The evaluation tasks over any backend, batched: image and text features, ITC/ITM retrieval scores, captions and
VQA answers (generated or ranked). Arrays and ids out; metrics and files live in ``dlip.eval``."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from .backend import Backend, Tokens, answer_context, fusion_token, tokenize, with_first_token
from .search import beam_decode, greedy_decode, rank_answers


def batches(n: int, size: int, desc: str, progress: bool):
    return tqdm(range(0, n, size), desc=desc, disable=not progress, dynamic_ncols=True, leave=False)


def load_images(backend: Backend, paths: Sequence[str | os.PathLike], progress: bool = False) -> np.ndarray:
    """Image files -> (N, 3, S, S) float32, preprocessed as the backend's model expects."""
    return np.stack([backend.preprocess(p).numpy() for p in tqdm(paths, desc="load images", disable=not progress,
                                                                   leave=False)])


def encode_images(backend: Backend, pixel_values: np.ndarray, batch_size: int = 64,
                  progress: bool = False) -> tuple[Tokens, np.ndarray]:
    """(N, 3, S, S) -> image tokens (N, T, Dv) and normalised ITC features (N, E)."""
    embeds, feats = [], []
    for s in batches(len(pixel_values), batch_size, "encode images", progress):
        e, f = backend.encode_images(pixel_values[s:s + batch_size])
        embeds.append(e)
        feats.append(f)
    return backend.cat(embeds, axis=0), np.concatenate(feats)


def encode_texts(backend: Backend, texts: Sequence[str], max_tokens: int, batch_size: int = 256,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texts -> ids (N, L) and mask padded to a common L, and normalised ITC features (N, E)."""
    ids, mask = tokenize(backend, list(texts), max_tokens)
    feats = [backend.encode_texts(ids[s:s + batch_size], mask[s:s + batch_size])
             for s in batches(len(texts), batch_size, "encode texts", progress)]
    return ids, mask, np.concatenate(feats)


def itm_scores(backend: Backend, image_embeds: Tokens, enc_ids: np.ndarray, mask: np.ndarray,
               batch_size: int = 256) -> np.ndarray:
    """Match logits (P,) for P aligned (image tokens, [ENC] text) pairs."""
    return np.concatenate([backend.itm_logits(image_embeds[s:s + batch_size], enc_ids[s:s + batch_size],
                                              mask[s:s + batch_size])[:, 1]
                           for s in range(0, len(enc_ids), batch_size)])


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-x, kind="stable")[:k]  # ties: the lower index first


def retrieval_scores(backend: Backend, image_embeds: Tokens, image_feats: np.ndarray, text_ids: np.ndarray,
                     text_mask: np.ndarray, text_feats: np.ndarray, k: int,
                     progress: bool = False) -> dict[str, np.ndarray]:
    """BLIP's retrieval inference: rank by ITC cosine similarity, then re-rank each query's top-k by ITM.

    Re-ranked score = ITM match logit + ITC similarity on the top-k, -100 elsewhere (as BLIP's evaluation).
    Returns ``itc_i2t`` (N_img, N_txt), ``itc_t2i`` and ``itm_i2t``, ``itm_t2i``.
    """
    sims = (image_feats @ text_feats.T).astype(np.float32)  # (N_img, N_txt) cosine
    enc_ids = with_first_token(text_ids, fusion_token(backend))
    k_i2t, k_t2i = min(k, sims.shape[1]), min(k, sims.shape[0])
    i2t = np.full_like(sims, -100.0)
    for i in tqdm(range(sims.shape[0]), desc="ITM re-rank i2t", disable=not progress, dynamic_ncols=True,
                  leave=False):
        top = _topk(sims[i], k_i2t)  # (k,)
        logits = itm_scores(backend, backend.take(image_embeds, np.full(k_i2t, i)), enc_ids[top], text_mask[top])
        i2t[i, top] = logits + sims[i, top]
    t2i = np.full_like(sims.T, -100.0)
    for t in tqdm(range(sims.shape[1]), desc="ITM re-rank t2i", disable=not progress, dynamic_ncols=True,
                  leave=False):
        top = _topk(sims[:, t], k_t2i)
        logits = itm_scores(backend, backend.take(image_embeds, top), np.repeat(enc_ids[t:t + 1], k_t2i, axis=0),
                            np.repeat(text_mask[t:t + 1], k_t2i, axis=0))
        t2i[t, top] = logits + sims[top, t]
    return {"itc_i2t": sims, "itc_t2i": sims.T.copy(), "itm_i2t": i2t, "itm_t2i": t2i}


def caption_ids(backend: Backend, image_embeds: Tokens, max_tokens: int, num_beams: int = 1,
                min_tokens: int = 1) -> list[list[int]]:
    """Caption token ids for image tokens (B, T, Dv): the decoder over the whole image, [DEC] first, stop at [SEP]
    ([SEP] barred for the first ``min_tokens``)."""
    sp = backend.tokenizer.special
    return beam_decode(backend, image_embeds, None, sp.dec, sp.sep, max_tokens, num_beams, min_tokens)


def generate_captions(backend: Backend, image_embeds: Tokens, max_tokens: int = 20, num_beams: int = 1,
                      min_tokens: int = 1, batch_size: int = 64, progress: bool = False) -> list[str]:
    out: list[str] = []
    for s in batches(len(image_embeds), batch_size, f"captions (beams={num_beams})", progress):
        ids = caption_ids(backend, image_embeds[s:s + batch_size], max_tokens, num_beams, min_tokens)
        out += backend.tokenizer.batch_decode(ids)
    return out


def answer_ids(backend: Backend, image_embeds: Tokens, question_ids: np.ndarray, question_mask: np.ndarray,
               max_answer_tokens: int) -> list[list[int]]:
    """Greedy answer token ids for tokenized questions (B, Lq), one image's tokens per question."""
    states, mask = answer_context(backend, image_embeds, question_ids, question_mask)
    sp = backend.tokenizer.special
    return greedy_decode(backend, states, mask, sp.dec, sp.sep, max_answer_tokens)


def answer_questions(backend: Backend, image_embeds: Tokens, questions: Sequence[str], max_question_tokens: int,
                     max_answer_tokens: int, candidates: Sequence[str] | None = None, batch_size: int = 64,
                     progress: bool = False) -> list[str]:
    """VQA the BLIP way: the question is encoded with cross-attention over its image, then the decoder generates
    the answer (greedy), or, given ``candidates``, the most likely candidate is chosen (BLIP's ranking mode)."""
    sp = backend.tokenizer.special
    if candidates is not None:
        cand_ids, cand_mask = tokenize(backend, list(candidates), max_answer_tokens)
    out: list[str] = []
    desc = "VQA (rank)" if candidates is not None else "VQA (generate)"
    for s in batches(len(questions), batch_size, desc, progress):
        q_ids, q_mask = tokenize(backend, list(questions[s:s + batch_size]), max_question_tokens)
        images = image_embeds[s:s + batch_size]
        if candidates is None:
            out += backend.tokenizer.batch_decode(answer_ids(backend, images, q_ids, q_mask, max_answer_tokens))
        else:
            states, mask = answer_context(backend, images, q_ids, q_mask)
            scores = rank_answers(backend, states, mask, cand_ids, cand_mask, sp.dec)  # (B, C)
            out += [candidates[i] for i in scores.argmax(axis=1).tolist()]
    return out
