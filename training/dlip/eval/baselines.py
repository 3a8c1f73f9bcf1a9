"""Blind baselines: what each benchmark scores without looking at the image (or at anything).

They bound from below what a trained model must beat on the same test split: random scores for retrieval, the single
most frequent training caption for captioning, and a question-only answer prior for VQA.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from dlip.eval.metrics import (
    RECALL_KS,
    caption_scores,
    normalize_vqa_answer,
    ptb_like_tokenize,
    retrieval_metrics,
    vqa_accuracy_mean,
)


def _add_means(recalls: dict[str, float]) -> dict[str, float]:
    for prefix in ("txt", "img"):
        recalls[f"{prefix}_r_mean"] = sum(recalls[f"{prefix}_r{k}"] for k in RECALL_KS) / len(RECALL_KS)
    recalls["r_mean"] = (recalls["txt_r_mean"] + recalls["img_r_mean"]) / 2
    return recalls


def _p_hit_in_top_k(n: int, n_gt: int, k: int) -> float:
    """P(at least one of ``n_gt`` ground-truth items lands in the top ``k`` of a uniformly random order of ``n``).

    = 1 - C(n - n_gt, k) / C(n, k), the complement written as a product to stay in floating point.
    """
    miss = 1.0
    for i in range(min(k, n)):
        miss *= max(n - n_gt - i, 0) / (n - i)
    return 1.0 - miss


def random_retrieval_expected(
    img2txt: Mapping[int, Sequence[int]] | Sequence[Sequence[int]], n_txt: int
) -> dict[str, float]:
    """Analytic expectation of ``retrieval_metrics`` under i.i.d. continuous random scores, in percent.

    TR@K averages 1 - C(N_txt - k_i, K) / C(N_txt, K) over images with k_i ground-truth texts (~ K * k_i / N_txt,
    e.g. TR@1 = 5 / 25000 = 0.02% on COCO 5k); each text has one image, so IR@K = min(K, N_img) / N_img.
    """
    n_img = len(img2txt)
    if n_img == 0 or n_txt == 0:
        raise ValueError(f"empty retrieval split: {n_img} images, {n_txt} texts")
    out = {f"txt_r{k}": 100.0 * sum(_p_hit_in_top_k(n_txt, len(img2txt[i]), k) for i in range(n_img)) / n_img
           for k in RECALL_KS}
    out.update({f"img_r{k}": 100.0 * min(k, n_img) / n_img for k in RECALL_KS})
    return _add_means(out)


def random_retrieval(
    img2txt: Mapping[int, Sequence[int]] | Sequence[Sequence[int]],
    txt2img: Mapping[int, int] | Sequence[int],
    seed: int = 0,
    trials: int = 3,
) -> dict[str, dict[str, float]]:
    """Retrieval recalls of random scores: ``{"analytic": ..., "simulated": ...}``, both in percent.

    ``simulated`` averages ``retrieval_metrics`` over ``trials`` random (N_img, N_txt) similarity matrices drawn with
    ``np.random.default_rng(seed)`` (float32 uniforms, ~1 GB for COCO 5k; the text->image scores are the transpose,
    as with a real ITC matrix). ``analytic`` is ``random_retrieval_expected``; the two agree up to sampling noise.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    n_img, n_txt = len(img2txt), len(txt2img)
    rng = np.random.default_rng(seed)
    runs = []
    for _ in tqdm(range(trials), desc="random retrieval", disable=trials * n_img * n_txt < 10**8):
        scores = rng.random((n_img, n_txt), dtype=np.float32)  # (N_img, N_txt)
        runs.append(retrieval_metrics(scores, scores.T, img2txt, txt2img))
    simulated = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    return {"analytic": random_retrieval_expected(img2txt, n_txt), "simulated": simulated}


def most_frequent_caption(
    train_captions: Sequence[str], test_refs: Mapping[Hashable, Sequence[str]]
) -> tuple[str, dict[str, float]]:
    """Predicts the most frequent training caption for every test image; returns it and its ``caption_scores``.

    Captions are counted after ``ptb_like_tokenize`` (so "A dog." and "a dog" are one caption) and the tokenised form
    is returned; ties go to the caption seen first.
    """
    counts = Counter(tok for tok in map(ptb_like_tokenize, train_captions) if tok)
    if not counts:
        raise ValueError(f"no non-empty training caption among {len(train_captions)}")
    caption = counts.most_common(1)[0][0]
    return caption, caption_scores({key: caption for key in test_refs}, test_refs)


def _question_key(question: str) -> str:
    """Lower-cased question without its final '?' and with single spaces: "What is it ?" -> "what is it"."""
    return " ".join(question.lower().strip().rstrip("?").split())


def _question_type(question: str) -> str:
    """The question's first three words, a stand-in for VQAv2's question types ("what color is", "how many people")."""
    return " ".join(_question_key(question).split()[:3])


def _answer_counts(items: Sequence[tuple[str, Sequence[str]]], key) -> dict[str, Counter]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for question, answers in items:
        counts[key(question)].update(a for a in map(normalize_vqa_answer, answers) if a)
    return counts


def question_only_prior(
    train_items: Sequence[tuple[str, Sequence[str]]], test_items: Sequence[tuple[str, Sequence[str]]]
) -> tuple[float, list[str]]:
    """Question-only VQA baseline: returns (VQAv2 accuracy in percent, one predicted answer per test question).

    Each test question gets the most common training answer (all annotators' answers counted, after
    ``normalize_vqa_answer``) among training questions with the same text (case, spacing and the final '?' ignored);
    failing that, among training questions of the same type (first three words); failing that, the most common
    answer overall. Ties go to the answer seen first.
    """
    if not train_items or not test_items:
        raise ValueError(f"need training and test questions, got {len(train_items)} and {len(test_items)}")
    by_question = _answer_counts(train_items, _question_key)
    by_type = _answer_counts(train_items, _question_type)
    overall = Counter(a for _, answers in train_items for a in map(normalize_vqa_answer, answers) if a)
    if not overall:
        raise ValueError("no non-empty training answer")
    preds = []
    for question, _ in test_items:
        counts = by_question.get(_question_key(question)) or by_type.get(_question_type(question)) or overall
        preds.append(counts.most_common(1)[0][0])
    return vqa_accuracy_mean(preds, [answers for _, answers in test_items]), preds
