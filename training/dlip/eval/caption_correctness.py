"""Caption correctness on Shapes: whether a caption names what is in the picture, graded against the scene graph
(``scenes_{split}.jsonl``). Pure functions; the captions are read with the data card's grammar
(``dlip.data.shapes_grammar``).

Per caption, with P the set of (colour, shape) pairs its noun phrases name and S the scene's:

- ``exact_set``: P = S (the issue's headline: the caption names exactly the scene's kinds of object);
- ``exact_objects``: stricter, the caption's multiset of (colour, shape) pairs, each phrase counted by its number
  word ("two red circles" = 2, "a red circle" = 1), equals the scene's multiset;
- ``precision`` = |P & S| / |P| (only over captions that name a pair), ``recall`` = |P & S| / |S|;
- ``all_named_true``: P is not empty and every pair in it is in S;
- ``names_no_pair``: P is empty (e.g. "two stars", or a caption cut off before its first shape);
- size words: a phrase with a size word is *judged* when some scene object has its colour and shape (those it
  gives), and *right* when one of those objects has that size; phrases whose colour and shape match no object are
  the pair measures' error, not a size error;
- count statements (``NounPhrase.states_count``: "two yellow stars", the prefix "three objects" / "an object"):
  right when exactly that many scene objects have the phrase's size, colour and shape (those it gives);
- ``incomplete``: the caption is a proper prefix of a sentence of the grammar (cut off mid-phrase);
  ``ungrammatical``: it is neither a sentence nor a prefix of one.

``caption_correctness`` aggregates over the images in percent, each rate with its standard error over the images
(``sampling_error``): per-image 0/1 rates and the precision and recall means by ``std / sqrt(n)``; the size and
count accuracies, ratios of hits to statements pooled over images, by the delta method over images
(``ratio_standard_error``), since the statements of one caption are not independent draws.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..data.shapes_grammar import NounPhrase, parse_caption
from .sampling_error import mean_standard_error, ratio_standard_error

# the rates of ``caption_correctness`` in table order: (key, what it is)
RATES = (
    ("exact_set", "names exactly the scene's set of (colour, shape) pairs"),
    ("exact_objects", "names exactly the scene's objects, counted"),
    ("precision", "named pairs that are in the scene (mean over captions naming one)"),
    ("recall", "scene pairs the caption names (mean)"),
    ("all_named_true", "names a pair, and only pairs in the scene"),
    ("names_no_pair", "names no (colour, shape) pair"),
    ("size_acc", "size words right (of those judged)"),
    ("count_acc", "count statements right"),
    ("incomplete", "cut off mid-phrase"),
    ("ungrammatical", "not a sentence of the grammar, nor a prefix of one"),
)


class SceneObject(Protocol):
    """What grading reads of a scene object (``shapes_scene.ShapeObject`` has it)."""

    shape: str
    color: str
    size: str


@dataclass(frozen=True)
class CaptionGrade:
    """One caption graded against one scene (module docstring)."""

    named: frozenset[tuple[str, str]]  # P: the (colour, shape) pairs named
    truth: frozenset[tuple[str, str]]  # S: the scene's pairs
    exact_set: bool
    exact_objects: bool
    size_words: int  # noun phrases with a size word
    size_judged: int  # of those, judged
    size_right: int
    counts_stated: int  # count statements
    counts_right: int
    status: str  # shapes_grammar.STATUSES

    @property
    def precision(self) -> float | None:
        return len(self.named & self.truth) / len(self.named) if self.named else None

    @property
    def recall(self) -> float:
        return len(self.named & self.truth) / len(self.truth)


def _matches(obj: SceneObject, phrase: NounPhrase, with_size: bool) -> bool:
    return ((phrase.color is None or obj.color == phrase.color) and (phrase.shape is None or obj.shape == phrase.shape)
            and (not with_size or phrase.size is None or obj.size == phrase.size))


def grade_caption(caption: str, objects: Sequence[SceneObject]) -> CaptionGrade:
    """Grades ``caption`` against a scene's ``objects`` (at least one)."""
    if not objects:
        raise ValueError("grade_caption: a Shapes scene has at least one object, got none")
    parsed = parse_caption(caption)
    pairs = [p for p in parsed.phrases if p.color is not None and p.shape is not None]
    named_counts: Counter[tuple[str, str]] = Counter()
    for p in pairs:
        named_counts[(p.color, p.shape)] += p.count
    true_counts = Counter((o.color, o.shape) for o in objects)
    sized = [p for p in parsed.phrases if p.size is not None]
    judged = [p for p in sized if any(_matches(o, p, with_size=False) for o in objects)]
    counted = [p for p in parsed.phrases if p.states_count]
    return CaptionGrade(
        named=frozenset(named_counts),
        truth=frozenset(true_counts),
        exact_set=set(named_counts) == set(true_counts),
        exact_objects=named_counts == true_counts,
        size_words=len(sized),
        size_judged=len(judged),
        size_right=sum(any(_matches(o, p, with_size=True) for o in objects) for p in judged),
        counts_stated=len(counted),
        counts_right=sum(sum(_matches(o, p, with_size=True) for o in objects) == p.count for p in counted),
        status=parsed.status,
    )


def _rate(values: Sequence[float]) -> tuple[float, float]:
    """The mean of per-caption values (0/1 flags or fractions) in percent, and its standard error."""
    v = np.asarray(values, dtype=np.float64)
    return 100 * float(v.mean()), 100 * mean_standard_error(v)


def caption_correctness(captions: Sequence[str], scenes: Sequence[Sequence[SceneObject]]) -> dict:
    """Every rate of ``RATES`` (percent) over the captions, caption i graded against ``scenes[i]``, with
    ``sampling_error`` (same keys) and the counts behind them under ``counts``. A rate with nothing to average
    (no caption names a pair; no size word judged; no count stated) is None, as is its error."""
    if len(captions) != len(scenes) or not captions:
        raise ValueError(f"caption_correctness: need one scene per caption and at least one, got {len(captions)} "
                         f"captions and {len(scenes)} scenes")
    grades = [grade_caption(c, s) for c, s in zip(captions, scenes)]
    out: dict = {}
    se: dict = {}
    for key, flags in (("exact_set", [g.exact_set for g in grades]),
                       ("exact_objects", [g.exact_objects for g in grades]),
                       ("all_named_true", [bool(g.named) and g.named <= g.truth for g in grades]),
                       ("names_no_pair", [not g.named for g in grades]),
                       ("incomplete", [g.status == "truncated" for g in grades]),
                       ("ungrammatical", [g.status == "ungrammatical" for g in grades])):
        out[key], se[key] = _rate(flags)
    precisions = [g.precision for g in grades if g.precision is not None]
    out["precision"], se["precision"] = _rate(precisions) if precisions else (None, None)
    out["recall"], se["recall"] = _rate([g.recall for g in grades])
    for key, hits, trials in (("size_acc", [g.size_right for g in grades], [g.size_judged for g in grades]),
                              ("count_acc", [g.counts_right for g in grades], [g.counts_stated for g in grades])):
        if sum(trials) == 0:
            out[key] = se[key] = None
        else:
            out[key] = 100 * sum(hits) / sum(trials)
            se[key] = 100 * ratio_standard_error(hits, trials)
    out = {key: out[key] for key, _ in RATES}  # table order
    out["sampling_error"] = {key: se[key] for key, _ in RATES}
    out["counts"] = {
        "captions": len(grades),
        "naming_a_pair": len(precisions),
        "size_words": sum(g.size_words for g in grades),
        "size_words_judged": sum(g.size_judged for g in grades),
        "count_statements": sum(g.counts_stated for g in grades),
    }
    return out
