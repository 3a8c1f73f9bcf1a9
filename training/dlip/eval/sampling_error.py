"""Sampling error of the evaluation metrics: one standard error over the test items, as pure functions.

A metric scored on n test items (images, texts or questions) is an estimate; had we drawn another n items from the
same distribution it would differ by about one standard error (se). Each headline metric's se, in the metric's unit:

- recall@K (TR@K per image query, IR@K per text query): a query hits or misses, so the recall is a binomial
  proportion p over the n queries and ``se = sqrt(p (1 - p) / n)``;
- VQA accuracy: the mean of the per-question VQA scores s_i, so ``se = std(s) / sqrt(n)`` (population std, ddof 0,
  which for 0/1 scores is exactly the binomial formula);
- CIDEr (CIDEr-D): pycocoevalcap's corpus score is the mean of its per-image scores c_i, so
  ``se = std(c) / sqrt(n)`` (the document frequencies, computed over the whole test corpus, are held fixed);
- BLEU-4: a corpus statistic (n-gram counts are summed over images before the ratio is taken), so no per-image
  formula applies; ``se`` is the standard deviation of BLEU-4 over bootstrap resamples of the images (``B``
  resamples of n images drawn with replacement, fixed seed), each resample's corpus BLEU-4 computed exactly as
  pycocoevalcap's ``Bleu(4)`` computes it, from every image's n-gram counts. 200 resamples of 1,000 images take
  well under a second.

Retrieval and VQA errors are in percent like their metrics; the captioning errors (``caption_scores_and_errors``
in ``dlip.eval.metrics``) are fractions like pycocoevalcap's scores (callers multiply both by 100).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
from pycocoevalcap.bleu.bleu_scorer import BleuScorer

BLEU_RESAMPLES = 200  # bootstrap resamples behind BLEU-4's standard error
BLEU_SEED = 0


def binomial_standard_error(percent: float, n: int) -> float:
    """``100 sqrt(p (1 - p) / n)`` for a proportion of ``percent`` (0-100) over ``n`` independent trials."""
    if n <= 0:
        raise ValueError(f"a standard error needs at least one item, got n={n}")
    if not 0 <= percent <= 100:
        raise ValueError(f"a proportion must be in [0, 100] percent, got {percent}")
    p = percent / 100
    return 100 * math.sqrt(p * (1 - p) / n)


def mean_standard_error(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of the mean of ``values``: ``std(values) / sqrt(n)`` (population std, ddof 0)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"expected a non-empty 1-D array of per-item scores, got shape {v.shape}")
    return float(v.std() / math.sqrt(len(v)))


def retrieval_standard_errors(recalls: Mapping[str, float], n_images: int, n_texts: int) -> dict[str, float]:
    """The binomial se of every recall@K of ``retrieval_metrics``' output: ``txt_r*`` over the ``n_images`` image
    queries, ``img_r*`` over the ``n_texts`` text queries (in percent; the means of recalls get none)."""
    out = {}
    for key, value in recalls.items():
        if re.fullmatch(r"(txt|img)_r\d+", key):
            out[key] = binomial_standard_error(value, n_images if key.startswith("txt") else n_texts)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# BLEU-4 by bootstrap over images
# ---------------------------------------------------------------------------------------------------------------------

_TINY, _SMALL = 1e-15, 1e-9  # pycocoevalcap's guards against 0 / 0


def bleu_sentence_stats(gts: Mapping, res: Mapping, n: int = 4) -> np.ndarray:
    """Per-image BLEU statistics, (N, 2 + 2n): test length, "closest" reference length, then the n-gram guess
    counts (n columns) and clipped match counts (n columns), cooked by pycocoevalcap's ``BleuScorer`` from the same
    tokenised ``gts`` (id -> references) and ``res`` (id -> [prediction]) that ``Bleu(4).compute_score`` takes."""
    scorer = BleuScorer(n=n)
    for key in gts:
        scorer += (res[key][0], gts[key])
    rows = []
    for comps in scorer.ctest:
        testlen = comps["testlen"]
        reflen = min((abs(length - testlen), length) for length in comps["reflen"])[1]  # option "closest"
        rows.append([testlen, reflen, *comps["guess"], *comps["correct"]])
    return np.asarray(rows, dtype=np.float64)


def corpus_bleu_from_stats(totals: np.ndarray, n: int = 4) -> np.ndarray:
    """Corpus BLEU-n of summed statistics (..., 2 + 2n) (the columns of ``bleu_sentence_stats``), with
    pycocoevalcap's formula: the geometric mean of the n clipped precisions times the brevity penalty."""
    testlen, reflen = totals[..., 0], totals[..., 1]
    guess, correct = totals[..., 2:2 + n], totals[..., 2 + n:2 + 2 * n]
    bleu = np.prod((correct + _TINY) / (guess + _SMALL), axis=-1) ** (1 / n)
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    penalty = np.where(ratio < 1, np.exp(1 - 1 / np.minimum(ratio, 1)), 1.0)
    return bleu * penalty


def bleu4_bootstrap_standard_error(stats: np.ndarray, resamples: int = BLEU_RESAMPLES,
                                   seed: int = BLEU_SEED) -> float:
    """Standard deviation (ddof 1) of corpus BLEU-4 over ``resamples`` bootstrap resamples of the images (rows of
    ``bleu_sentence_stats``), as a fraction like pycocoevalcap's BLEU."""
    if resamples < 2:
        raise ValueError(f"a bootstrap needs at least 2 resamples, got {resamples}")
    n = len(stats)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=resamples)  # (B, N): how often each image was drawn
    replicates = corpus_bleu_from_stats(counts @ stats)  # (B, 2 + 2n) summed statistics -> (B,)
    return float(replicates.std(ddof=1))


def ratio_standard_error(numerators: Sequence[float] | np.ndarray, denominators: Sequence[float] | np.ndarray) -> float:
    """Standard error of a ratio of sums ``R = sum(a) / sum(b)`` over n items that each contribute a_i hits out of
    b_i trials (e.g. the size words of one caption): items are the independent draws, not the trials inside one,
    so the delta-method (linearisation) estimate ``sqrt(sum((a_i - R b_i)^2)) / sum(b)`` is used (population form,
    matching ``mean_standard_error`` when every b_i is 1). As a fraction of 1 like R."""
    a, b = np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"expected two non-empty 1-D arrays of the same length, got shapes {a.shape} and {b.shape}")
    if b.sum() <= 0:
        raise ValueError("a ratio's standard error needs at least one trial (sum of denominators > 0)")
    ratio = a.sum() / b.sum()
    return float(np.sqrt(((a - ratio * b) ** 2).sum()) / b.sum())
