"""Blind baselines on tiny hand-made inputs."""

from __future__ import annotations

from math import comb

import pytest

from dlip.eval.baselines import most_frequent_caption, question_only_prior, random_retrieval, random_retrieval_expected
from dlip.eval.metrics import caption_scores, vqa_accuracy


def _split(n_img: int, per_img: int):
    img2txt = {i: list(range(i * per_img, (i + 1) * per_img)) for i in range(n_img)}
    txt2img = {t: i for i, ts in img2txt.items() for t in ts}
    return img2txt, txt2img


def test_random_retrieval_analytic_by_hand():
    img2txt, _ = _split(n_img=20, per_img=5)  # 100 texts
    got = random_retrieval_expected(img2txt, n_txt=100)
    assert got["txt_r1"] == pytest.approx(100 * 5 / 100)
    assert got["txt_r5"] == pytest.approx(100 * (1 - comb(95, 5) / comb(100, 5)))
    assert got["txt_r10"] == pytest.approx(100 * (1 - comb(95, 10) / comb(100, 10)))
    assert (got["img_r1"], got["img_r5"], got["img_r10"]) == pytest.approx((5.0, 25.0, 50.0))
    assert got["r_mean"] == pytest.approx((got["txt_r_mean"] + got["img_r_mean"]) / 2)


def test_random_retrieval_simulation_agrees_with_analytic():
    img2txt, txt2img = _split(n_img=20, per_img=5)
    got = random_retrieval(img2txt, txt2img, seed=0, trials=300)
    assert got["analytic"] == random_retrieval_expected(img2txt, 100)
    for key, expected in got["analytic"].items():
        # 300 trials of 20 images (or 100 texts): the standard error of a recall is at most ~0.7 points.
        assert got["simulated"][key] == pytest.approx(expected, abs=2.5), key
    again = random_retrieval(img2txt, txt2img, seed=0, trials=300)
    assert again["simulated"] == got["simulated"]


def test_most_frequent_caption():
    train = ["A dog runs.", "a cat sleeps", "a dog runs", "a bird flies", "a cat sleeps", "A dog runs!"]
    refs = {1: ["a dog runs on grass", "a running dog"], 2: ["a cat on a bed"], 3: ["a bird in the sky"]}
    caption, scores = most_frequent_caption(train, refs)
    assert caption == "a dog runs"  # 3 votes after tokenisation against 2 for "a cat sleeps"
    assert scores == caption_scores({k: "a dog runs" for k in refs}, refs)
    assert 0 < scores["bleu_1"] < 1
    with pytest.raises(ValueError, match="no non-empty training caption"):
        most_frequent_caption(["...", ""], refs)


def test_question_only_prior_fallbacks():
    train = [
        ("What color is the cat?", ["black"] * 6 + ["white"] * 4),
        ("what color is the dog", ["brown"] * 10),
        ("Is it raining?", ["no"] * 7 + ["yes"] * 3),
        ("is there a cat?", ["yes"] * 10),
    ]
    test = [
        ("what color is the  cat ?", ["black"] * 3 + ["grey"] * 7),  # same question -> "black" (0.9)
        ("What color is the car?", ["brown"] * 10),  # type "what color is": brown 10 > black 6 -> "brown" (1.0)
        ("How many dogs?", ["2"] * 10),  # unseen type -> global "yes" (13) -> 0.0
        ("Is it raining?", ["yes"] * 2 + ["no"] * 8),  # -> "no" (1.0)
    ]
    acc, preds = question_only_prior(train, test)
    assert preds == ["black", "brown", "yes", "no"]
    assert acc == pytest.approx(100 * (0.9 + 1.0 + 0.0 + 1.0) / 4)
    assert acc == pytest.approx(100 * sum(vqa_accuracy(p, a) for p, (_, a) in zip(preds, test)) / 4)


def test_question_only_prior_normalises_training_answers():
    train = [("how many cats", ["two", "2", "Two", "3"])]
    acc, preds = question_only_prior(train, [("How many cats?", ["2"] * 10)])
    assert preds == ["2"] and acc == 100.0
    with pytest.raises(ValueError, match="need training and test"):
        question_only_prior([], [("q", ["a"])])
