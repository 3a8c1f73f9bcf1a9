"""The evaluation protocol (dlip.infer) over both backends: greedy and beam search, answer ranking and retrieval
re-ranking, on a micro model run by PyTorch (TorchBackend) and, after export, by onnxruntime (OrtBackend)."""

import numpy as np
import pytest
import torch

from dlip.config import model_preset
from dlip.data.tokenizer import TextTokenizer, train_wordpiece
from dlip.export.export import builtin_corpus, write_bundle
from dlip.infer import tasks
from dlip.infer.backend import answer_context, tokenize
from dlip.infer.ort_backend import OrtBackend
from dlip.infer.search import beam_decode, greedy_decode, rank_answers
from dlip.infer.torch_backend import TorchBackend
from dlip.model.med import BlipMED

QUESTIONS = ["what color is the circle?", "where is the star?", "how many squares are there?"]
CAPTIONS = ["a red circle", "two blue squares", "a star left of a circle", "a green triangle", "one black square"]


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    """The same random micro model as a TorchBackend and, exported, as an OrtBackend."""
    tokenizer = TextTokenizer(train_wordpiece(builtin_corpus(), vocab_size=120))
    torch.manual_seed(0)
    model = BlipMED(model_preset("micro").with_vocab(tokenizer.vocab_size, tokenizer.special.pad)).eval()
    out = write_bundle(model, tokenizer, tmp_path_factory.mktemp("search") / "b", source={}, metrics={},
                       max_text_tokens=35, max_answer_tokens=10, progress=False)
    return TorchBackend(model, tokenizer), OrtBackend(out)


def _images(seed=0, n=3):
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


@pytest.mark.parametrize("which", [0, 1], ids=["torch", "onnx"])
def test_greedy_equals_beam_of_one_and_follows_the_argmax(backends, which):
    backend = backends[which]
    embeds, _ = backend.encode_images(_images(1, 2))
    g = greedy_decode(backend, embeds, None, bos=6, eos=3, max_tokens=5)
    assert g == beam_decode(backend, embeds, None, bos=6, eos=3, max_tokens=5, num_beams=1)
    # the greedy sequence re-scored by teacher forcing (one uncached pass) equals step-by-step argmax
    for row, seq in enumerate(g):
        ids = np.array([[6] + seq])
        logits = backend.decoder(backend.take(embeds, np.array([row])), None, cached=False).step(ids, np.ones_like(ids))
        assert logits[0, :len(seq)].argmax(-1).tolist() == seq
    beams = beam_decode(backend, embeds, None, bos=6, eos=3, max_tokens=5, num_beams=3)
    assert len(beams) == 2 and all(len(b) <= 5 for b in beams)


@pytest.mark.parametrize("which", [0, 1], ids=["torch", "onnx"])
def test_rank_answers_prefers_likelier_candidate(backends, which):
    backend = backends[which]
    embeds, _ = backend.encode_images(_images(3, 1))
    q_mask = np.ones(embeds.shape[:2], dtype=np.int64)  # any encoder states work for the ranking mechanics
    first = backend.decoder(embeds, q_mask).step(np.array([[6]]), np.ones((1, 1), dtype=np.int64))[0, -1]
    best = int(first.argmax())
    other = 7 if best != 7 else 8
    cands = np.array([[2, other, 3], [2, best, 3]])
    scores = rank_answers(backend, embeds, q_mask, cands, np.ones_like(cands), bos=6)
    assert scores.shape == (1, 2)
    assert first[best] >= first[other]
    # a candidate's score is the sum of its teacher-forced token log-likelihoods
    ids = np.array([[6, best, 3]])
    logits = backend.decoder(embeds, q_mask, cached=False).step(ids, np.ones_like(ids))[0, :-1].astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert scores[0, 1] == pytest.approx(logp[0, best] + logp[1, 3], abs=1e-4)


def test_the_protocol_gives_the_same_ids_and_rankings_on_both_backends(backends):
    torch_backend, ort_backend = backends
    pixels = _images(4, 3)
    (t_embeds, t_feats), (o_embeds, o_feats) = torch_backend.encode_images(pixels), ort_backend.encode_images(pixels)
    assert np.abs(t_feats - o_feats).max() < 1e-4
    for beams in (1, 3):
        assert tasks.caption_ids(torch_backend, t_embeds, 12, beams) == tasks.caption_ids(ort_backend, o_embeds, 12,
                                                                                           beams)
    per_question = np.arange(len(QUESTIONS)) % len(pixels)
    q_ids, q_mask = tokenize(ort_backend, QUESTIONS, 35)
    t_q, o_q = torch_backend.take(t_embeds, per_question), ort_backend.take(o_embeds, per_question)
    assert tasks.answer_ids(torch_backend, t_q, q_ids, q_mask, 10) == tasks.answer_ids(ort_backend, o_q, q_ids,
                                                                                       q_mask, 10)
    cands = ["red", "blue", "two", "left", "yes"]
    ranked = [tasks.answer_questions(b, e, QUESTIONS, 35, 10, cands) for b, e in ((torch_backend, t_q),
                                                                                   (ort_backend, o_q))]
    assert ranked[0] == ranked[1] and set(ranked[0]) <= set(cands)
    t_ctx, t_ctx_mask = answer_context(torch_backend, t_q, q_ids, q_mask)
    c_ids, c_mask = tokenize(ort_backend, cands, 10)
    t_scores = rank_answers(torch_backend, t_ctx, t_ctx_mask, c_ids, c_mask, 6)
    o_ctx, o_ctx_mask = answer_context(ort_backend, o_q, q_ids, q_mask)
    assert np.abs(t_scores - rank_answers(ort_backend, o_ctx, o_ctx_mask, c_ids, c_mask, 6)).max() < 1e-3
    scores = []
    for backend, embeds, feats in ((torch_backend, t_embeds, t_feats), (ort_backend, o_embeds, o_feats)):
        ids, mask, text_feats = tasks.encode_texts(backend, CAPTIONS, 35)
        scores.append(tasks.retrieval_scores(backend, embeds, feats, ids, mask, text_feats, k=2))
    for key in ("itc_i2t", "itc_t2i", "itm_i2t", "itm_t2i"):
        assert np.abs(scores[0][key] - scores[1][key]).max() < 1e-3, key
        assert (np.argsort(-scores[0][key], axis=1, kind="stable")[:, :2]
                == np.argsort(-scores[1][key], axis=1, kind="stable")[:, :2]).all(), key
    assert ((scores[0]["itm_i2t"] > -100).sum(axis=1) == 2).all()  # only each query's ITC top-2 is re-ranked
