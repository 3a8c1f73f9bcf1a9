"""Decoding with the key/value cache: greedy and beam search for captions and VQA answers, and BLIP's answer
ranking over a candidate list. Token ids in, token ids out; text lives in the tokenizer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .med import BlipMED


def _reorder(past, index: Tensor):
    return tuple((k[index], v[index]) for k, v in past)


@torch.no_grad()
def greedy_decode(model: BlipMED, encoder_hidden: Tensor, bos: int, eos: int, max_tokens: int,
                  encoder_mask: Tensor | None = None, min_tokens: int = 0) -> list[list[int]]:
    """Greedy generation for each row of ``encoder_hidden`` (B, N, D). Returns generated ids without [DEC] and
    without the final [SEP]. One decoder step per token thanks to the cache."""
    b, device = encoder_hidden.shape[0], encoder_hidden.device
    ids = torch.full((b, 1), bos, dtype=torch.long, device=device)
    mask = torch.ones(b, 1, dtype=torch.long, device=device)
    out_ids = torch.empty(b, 0, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    past = None
    for t in range(max_tokens):
        out = model.decode(ids, mask, encoder_hidden, encoder_mask, past_key_values=past, use_cache=True)
        logits = out.logits[:, -1]  # (B, V)
        if t < min_tokens:
            logits[:, eos] = float("-inf")
        nxt = logits.argmax(dim=-1)  # (B,)
        nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
        out_ids = torch.cat([out_ids, nxt[:, None]], dim=1)
        done |= nxt == eos
        if bool(done.all()):
            break
        past, ids = out.past_key_values, nxt[:, None]
        mask = torch.cat([mask, torch.ones(b, 1, dtype=torch.long, device=device)], dim=1)
    return [_strip(row, eos) for row in out_ids.tolist()]


@torch.no_grad()
def beam_decode(model: BlipMED, encoder_hidden: Tensor, bos: int, eos: int, max_tokens: int, num_beams: int = 3,
                encoder_mask: Tensor | None = None, min_tokens: int = 0,
                length_penalty: float = 1.0) -> list[list[int]]:
    """Beam search (score = sum log p / length ** length_penalty, as Hugging Face's). Returns the best hypothesis
    per row, without [DEC] and the final [SEP]."""
    if num_beams == 1:
        return greedy_decode(model, encoder_hidden, bos, eos, max_tokens, encoder_mask, min_tokens)
    b, k, device = encoder_hidden.shape[0], num_beams, encoder_hidden.device
    enc = encoder_hidden.repeat_interleave(k, dim=0)  # (B*k, N, D)
    enc_mask = encoder_mask.repeat_interleave(k, dim=0) if encoder_mask is not None else None
    seqs = torch.empty(b * k, 0, dtype=torch.long, device=device)
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    ids = torch.full((b * k, 1), bos, dtype=torch.long, device=device)
    mask = torch.ones(b * k, 1, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    past = None
    for t in range(max_tokens):
        out = model.decode(ids, mask, enc, enc_mask, past_key_values=past, use_cache=True)
        logp = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B*k, V)
        if t < min_tokens:
            logp[:, eos] = float("-inf")
        vocab = logp.shape[-1]
        cand = (scores.view(b * k, 1) + logp).view(b, k * vocab)  # (B, k*V)
        top_scores, top_idx = cand.topk(2 * k, dim=1)  # (B, 2k): enough to refill k live beams
        new_scores = torch.full((b, k), float("-inf"), device=device)
        src = torch.zeros(b, k, dtype=torch.long, device=device)
        tok = torch.full((b, k), eos, dtype=torch.long, device=device)
        for i in range(b):
            filled = 0
            for s, j in zip(top_scores[i].tolist(), top_idx[i].tolist()):
                beam, token = divmod(j, vocab)
                if s == float("-inf"):
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
        flat_src = (src + torch.arange(b, device=device)[:, None] * k).view(-1)  # (B*k,) rows to continue
        seqs = torch.cat([seqs[flat_src], tok.view(-1, 1)], dim=1)
        past = _reorder(out.past_key_values, flat_src)
        scores, ids = new_scores, tok.view(-1, 1)
        mask = torch.cat([mask, torch.ones(b * k, 1, dtype=torch.long, device=device)], dim=1)
    return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]


def _all_done(finished, live_scores: Tensor, k: int, length_penalty: float, next_len: int) -> bool:
    """Stop once every row has k finished hypotheses better than any live beam can still become (live scores only
    fall as tokens are added; dividing by the longest length they may reach bounds them from above)."""
    for i, hyps in enumerate(finished):
        if len(hyps) < k:
            return False
        worst_kept = sorted((h[0] for h in hyps), reverse=True)[k - 1]
        best_live = live_scores[i].max().item()
        if best_live != float("-inf") and best_live / next_len ** length_penalty > worst_kept:
            return False
    return True


def _strip(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos)] if eos in row else row


@torch.no_grad()
def rank_answers(model: BlipMED, question_states: Tensor, question_mask: Tensor, answer_ids: Tensor,
                 answer_mask: Tensor, bos: int) -> Tensor:
    """BLIP's ranking mode: scores every candidate answer (C, La) for every question by its total log-likelihood
    under the decoder. Returns (B, C) log-likelihoods; argmax over C is the answer."""
    b, c = question_states.shape[0], answer_ids.shape[0]
    ids = answer_ids.clone()
    ids[:, 0] = bos
    states = question_states.repeat_interleave(c, dim=0)  # (B*C, Lq, D)
    q_mask = question_mask.repeat_interleave(c, dim=0)
    ids_all, mask_all = ids.repeat(b, 1), answer_mask.repeat(b, 1)  # (B*C, La)
    logits = model.decode(ids_all, mask_all, states, q_mask).logits  # (B*C, La, V)
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids_all[:, 1:, None]).squeeze(-1)  # (B*C, La-1)
    return (logp * mask_all[:, 1:]).sum(dim=1).view(b, c)
