"""Standard errors of the metrics, against hand-computed values and brute-force references (pycocoevalcap rescoring
every bootstrap resample)."""

import math
import random

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from dlip.eval.metrics import (
    caption_scores,
    caption_scores_and_errors,
    ptb_like_tokenize,
    retrieval_metrics,
    vqa_accuracy_standard_error,
)
from dlip.eval.sampling_error import (
    binomial_standard_error,
    bleu4_bootstrap_standard_error,
    bleu_sentence_stats,
    corpus_bleu_from_stats,
    mean_standard_error,
    retrieval_standard_errors,
)


def test_binomial_and_mean_standard_errors_by_hand():
    assert binomial_standard_error(25.0, 4) == pytest.approx(100 * math.sqrt(0.25 * 0.75 / 4))  # 21.65
    assert binomial_standard_error(0.0, 10) == 0 and binomial_standard_error(100.0, 10) == 0
    # 0/1 scores: the standard error of the mean is the binomial one
    assert mean_standard_error([100, 0, 0, 0]) == pytest.approx(binomial_standard_error(25.0, 4))
    assert mean_standard_error([1.0, 3.0]) == pytest.approx(1.0 / math.sqrt(2))  # std 1, n 2
    with pytest.raises(ValueError, match="at least one item"):
        binomial_standard_error(50.0, 0)
    with pytest.raises(ValueError, match="non-empty"):
        mean_standard_error([])


def test_retrieval_errors_count_image_queries_for_tr_and_text_queries_for_ir():
    # 2 images, 4 texts (2 each); image 0 ranks its text first, image 1 does not; texts 0, 2 find their image
    score_i2t = np.array([[9, 1, 0, 0], [5, 1, 0, 0]], dtype=float)
    score_t2i = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=float)
    r = retrieval_metrics(score_i2t, score_t2i, {0: [0, 1], 1: [2, 3]}, [0, 0, 1, 1])
    assert r["txt_r1"] == 50 and r["img_r1"] == 75
    se = retrieval_standard_errors(r, n_images=2, n_texts=4)
    assert se["txt_r1"] == pytest.approx(100 * math.sqrt(0.5 * 0.5 / 2))
    assert se["img_r1"] == pytest.approx(100 * math.sqrt(0.75 * 0.25 / 4))
    assert set(se) == {"txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10"}  # no error for the means


def test_vqa_standard_error_is_over_the_per_question_scores():
    gts = [["red"] * 10, ["red"] * 10, ["red"] + ["blue"] * 9, ["blue"] * 10]
    preds = ["red", "red", "red", "red"]  # scores 1, 1, 0.3, 0
    scores = np.array([100.0, 100.0, 30.0, 0.0])
    assert vqa_accuracy_standard_error(preds, gts) == pytest.approx(scores.std() / 2)


WORDS = "a an the red blue green small large circle square star triangle left right of two three".split()


def _corpus(n, seed=0):
    rng = random.Random(seed)
    sentence = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))  # noqa: E731
    return ({i: sentence() for i in range(n)}, {i: [sentence() for _ in range(rng.randint(1, 4))] for i in range(n)})


def _tokenised(preds, refs):
    return ({k: [ptb_like_tokenize(r) for r in v] for k, v in refs.items()},
            {k: [ptb_like_tokenize(p)] for k, p in preds.items()})


def test_bleu_statistics_give_pycocoevalcaps_corpus_bleu4():
    gts, res = _tokenised(*_corpus(60))
    stats = bleu_sentence_stats(gts, res)
    assert stats.shape == (60, 10)
    reference = Bleu(4).compute_score(gts, res, verbose=0)[0][3]
    assert corpus_bleu_from_stats(stats.sum(axis=0)) == pytest.approx(reference, rel=1e-12)


def test_bleu4_bootstrap_matches_rescoring_every_resample_with_pycocoevalcap():
    gts, res = _tokenised(*_corpus(25, seed=1))
    stats = bleu_sentence_stats(gts, res)
    resamples, seed = 6, 3
    counts = np.random.default_rng(seed).multinomial(25, np.full(25, 1 / 25), size=resamples)  # the same draws
    replicates = []
    for row in counts:
        drawn = [i for i, c in enumerate(row) for _ in range(c)]  # each image as often as it was drawn
        g = {j: gts[i] for j, i in enumerate(drawn)}
        r = {j: res[i] for j, i in enumerate(drawn)}
        replicates.append(Bleu(4).compute_score(g, r, verbose=0)[0][3])
    expected = float(np.std(replicates, ddof=1))
    assert expected > 0
    assert bleu4_bootstrap_standard_error(stats, resamples, seed) == pytest.approx(expected, rel=1e-9)


def test_caption_errors_cider_over_the_per_image_scores_and_a_seeded_bleu_bootstrap():
    preds, refs = _corpus(40, seed=2)
    scores, errors = caption_scores_and_errors(preds, refs, bleu_resamples=50, seed=0)
    assert scores == caption_scores(preds, refs)
    gts, res = _tokenised(preds, refs)
    cider, per_image = Cider().compute_score(gts, res)
    assert scores["cider"] == pytest.approx(float(np.mean(per_image)))  # the corpus score is the per-image mean
    assert errors["cider"] == pytest.approx(float(np.std(per_image) / math.sqrt(40)))
    again = caption_scores_and_errors(preds, refs, bleu_resamples=50, seed=0)[1]
    assert again["bleu_4"] == errors["bleu_4"] > 0  # fixed seed: the same resamples
    assert caption_scores_and_errors(preds, refs, bleu_resamples=50, seed=1)[1]["bleu_4"] != errors["bleu_4"]
    # more images, smaller error: the bootstrap error shrinks roughly as 1 / sqrt(n)
    big_preds, big_refs = _corpus(640, seed=2)
    big = caption_scores_and_errors(big_preds, big_refs, bleu_resamples=50)[1]
    assert big["bleu_4"] < errors["bleu_4"] and big["cider"] < errors["cider"]
    assert "bleu_4" not in caption_scores_and_errors(preds, refs, bleu_resamples=0)[1]
