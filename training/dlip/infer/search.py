"""Decoding over a backend's decoder cache: greedy and beam search for captions and VQA answers, and BLIP's answer
ranking over a candidate list. Token ids in, token ids out; text lives in the tokenizer.

Written once for every backend, in NumPy over the logits a ``DecoderCache`` step returns, so that a bundle and its
PyTorch model produce the same tokens; the TypeScript server's ``src/decode/search.ts`` is a port, held to this by
the parity fixtures.
"""

from __future__ import annotations

import numpy as np

from .backend import Backend, Tokens


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def greedy_decode(backend: Backend, encoder_hidden: Tokens, encoder_mask: np.ndarray | None, bos: int, eos: int,
                  max_tokens: int, min_tokens: int = 0) -> list[list[int]]:
    """Greedy generation for each row of ``encoder_hidden`` (B, M, D). Returns generated ids without [DEC] and
    without the final [SEP]. One decoder step per token thanks to the cache."""
    b = len(encoder_hidden)
    cache = backend.decoder(encoder_hidden, encoder_mask)
    ids = np.full((b, 1), bos, dtype=np.int64)
    new = np.ones((b, 1), dtype=np.int64)  # the mask of each step's one new token
    out_ids = np.empty((b, 0), dtype=np.int64)
    done = np.zeros(b, dtype=bool)
    for t in range(max_tokens):
        logits = cache.step(ids, new)[:, -1].copy()  # (B, V)
        if t < min_tokens:
            logits[:, eos] = -np.inf
        nxt = np.where(done, eos, logits.argmax(axis=-1))  # (B,)
        out_ids = np.concatenate([out_ids, nxt[:, None]], axis=1)
        done |= nxt == eos
        if done.all():
            break
        ids = nxt[:, None].astype(np.int64)
    return [_strip(row, eos) for row in out_ids.tolist()]


def beam_decode(backend: Backend, encoder_hidden: Tokens, encoder_mask: np.ndarray | None, bos: int, eos: int,
                max_tokens: int, num_beams: int = 3, min_tokens: int = 0,
                length_penalty: float = 1.0) -> list[list[int]]:
    """Beam search (score = sum log p / length ** length_penalty, as Hugging Face's). Returns the best hypothesis
    per row, without [DEC] and the final [SEP]."""
    if num_beams == 1:
        return greedy_decode(backend, encoder_hidden, encoder_mask, bos, eos, max_tokens, min_tokens)
    b, k = len(encoder_hidden), num_beams
    rows = np.repeat(np.arange(b), k)  # (B*k,) each row k times, its beams adjacent
    cache = backend.decoder(backend.take(encoder_hidden, rows), None if encoder_mask is None else encoder_mask[rows])
    seqs = np.empty((b * k, 0), dtype=np.int64)
    scores = np.zeros((b, k), dtype=np.float32)
    scores[:, 1:] = -np.inf  # all beams start identical: expand only the first
    ids = np.full((b * k, 1), bos, dtype=np.int64)
    new = np.ones((b * k, 1), dtype=np.int64)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    for t in range(max_tokens):
        logp = log_softmax(cache.step(ids, new)[:, -1])  # (B*k, V)
        if t < min_tokens:
            logp[:, eos] = -np.inf
        vocab = logp.shape[-1]
        cand = (scores.reshape(b * k, 1) + logp).reshape(b, k * vocab)  # (B, k*V)
        top_idx = np.argsort(-cand, axis=1, kind="stable")[:, : 2 * k]  # (B, 2k): enough to refill k live beams
        top_scores = np.take_along_axis(cand, top_idx, axis=1)
        new_scores = np.full((b, k), -np.inf, dtype=np.float32)
        src = np.zeros((b, k), dtype=np.int64)
        tok = np.full((b, k), eos, dtype=np.int64)
        for i in range(b):
            filled = 0
            for s, j in zip(top_scores[i].tolist(), top_idx[i].tolist()):
                beam, token = divmod(j, vocab)
                if s == -np.inf:
                    break
                if token == eos or t == max_tokens - 1:
                    hyp = seqs[i * k + beam].tolist() + ([] if token == eos else [token])
                    finished[i].append((s / max(len(hyp) + 1, 1) ** length_penalty, hyp))
                    continue
                new_scores[i, filled], src[i, filled], tok[i, filled] = s, beam, token
                filled += 1
                if filled == k:
                    break
        if t == max_tokens - 1 or _all_done(finished, new_scores, k, length_penalty, t + 2):
            break
        flat_src = (src + np.arange(b)[:, None] * k).reshape(-1)  # (B*k,) rows to continue
        seqs = np.concatenate([seqs[flat_src], tok.reshape(-1, 1)], axis=1)
        cache.reorder(flat_src)
        scores, ids = new_scores, tok.reshape(-1, 1)
    return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]


def _all_done(finished, live_scores: np.ndarray, k: int, length_penalty: float, next_len: int) -> bool:
    """Stop once every row has k finished hypotheses better than any live beam can still become (live scores only
    fall as tokens are added; dividing by the longest length they may reach bounds them from above)."""
    for i, hyps in enumerate(finished):
        if len(hyps) < k:
            return False
        worst_kept = sorted((h[0] for h in hyps), reverse=True)[k - 1]
        best_live = float(live_scores[i].max())
        if best_live != -np.inf and best_live / next_len ** length_penalty > worst_kept:
            return False
    return True


def _strip(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos)] if eos in row else row


def rank_answers(backend: Backend, question_states: Tokens, question_mask: np.ndarray, answer_ids: np.ndarray,
                 answer_mask: np.ndarray, bos: int) -> np.ndarray:
    """BLIP's ranking mode: total log-likelihood (B, C) of every candidate answer (C, La) for every question, from
    one uncached decoder pass over the teacher-forced answers; argmax over C is the answer."""
    b, c = len(question_states), answer_ids.shape[0]
    ids = answer_ids.copy()
    ids[:, 0] = bos
    rows = np.repeat(np.arange(b), c)  # (B*C,) each question once per candidate
    ids_all, mask_all = np.tile(ids, (b, 1)), np.tile(answer_mask, (b, 1))  # (B*C, La)
    decoder = backend.decoder(backend.take(question_states, rows), question_mask[rows], cached=False)
    logits = decoder.step(ids_all, mask_all)  # (B*C, La, V)
    logp = np.take_along_axis(log_softmax(logits[:, :-1]), ids_all[:, 1:, None], axis=-1)[..., 0]  # (B*C, La-1)
    return (logp * mask_all[:, 1:]).sum(axis=1).reshape(b, c)
