"""Evaluation metrics as pure functions: retrieval recall@K, VQAv2 accuracy, captioning BLEU / CIDEr.

Each follows the reference implementation the papers report with (BLIP's ``itm_eval``, the official VQA
``vqaEval.py``, pycocoevalcap's ``Bleu(4)`` / ``Cider()``); where we deviate, the docstring says how and why.
Retrieval and VQA return percentages (0-100); captioning returns fractions exactly as pycocoevalcap does (CIDEr on the
~1.0 scale), so callers multiply by 100 for tables. The standard errors over the test items live in
``dlip.eval.sampling_error``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from tqdm import tqdm

from .sampling_error import (
    BLEU_RESAMPLES,
    BLEU_SEED,
    bleu4_bootstrap_standard_error,
    bleu_sentence_stats,
    mean_standard_error,
)

RECALL_KS = (1, 5, 10)

# ---------------------------------------------------------------------------------------------------------------------
# Retrieval (BLIP train_retrieval.py: itm_eval)
# ---------------------------------------------------------------------------------------------------------------------


def _best_ranks(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray, n_rows: int, progress: bool) -> np.ndarray:
    """For each row, the best (lowest) 0-based rank among its ground-truth columns.

    The rank of column ``c`` in row ``r`` is its position in ``np.argsort(-scores[r], kind="stable")``: the number of
    columns scoring strictly higher, plus the columns scoring equally that have a lower index. It is computed by
    counting instead of sorting, chunked so that no temporary exceeds ~16M elements.
    """
    n_cols = scores.shape[1]
    col_index = np.arange(n_cols)
    ranks = np.empty(len(rows), dtype=np.int64)
    chunk = max(1, (1 << 24) // max(n_cols, 1))
    starts = range(0, len(rows), chunk)
    for start in tqdm(starts, desc="ranks", disable=not progress, leave=False):
        r, c = rows[start : start + chunk], cols[start : start + chunk]
        block = scores[r]  # (chunk, n_cols)
        gt = block[np.arange(len(r)), c][:, None]  # (chunk, 1): score of the ground-truth column
        above = (block > gt).sum(axis=1)
        ties_before = ((block == gt) & (col_index[None, :] < c[:, None])).sum(axis=1)
        ranks[start : start + chunk] = above + ties_before
    best = np.full(n_rows, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, rows, ranks)
    assert (best < n_cols).all(), "a row without ground truth slipped through validation"
    return best


def _recalls(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    out = {f"{prefix}_r{k}": 100.0 * float((ranks < k).mean()) for k in RECALL_KS}
    out[f"{prefix}_r_mean"] = sum(out[f"{prefix}_r{k}"] for k in RECALL_KS) / len(RECALL_KS)
    return out


def retrieval_metrics(
    score_i2t: np.ndarray,
    score_t2i: np.ndarray,
    img2txt: Mapping[int, Sequence[int]] | Sequence[Sequence[int]],
    txt2img: Mapping[int, int] | Sequence[int],
    progress: bool = False,
) -> dict[str, float]:
    """Text retrieval (TR@K, image -> text) and image retrieval (IR@K, text -> image) recalls, as in BLIP's itm_eval.

    score_i2t: (N_img, N_txt) similarity of every image to every text; score_t2i: (N_txt, N_img).
    img2txt[i]: indices of the ground-truth texts of image i (an image's rank is the best among them);
    txt2img[t]: the index of text t's image.
    Returns ``txt_r1/5/10``, ``txt_r_mean``, ``img_r1/5/10``, ``img_r_mean`` and ``r_mean``, in percent.

    Ties: ranks come from a *stable* argsort of ``-score``, so among equal scores the lower index ranks first and the
    result is deterministic. (BLIP's ``np.argsort(score)[::-1]`` puts the higher index first and is not stable;
    the two agree whenever the ground-truth scores are not tied.)
    """
    s_i2t = np.asarray(score_i2t)
    s_t2i = np.asarray(score_t2i)
    if s_i2t.ndim != 2 or s_t2i.ndim != 2 or s_t2i.shape != s_i2t.shape[::-1]:
        raise ValueError(
            f"score_i2t {s_i2t.shape} and score_t2i {s_t2i.shape} must be (N_img, N_txt) and (N_txt, N_img)"
        )
    n_img, n_txt = s_i2t.shape
    for name, s in (("score_i2t", s_i2t), ("score_t2i", s_t2i)):
        if np.isnan(s).any():
            raise ValueError(f"{name} contains NaN scores")

    img_rows, txt_cols = [], []
    for i in range(n_img):
        try:
            texts = list(img2txt[i])
        except (KeyError, IndexError):
            texts = []
        if not texts:
            raise ValueError(f"image {i} has no ground-truth text in img2txt")
        bad = [t for t in texts if not 0 <= t < n_txt]
        if bad:
            raise ValueError(f"img2txt[{i}] has text index {bad[0]} outside [0, {n_txt})")
        img_rows += [i] * len(texts)
        txt_cols += texts
    if len(txt2img) != n_txt:
        raise ValueError(f"txt2img has {len(txt2img)} entries, expected one per text ({n_txt})")
    t2i_cols = np.array([txt2img[t] for t in range(n_txt)], dtype=np.int64)
    bad_t = np.flatnonzero((t2i_cols < 0) | (t2i_cols >= n_img))
    if len(bad_t):
        raise ValueError(f"txt2img[{bad_t[0]}] = {t2i_cols[bad_t[0]]} is outside [0, {n_img})")

    txt_ranks = _best_ranks(s_i2t, np.array(img_rows), np.array(txt_cols), n_img, progress)
    img_ranks = _best_ranks(s_t2i, np.arange(n_txt), t2i_cols, n_txt, progress)
    out = {**_recalls(txt_ranks, "txt"), **_recalls(img_ranks, "img")}
    out["r_mean"] = (out["txt_r_mean"] + out["img_r_mean"]) / 2
    return out


# ---------------------------------------------------------------------------------------------------------------------
# VQAv2 accuracy (official vqaEval.py)
# ---------------------------------------------------------------------------------------------------------------------

# Copied from vqaEval.py, quirks included: capitalised keys ("Im", "Ive") never match after lower-casing, and
# "somebody'd" maps to "somebodyd".
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
# vqaEval's "(?!<=\d)" is a look-*ahead* (a typo for a look-behind): any period not followed by a digit is stripped.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def normalize_vqa_answer(answer: str) -> str:
    """Normalises an answer exactly as vqaEval.py does (processPunctuation, then processDigitArticle).

    Punctuation is deleted when it touches a space (or the text holds a digit-comma-digit), else replaced by a space;
    periods not followed by a digit are removed; words are lower-cased, number words up to "ten" become digits
    ("two" -> "2"), articles are dropped ("a dog" -> "dog") and apostrophe-less contractions restored ("dont" ->
    "don't").
    """
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # vqaEval passes re.UNICODE (= 32) as the positional `count`, so at most 32 periods are stripped.
    out = _PERIOD_STRIP.sub("", out, count=int(re.UNICODE))
    words = [_NUMBER_WORDS.get(w, w) for w in out.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def vqa_accuracy(pred: str, gt_answers: Sequence[str]) -> float:
    """VQAv2 accuracy of one prediction, in [0, 1].

    With 10 ground-truth answers (VQAv2), the official rule: the mean over the 10 leave-one-out subsets of
    ``min(#matches among the other 9 / 3, 1)`` (so 1 match -> 0.3, 2 -> 0.6, 3 -> 0.9, 4+ -> 1.0). With any other
    number of answers (e.g. a single answer in other datasets): ``min(#matches / 3, 1)``.

    Both the prediction and every ground-truth answer go through ``normalize_vqa_answer``. The official script
    normalises the ground truth only when the annotators disagree; VQAv2's annotations are already normalised (and
    the normalisation is idempotent on them), so the two agree there.
    """
    if not gt_answers:
        raise ValueError(f"no ground-truth answers for prediction {pred!r}")
    p = normalize_vqa_answer(pred)
    matches = [normalize_vqa_answer(a) == p for a in gt_answers]
    n_match = sum(matches)
    if len(gt_answers) != 10:
        return min(n_match / 3.0, 1.0)
    return sum(min((n_match - m) / 3.0, 1.0) for m in matches) / len(matches)


def _check_lengths(**named: Sequence) -> int:
    lengths = {k: len(v) for k, v in named.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"length mismatch: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("no questions to score")
    return n


def vqa_accuracy_mean(preds: Sequence[str], gts: Sequence[Sequence[str]]) -> float:
    """Mean VQAv2 accuracy over questions, in percent (0-100)."""
    n = _check_lengths(preds=preds, gts=gts)
    return 100.0 * sum(vqa_accuracy(p, g) for p, g in zip(preds, gts)) / n


def vqa_accuracy_standard_error(preds: Sequence[str], gts: Sequence[Sequence[str]]) -> float:
    """Standard error of ``vqa_accuracy_mean``, in percent: ``std(s) / sqrt(n)`` of the n per-question VQA scores s
    (``dlip.eval.sampling_error.mean_standard_error``)."""
    _check_lengths(preds=preds, gts=gts)
    return mean_standard_error([100.0 * vqa_accuracy(p, g) for p, g in zip(preds, gts)])


def vqa_accuracy_by_type(
    preds: Sequence[str], gts: Sequence[Sequence[str]], types: Sequence[Hashable]
) -> dict[Hashable, float]:
    """Mean VQAv2 accuracy per question (or answer) type, in percent, keyed by type in first-seen order."""
    _check_lengths(preds=preds, gts=gts, types=types)
    per_type: dict[Hashable, list[float]] = defaultdict(list)
    for p, g, t in zip(preds, gts, types):
        per_type[t].append(vqa_accuracy(p, g))
    return {t: 100.0 * sum(accs) / len(accs) for t, accs in per_type.items()}


def vqa_accuracy_by_type_standard_error(
    preds: Sequence[str], gts: Sequence[Sequence[str]], types: Sequence[Hashable]
) -> dict[Hashable, float]:
    """The standard error of each type's ``vqa_accuracy_by_type``: ``std / sqrt(n)`` of its per-question scores, in
    percent (as ``vqa_accuracy_standard_error`` for all questions)."""
    _check_lengths(preds=preds, gts=gts, types=types)
    per_type: dict[Hashable, list[float]] = defaultdict(list)
    for p, g, t in zip(preds, gts, types):
        per_type[t].append(vqa_accuracy(p, g))
    return {t: 100.0 * mean_standard_error(accs) for t, accs in per_type.items()}


# ---------------------------------------------------------------------------------------------------------------------
# Captioning (pycocoevalcap Bleu(4) and Cider(), with a Java-free tokenizer)
# ---------------------------------------------------------------------------------------------------------------------

_CLITIC = re.compile(r"(\w)('s|'re|'ve|'ll|'d|'m)\b")
_NT = re.compile(r"(\w)(n't)\b")
# Characters PTBTokenizer always splits into tokens that pycocoevalcap then drops: brackets (-LRB- ...), double
# quotes (`` and ''), and ? ! ; (also inside words).
_ALWAYS_DROPPED = re.compile(r"[\"()\[\]{}?!;]")
_COMMA_NOT_IN_NUMBER = re.compile(r",(?!\d)|(?<!\d),")
_EDGE_PUNCT = ".,:-'`"  # split off a word's ends by PTB, then dropped (interior ones as in "t-shirt" or "3.5" stay)


def ptb_like_tokenize(text: str) -> str:
    """Java-free stand-in for pycocoevalcap's PTBTokenizer + punctuation removal; returns space-joined tokens.

    Lower-cases, drops brackets, quotes, ``? ! ;`` and commas (except inside numbers), splits clitics the way PTB
    does ("dog's" -> "dog 's", "don't" -> "do n't"), and strips ``. , : - ' ``` from word ends. Known differences
    from Stanford's PTBTokenizer, all rare in captions: abbreviations keep no final period ("mr." -> "mr"), "cannot" /
    "gonna" are not split, and characters PTB rewrites (e.g. "&amp;") are left as they are.
    """
    text = text.lower().replace("\n", " ")
    text = _ALWAYS_DROPPED.sub(" ", text)
    text = _COMMA_NOT_IN_NUMBER.sub(" ", text)
    text = _NT.sub(r"\1 \2", text)
    text = _CLITIC.sub(r"\1 \2", text)
    tokens = []
    for tok in text.split():
        if not (tok.startswith("'") and (tok[1:] in {"s", "re", "ve", "ll", "d", "m"})):
            tok = tok.strip(_EDGE_PUNCT)
        if tok:
            tokens.append(tok)
    return " ".join(tokens)


def caption_scores(
    predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]
) -> dict[str, float]:
    """Corpus BLEU-1..4 and CIDEr of ``predictions[id]`` against ``references[id]``, by pycocoevalcap's scorers.

    Returns ``bleu_1`` ... ``bleu_4`` and ``cider`` as fractions, exactly as pycocoevalcap returns them (CIDEr ~1.0
    scale; multiply by 100 for the paper's tables). pycocoevalcap's ``Cider`` is the CIDEr-D variant (clipped
    counts, Gaussian length penalty) that COCO reports. METEOR and SPICE are left out: they need Java. Text is tokenised
    with ``ptb_like_tokenize`` instead of the Java PTBTokenizer.

    BLEU is corpus-level with the "closest" reference length for the brevity penalty. CIDEr's IDF is computed over
    this corpus' references: an n-gram found in every image's references gets weight 0, so on a corpus of one image
    every weight is 0 and CIDEr is 0.0 whatever the prediction; score at least a few hundred images for meaningful
    CIDEr.
    """
    return caption_scores_and_errors(predictions, references, bleu_resamples=0)[0]


def caption_scores_and_errors(
    predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]],
    bleu_resamples: int = BLEU_RESAMPLES, seed: int = BLEU_SEED,
) -> tuple[dict[str, float], dict[str, float]]:
    """``caption_scores`` and the standard errors of its CIDEr and BLEU-4 (fractions, ``dlip.eval.sampling_error``):
    CIDEr's is ``std / sqrt(n)`` of the per-image CIDEr-D scores pycocoevalcap returns (their mean is the corpus
    score); BLEU-4's is the standard deviation over ``bleu_resamples`` bootstrap resamples of the images (seeded by
    ``seed``; ``bleu_resamples=0`` leaves it out)."""
    if set(predictions) != set(references):
        missing = sorted(map(str, set(references) - set(predictions)))[:5]
        extra = sorted(map(str, set(predictions) - set(references)))[:5]
        raise ValueError(f"prediction / reference ids differ: no prediction for {missing}, no references for {extra}")
    if not predictions:
        raise ValueError("no captions to score")
    res, gts = {}, {}
    for key, pred in predictions.items():
        refs = [ptb_like_tokenize(r) for r in references[key]]
        if not any(refs):
            raise ValueError(f"image {key!r} has no non-empty reference caption")
        gts[key] = refs
        res[key] = [ptb_like_tokenize(pred)]
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, per_image = Cider().compute_score(gts, res)
    out = {f"bleu_{n + 1}": float(b) for n, b in enumerate(bleu)}
    out["cider"] = float(cider)
    errors = {"cider": mean_standard_error(per_image)}
    if bleu_resamples:
        errors["bleu_4"] = bleu4_bootstrap_standard_error(bleu_sentence_stats(gts, res), bleu_resamples, seed)
    return out, errors
