"""Metrics against brute-force or hand-computed references (retrieval, VQA, captioning) and FLOP counting."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from dlip.eval.flops import OUTSIDE_CHILDREN, count_flops, flops_by_module
from dlip.model.params import count_params
from dlip.eval.metrics import (
    caption_scores,
    normalize_vqa_answer,
    ptb_like_tokenize,
    retrieval_metrics,
    vqa_accuracy,
    vqa_accuracy_by_type,
    vqa_accuracy_by_type_standard_error,
    vqa_accuracy_mean,
)

# ---------------------------------------------------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------------------------------------------------


def _split(n_img: int, per_img: int, seed: int):
    """img2txt / txt2img with ``per_img`` texts per image, in shuffled text order."""
    perm = np.random.default_rng(seed).permutation(n_img * per_img)
    img2txt = {i: [int(t) for t in perm[i * per_img : (i + 1) * per_img]] for i in range(n_img)}
    txt2img = {t: i for i, ts in img2txt.items() for t in ts}
    return img2txt, txt2img


def _brute_force_recalls(s_i2t, s_t2i, img2txt, txt2img):
    """Loop-per-row reimplementation: rank = position in a stable argsort of -score."""
    def recalls(ranks, prefix):
        out = {f"{prefix}_r{k}": 100.0 * sum(r < k for r in ranks) / len(ranks) for k in (1, 5, 10)}
        out[f"{prefix}_r_mean"] = (out[f"{prefix}_r1"] + out[f"{prefix}_r5"] + out[f"{prefix}_r10"]) / 3
        return out

    txt_ranks = []
    for i, row in enumerate(s_i2t):
        order = list(np.argsort(-row, kind="stable"))
        txt_ranks.append(min(order.index(t) for t in img2txt[i]))
    img_ranks = []
    for t, row in enumerate(s_t2i):
        order = list(np.argsort(-row, kind="stable"))
        img_ranks.append(order.index(txt2img[t]))
    out = {**recalls(txt_ranks, "txt"), **recalls(img_ranks, "img")}
    out["r_mean"] = (out["txt_r_mean"] + out["img_r_mean"]) / 2
    return out


def _blip_itm_eval(scores_i2t, scores_t2i, txt2img, img2txt):
    """BLIP's train_retrieval.itm_eval, verbatim apart from formatting (valid for tie-free scores)."""
    ranks = np.zeros(scores_i2t.shape[0])
    for index, score in enumerate(scores_i2t):
        inds = np.argsort(score)[::-1]
        rank = 1e20
        for i in img2txt[index]:
            tmp = np.where(inds == i)[0][0]
            if tmp < rank:
                rank = tmp
        ranks[index] = rank
    tr = [100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)]
    ranks = np.zeros(scores_t2i.shape[0])
    for index, score in enumerate(scores_t2i):
        inds = np.argsort(score)[::-1]
        ranks[index] = np.where(inds == txt2img[index])[0][0]
    ir = [100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)]
    return tr, ir


@pytest.mark.parametrize("integer_scores", [False, True])
def test_retrieval_matches_brute_force(integer_scores):
    rng = np.random.default_rng(1)
    img2txt, txt2img = _split(n_img=40, per_img=5, seed=2)
    shape = (40, 200)
    # Integer scores in a small range force many ties, exercising the stable tie rule.
    s_i2t = rng.integers(0, 6, shape).astype(np.float64) if integer_scores else rng.normal(size=shape)
    s_t2i = rng.integers(0, 6, shape[::-1]).astype(np.float64) if integer_scores else rng.normal(size=shape[::-1])
    # Make some images and texts easy so the recalls are not all near zero.
    for i in range(0, 40, 3):
        s_i2t[i, img2txt[i][1]] += 4.0
    for t in range(0, 200, 2):
        s_t2i[t, txt2img[t]] += 3.0
    got = retrieval_metrics(s_i2t, s_t2i, img2txt, txt2img)
    want = _brute_force_recalls(s_i2t, s_t2i, img2txt, txt2img)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    assert 0 < got["txt_r1"] < 100 and 0 < got["img_r1"] < 100


def test_retrieval_matches_blip_itm_eval_without_ties():
    rng = np.random.default_rng(3)
    img2txt, txt2img = _split(n_img=30, per_img=5, seed=4)
    s_i2t = rng.normal(size=(30, 150))
    s_t2i = s_i2t.T + 0.5 * rng.normal(size=(150, 30))
    for i in range(30):
        s_i2t[i, img2txt[i][0]] += 2.5
    got = retrieval_metrics(s_i2t, s_t2i, img2txt, txt2img)
    tr, ir = _blip_itm_eval(s_i2t, s_t2i, txt2img, img2txt)
    assert [got["txt_r1"], got["txt_r5"], got["txt_r10"]] == pytest.approx(tr)
    assert [got["img_r1"], got["img_r5"], got["img_r10"]] == pytest.approx(ir)


def test_retrieval_hand_computed():
    # 2 images, 4 texts: texts 0, 1 belong to image 0; texts 2, 3 to image 1.
    s_i2t = np.array([[0.1, 0.9, 0.5, 0.2],  # image 0: best gt (text 1) at rank 0
                      [0.8, 0.7, 0.1, 0.6]])  # image 1: text 3 at rank 2, text 2 at rank 3 -> rank 2
    s_t2i = np.array([[0.2, 0.3], [0.9, 0.1], [0.6, 0.6], [0.4, 0.5]])  # text 2 ties: stable puts image 0 first
    got = retrieval_metrics(s_i2t, s_t2i, {0: [0, 1], 1: [2, 3]}, [0, 0, 1, 1])
    # text ranks: image 0 -> 0, image 1 -> 2; image ranks: text 0 -> 1, 1 -> 0, 2 -> 1 (tie), 3 -> 0
    assert got["txt_r1"] == 50.0 and got["txt_r5"] == 100.0 and got["txt_r10"] == 100.0
    assert got["img_r1"] == 50.0 and got["img_r5"] == 100.0
    assert got["txt_r_mean"] == pytest.approx(250 / 3) and got["img_r_mean"] == pytest.approx(250 / 3)
    assert got["r_mean"] == pytest.approx(250 / 3)


def test_retrieval_rejects_bad_input():
    s = np.zeros((2, 4))
    with pytest.raises(ValueError, match="score_t2i"):
        retrieval_metrics(s, s, {0: [0], 1: [1]}, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="image 1"):
        retrieval_metrics(s, s.T, {0: [0, 1, 2, 3]}, [0, 0, 0, 0])
    with pytest.raises(ValueError, match="outside"):
        retrieval_metrics(s, s.T, {0: [0, 9], 1: [1]}, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.full((2, 4), np.nan), s.T, {0: [0], 1: [1]}, [0, 1, 0, 1])


# ---------------------------------------------------------------------------------------------------------------------
# VQA
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("Two", "2"), ("a dog", "dog"), ("The Dog.", "dog"), ("yes!", "yes"), ("dont", "don't"), ("3.5", "3.5"),
     ("1,000", "1000"), ("red,white", "red white"), ("t-shirt", "t shirt"), ("  none\n", "0"), ("an apple", "apple")],
)
def test_normalize_vqa_answer(raw, normalized):
    assert normalize_vqa_answer(raw) == normalized


@pytest.mark.parametrize(("n_match", "acc"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_vqa_accuracy_leave_one_out(n_match, acc):
    # By hand: the m matching annotators each leave m-1 matches, the 10-m others leave m; average min(x/3, 1).
    gts = ["cat"] * n_match + ["dog"] * (10 - n_match)
    assert vqa_accuracy("cat", gts) == pytest.approx(acc)


def test_vqa_accuracy_normalises_both_sides():
    assert vqa_accuracy("two", ["2"] * 10) == pytest.approx(1.0)
    assert vqa_accuracy("2", ["two"] * 10) == pytest.approx(1.0)
    assert vqa_accuracy("a dog", ["dog", "dog", "Dog."] + ["cat"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("dogs", ["dog"] * 10) == 0.0


def test_vqa_accuracy_other_answer_counts():
    assert vqa_accuracy("yes", ["yes"]) == pytest.approx(1 / 3)
    assert vqa_accuracy("yes", ["yes", "yes", "no"]) == pytest.approx(2 / 3)
    assert vqa_accuracy("yes", ["yes"] * 3 + ["no"] * 2) == 1.0
    with pytest.raises(ValueError, match="no ground-truth"):
        vqa_accuracy("yes", [])


def test_vqa_accuracy_mean_and_by_type():
    preds = ["yes", "2", "red"]
    gts = [["yes"] * 10, ["2"] * 2 + ["3"] * 8, ["blue"] * 10]
    assert vqa_accuracy_mean(preds, gts) == pytest.approx(100 * (1.0 + 0.6 + 0.0) / 3)
    by_type = vqa_accuracy_by_type(preds, gts, ["yes/no", "number", "number"])
    assert by_type == pytest.approx({"yes/no": 100.0, "number": 30.0})
    # per-question scores: yes/no (1.0), number (0.6, 0.0): std / sqrt(n) = 0 and 0.3 / sqrt(2)
    se = vqa_accuracy_by_type_standard_error(preds, gts, ["yes/no", "number", "number"])
    assert se == pytest.approx({"yes/no": 0.0, "number": 100 * 0.3 / 2**0.5})
    with pytest.raises(ValueError, match="length mismatch"):
        vqa_accuracy_mean(preds, gts[:2])


# ---------------------------------------------------------------------------------------------------------------------
# Captioning
# ---------------------------------------------------------------------------------------------------------------------


def _ngrams(words, n):
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _brute_force_bleu(preds, refs, max_n=4):
    """Corpus BLEU with pycocoevalcap's choices: clipped counts summed over the corpus, per-sentence "closest"
    reference length (ties -> the shorter), brevity penalty on the sums; BLEU-n = (p1 ... pn)^(1/n) * BP, where
    p_n = (correct + 1e-15) / (guessed + 1e-9) so that a zero count gives a tiny non-zero score, as pycocoevalcap."""
    correct, guess = [0] * max_n, [0] * max_n
    c_len = r_len = 0
    for key, pred in preds.items():
        hyp = pred.split()
        ref_words = [r.split() for r in refs[key]]
        c_len += len(hyp)
        r_len += min((abs(len(r) - len(hyp)), len(r)) for r in ref_words)[1]
        for n in range(1, max_n + 1):
            max_ref = Counter()
            for r in ref_words:
                max_ref |= _ngrams(r, n)
            hyp_counts = _ngrams(hyp, n)
            correct[n - 1] += sum(min(c, max_ref[g]) for g, c in hyp_counts.items())
            guess[n - 1] += max(len(hyp) - n + 1, 0)
    ratio = (c_len + 1e-15) / (r_len + 1e-9)
    bp = 1.0 if ratio >= 1 else math.exp(1 - 1 / ratio)
    precisions = [(c + 1e-15) / (g + 1e-9) for c, g in zip(correct, guess)]
    return [math.prod(precisions[:n]) ** (1 / n) * bp for n in range(1, max_n + 1)]


REFS = {
    1: ["a dog runs on the grass", "a brown dog running in a field", "the dog is running"],
    2: ["two cats sleep on a red sofa", "cats sleeping on a couch"],
    3: ["a man rides a bike down the street", "a person riding a bicycle on a road", "a cyclist on a city street"],
    4: ["a plate of food with rice and beans", "rice and beans on a white plate"],
}


def test_bleu_matches_brute_force():
    preds = {1: "a brown dog running in a field on the grass", 2: "two cats on a sofa sofa", 3: "a man riding a bike",
             4: "a plate with rice"}
    got = caption_scores(preds, REFS)
    want = _brute_force_bleu(preds, REFS)
    assert [got[f"bleu_{n}"] for n in (1, 2, 3, 4)] == pytest.approx(want, rel=1e-6)
    assert 0.1 < got["bleu_4"] < got["bleu_1"] < 1  # real 4-gram matches, not just smoothing


def test_bleu_brevity_penalty_matches_brute_force():
    preds = {1: "a dog", 2: "cats on a couch", 3: "a man", 4: "rice and beans"}  # all shorter than every reference
    got = caption_scores(preds, REFS)
    assert [got[f"bleu_{n}"] for n in (1, 2, 3, 4)] == pytest.approx(_brute_force_bleu(preds, REFS), rel=1e-6)
    assert got["bleu_1"] == pytest.approx(math.exp(1 - 22 / 11), rel=1e-6)  # all unigrams match; c=11, r=4+5+6+7


def test_identical_captions_score_one_and_disjoint_zero():
    same = caption_scores({k: v[0] for k, v in REFS.items()}, REFS)
    for n in (1, 2, 3, 4):
        assert same[f"bleu_{n}"] == pytest.approx(1.0, abs=1e-6)
    assert same["cider"] > 1.0
    disjoint = caption_scores({k: "xyzzy plugh quux frob" for k in REFS}, REFS)
    for key in ("bleu_1", "bleu_4", "cider"):
        assert disjoint[key] == pytest.approx(0.0, abs=1e-6)


def test_caption_scores_ignore_case_and_punctuation():
    noisy = {k: [r.capitalize() + "." for r in v] for k, v in REFS.items()}
    preds = {1: "A dog runs, on the grass!", 2: "Two cats sleep on a sofa.", 3: "A man rides a bike.", 4: "Rice."}
    clean_preds = {k: ptb_like_tokenize(v) for k, v in preds.items()}
    assert caption_scores(preds, noisy) == pytest.approx(caption_scores(clean_preds, REFS))


def test_cider_one_image_corpus_is_zero():
    refs = {7: REFS[1]}
    assert caption_scores({7: REFS[1][0]}, refs)["cider"] == 0.0  # log(1 image) - log(df=1) = 0 for every n-gram


def test_ptb_like_tokenize():
    assert ptb_like_tokenize("A dog's toy, on the (red) table.") == "a dog 's toy on the red table"
    assert ptb_like_tokenize("Don't go -- now!") == "do n't go now"
    assert ptb_like_tokenize('a t-shirt costs 3.5 "dollars"') == "a t-shirt costs 3.5 dollars"


def test_caption_scores_rejects_mismatched_ids():
    with pytest.raises(ValueError, match="no prediction for"):
        caption_scores({1: "a dog"}, REFS)
    with pytest.raises(ValueError, match="no non-empty reference"):
        caption_scores({1: "a dog"}, {1: ["..."]})


# ---------------------------------------------------------------------------------------------------------------------
# FLOPs and parameters
# ---------------------------------------------------------------------------------------------------------------------


def test_linear_flops_and_params():
    layer = nn.Linear(8, 16)
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert count_flops(layer, x) == 2 * 4 * 8 * 16
    assert count_params(layer) == 8 * 16 + 16
    layer.bias.requires_grad_(False)
    assert count_params(layer, trainable_only=True) == 8 * 16


def test_attention_matmul_flops():
    b, h, t, d = 2, 3, 5, 4
    q, k, v = torch.randn(b, h, t, d), torch.randn(b, h, t, d), torch.randn(b, h, t, d)

    def attention():
        probs = (q @ k.transpose(-2, -1) / d**0.5).softmax(-1)  # (B, H, T, T)
        return probs @ v  # (B, H, T, d)

    # QK^T: 2*B*H*T*T*d; probs @ V: the same; softmax and scaling are not counted.
    assert count_flops(attention) == 2 * (2 * b * h * t * t * d)


class _TwoTower(nn.Module):
    def __init__(self):
        super().__init__()
        self.image = nn.Linear(6, 4)
        self.text = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4))

    def forward(self, x, y):
        return self.image(x) @ self.text(y).T  # (B, B): root-level matmul


def test_flops_by_module_splits_children():
    model = _TwoTower()
    x, y = torch.randn(5, 6), torch.randn(5, 3)
    with torch.no_grad():
        split = flops_by_module(model, model, x, y)
        total = count_flops(model, x, y)
    assert split == {"image": 2 * 5 * 6 * 4, "text": 2 * 5 * 3 * 4 + 2 * 5 * 4 * 4, OUTSIDE_CHILDREN: 2 * 5 * 4 * 5}
    assert sum(split.values()) == total
    # Calling a child directly still attributes it by attribute name; hooks are removed afterwards.
    assert flops_by_module(model, model.text, y) == {"image": 0, "text": 2 * 5 * 3 * 4 + 2 * 5 * 4 * 4,
                                                     OUTSIDE_CHILDREN: 0}
    assert not model.text._forward_hooks and not model.text._forward_pre_hooks
