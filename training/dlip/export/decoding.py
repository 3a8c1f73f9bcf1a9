"""Greedy and beam decoding in NumPy over a decoder *step* function (the bundle's ``decoder`` graph), step for step
the same algorithm as ``dlip.model.generate`` so that a bundle and its PyTorch model produce the same tokens.

A step function maps ``(input_ids (B, T), attention_mask (B, P+T), encoder_hidden (B, M, De), encoder_mask (B, M),
past)`` to ``(logits (B, T, V), present)``; ``past`` / ``present`` are lists of (B, H, P, Dh) arrays in the contract's
order (key 0, value 0, key 1, ...). ``empty_past(B)`` gives the P=0 cache of the first step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Step = Callable[..., tuple[np.ndarray, list[np.ndarray]]]
EmptyPast = Callable[[int], list[np.ndarray]]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def greedy_decode(step: Step, empty_past: EmptyPast, encoder_hidden: np.ndarray, encoder_mask: np.ndarray,
                  bos: int, eos: int, max_tokens: int, min_tokens: int = 0) -> list[list[int]]:
    """Greedy generation per row of ``encoder_hidden``; ids without [DEC] and the final [SEP]."""
    b = encoder_hidden.shape[0]
    ids = np.full((b, 1), bos, dtype=np.int64)
    mask = np.ones((b, 1), dtype=np.int64)
    out_ids = np.empty((b, 0), dtype=np.int64)
    done = np.zeros(b, dtype=bool)
    past = empty_past(b)
    for t in range(max_tokens):
        logits, present = step(ids, mask, encoder_hidden, encoder_mask, past)
        logits = logits[:, -1].copy()  # (B, V)
        if t < min_tokens:
            logits[:, eos] = -np.inf
        nxt = np.where(done, eos, logits.argmax(axis=-1))  # (B,)
        out_ids = np.concatenate([out_ids, nxt[:, None]], axis=1)
        done |= nxt == eos
        if done.all():
            break
        past, ids = present, nxt[:, None].astype(np.int64)
        mask = np.concatenate([mask, np.ones((b, 1), dtype=np.int64)], axis=1)
    return [_strip(row, eos) for row in out_ids.tolist()]


def beam_decode(step: Step, empty_past: EmptyPast, encoder_hidden: np.ndarray, encoder_mask: np.ndarray,
                bos: int, eos: int, max_tokens: int, num_beams: int = 3, min_tokens: int = 0,
                length_penalty: float = 1.0) -> list[list[int]]:
    """Beam search (score = sum log p / length ** length_penalty); the best hypothesis per row."""
    if num_beams == 1:
        return greedy_decode(step, empty_past, encoder_hidden, encoder_mask, bos, eos, max_tokens, min_tokens)
    b, k = encoder_hidden.shape[0], num_beams
    enc = np.repeat(encoder_hidden, k, axis=0)  # (B*k, M, De)
    enc_mask = np.repeat(encoder_mask, k, axis=0)  # (B*k, M)
    seqs = np.empty((b * k, 0), dtype=np.int64)
    scores = np.zeros((b, k), dtype=np.float32)
    scores[:, 1:] = -np.inf  # all beams start identical: expand only the first
    ids = np.full((b * k, 1), bos, dtype=np.int64)
    mask = np.ones((b * k, 1), dtype=np.int64)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    past = empty_past(b * k)
    for t in range(max_tokens):
        logits, present = step(ids, mask, enc, enc_mask, past)
        logp = log_softmax(logits[:, -1])  # (B*k, V)
        if t < min_tokens:
            logp[:, eos] = -np.inf
        vocab = logp.shape[-1]
        cand = (scores.reshape(b * k, 1) + logp).reshape(b, k * vocab)  # (B, k*V)
        top_idx = np.argsort(-cand, axis=1, kind="stable")[:, : 2 * k]  # (B, 2k), best first, as torch.topk
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
        past = [p[flat_src] for p in present]
        scores, ids = new_scores, tok.reshape(-1, 1)
        mask = np.concatenate([mask, np.ones((b * k, 1), dtype=np.int64)], axis=1)
    return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]


def _all_done(finished, live_scores: np.ndarray, k: int, length_penalty: float, next_len: int) -> bool:
    """Stop once every row has k finished hypotheses better than any live beam can still become."""
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


def rank_answers(step: Step, empty_past: EmptyPast, question_states: np.ndarray, question_mask: np.ndarray,
                 answer_ids: np.ndarray, answer_mask: np.ndarray, bos: int) -> np.ndarray:
    """BLIP's ranking mode: total log-likelihood (B, C) of every candidate answer (C, La) for every question, from
    one uncached decoder pass (P=0, T=La)."""
    b, c = question_states.shape[0], answer_ids.shape[0]
    ids = answer_ids.copy()
    ids[:, 0] = bos
    states = np.repeat(question_states, c, axis=0)  # (B*C, Lq, D)
    q_mask = np.repeat(question_mask, c, axis=0)
    ids_all, mask_all = np.tile(ids, (b, 1)), np.tile(answer_mask, (b, 1))  # (B*C, La)
    logits, _ = step(ids_all, mask_all, states, q_mask, empty_past(b * c))  # (B*C, La, V)
    logp = np.take_along_axis(log_softmax(logits[:, :-1]), ids_all[:, 1:, None], axis=-1)[..., 0]  # (B*C, La-1)
    return (logp * mask_all[:, 1:]).sum(axis=1).reshape(b, c)
