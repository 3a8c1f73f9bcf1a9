"""Reading a Shapes caption back with the data card's grammar: the noun phrases it states and whether it is a whole
sentence of the grammar, a sentence cut off mid-phrase, or neither. Pure functions; no I/O.

The grammar is the one ``shapes_text.captions`` writes (captions pass through BLIP's ``pre_caption`` before
training, so ``:`` is gone from what a model learns and says; commas stay). Tokens are words and commas:

    caption      := enumeration | count-prefix enumeration | located-list | relation | order | count-np
    enumeration  := ["there is" | "there are" | "a drawing of" | "an image of"] list(object-np)
    count-prefix := "an object" | NUMBER "objects"                                   ("three objects: ...")
    located-list := list(one-np region-phrase)                    ("a red circle in the center and ...")
    relation     := one-np relation-phrase one-np                 ("a red circle to the left of a blue star")
    order        := ("from left to right" | "from top to bottom") list(one-np)
    count-np     := NUMBER [colour] (shape | "object") "s"        ("two yellow stars", "two stars", "two red objects")
    list(x)      := x | x ("," x)* "and" x
    object-np    := one-np | NUMBER [size] colour shape "s"       ("two small red circles")
    one-np       := ("a" | "an") [size] colour shape
    NUMBER       := "two" | "three" | "four"

with the region phrases of ``shapes_text.REGION_PHRASES`` and the relation phrases of ``RELATION_PHRASES``. Articles
("a" / "an"), "there is" / "there are" are not checked for agreement with the next word; a number word does need a
plural noun and an article a singular one, since that is what states a count.

What a caption states is read by ``noun_phrases``, a scan for "determiner [size] [colour] noun" anywhere in the
text, so a cut-off or ungrammatical caption is still read for the objects it names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from .annotations import pre_caption
from .shapes_scene import COLORS, SHAPES, SIZES
from .shapes_text import REGION_PHRASES, RELATION_PHRASES

NUMBER_WORDS = {"two": 2, "three": 3, "four": 4}  # the count words a caption uses (one object takes "a" / "an")
ARTICLES = ("a", "an")
OBJECT_NOUN = "object"  # the noun of a phrase that names no shape ("two red objects", "three objects")
STATUSES = ("complete", "truncated", "ungrammatical")
_ENUMERATION_LEADS = (("there", "is"), ("there", "are"), ("a", "drawing", "of"), ("an", "image", "of"))
_ORDER_LEADS = (("from", "left", "to", "right"), ("from", "top", "to", "bottom"))
_REGION_WORDS = tuple(tuple(p.split()) for p in REGION_PHRASES.values())
_RELATION_WORDS = tuple(tuple(p.split()) for p in RELATION_PHRASES.values())
_TOKEN = re.compile(r"[^\s,]+|,")


@dataclass(frozen=True)
class NounPhrase:
    """One "determiner [size] [colour] noun" of a caption: "two small red circles" -> (2, small, red, circle)."""

    count: int  # 1 for "a" / "an", else the number word's value
    size: str | None  # "small" | "large" | None (no size word)
    color: str | None  # a colour name, or None
    shape: str | None  # a shape name, or None for "object(s)"

    @property
    def states_count(self) -> bool:
        """Whether the phrase states an exact number of objects: a number word ("two yellow stars": exactly two,
        by the data card), or the count prefix "an object" (the scene holds exactly one object)."""
        return self.count > 1 or (self.size is None and self.color is None and self.shape is None)


@dataclass(frozen=True)
class ParsedCaption:
    text: str
    tokens: tuple[str, ...]
    phrases: tuple[NounPhrase, ...]  # every noun phrase found, in order
    status: str  # "complete": a sentence of the grammar; "truncated": a proper prefix of one (ends mid-phrase);
    # "ungrammatical": neither


def tokenize(caption: str) -> tuple[str, ...]:
    """BLIP's ``pre_caption`` (lowercase; ``. ! " ( ) * # : ; ~`` dropped), then words and commas as tokens."""
    return tuple(_TOKEN.findall(pre_caption(caption, max_words=10_000)))


def parse_caption(caption: str) -> ParsedCaption:
    """The noun phrases of ``caption`` and its status under the grammar of the module docstring."""
    tokens = tokenize(caption)
    return ParsedCaption(caption, tokens, noun_phrases(tokens), grammar_status(tokens))


def noun_phrases(tokens: tuple[str, ...]) -> tuple[NounPhrase, ...]:
    """Every "determiner [size] [colour] noun" in ``tokens``, left to right, not overlapping (an empty caption, or
    one cut off inside its last phrase, gives only the complete phrases)."""
    out: list[NounPhrase] = []
    pos = 0
    while pos < len(tokens):
        found = next(_Reader(tokens).noun_phrase(pos, counts=(1, 2, 3, 4), size=True, color=None, noun=None), None)
        if found is None:
            pos += 1
        else:
            pos, phrase = found
            out.append(phrase)
    return tuple(out)


def grammar_status(tokens: tuple[str, ...]) -> str:
    """"complete", "truncated" or "ungrammatical" (``ParsedCaption.status``). Every rule of the grammar can be
    finished, so a branch of the parse that matched every token and wanted one more proves a proper prefix."""
    reader = _Reader(tokens)
    if any(end == len(tokens) for end in reader.caption(0)):
        return "complete"
    return "truncated" if reader.wanted_more else "ungrammatical"


class _Reader:
    """A backtracking recursive-descent reader over the tokens: each rule yields every position where it can end.
    ``wanted_more`` records whether some branch consumed every token and asked for another."""

    def __init__(self, tokens: tuple[str, ...]):
        self.tokens = tokens
        self.wanted_more = False

    def token(self, pos: int) -> str | None:
        if pos >= len(self.tokens):
            self.wanted_more = True
            return None
        return self.tokens[pos]

    def words(self, pos: int, words: tuple[str, ...]) -> Iterator[int]:
        for k, word in enumerate(words):
            if self.token(pos + k) != word:
                return
        yield pos + len(words)

    def any_of(self, pos: int, phrases: tuple[tuple[str, ...], ...]) -> Iterator[int]:
        for phrase in phrases:
            yield from self.words(pos, phrase)

    def caption(self, pos: int) -> Iterator[int]:
        yield from self.enumeration(pos)
        for end in self.count_prefix(pos):
            yield from self.enumeration(end, leads=False)
        yield from self.list_of(pos, self.located)
        for end in self.one_np(pos):
            for end2 in self.any_of(end, _RELATION_WORDS):
                yield from self.one_np(end2)
        for end in self.any_of(pos, _ORDER_LEADS):
            yield from self.list_of(end, self.one_np)
        for end, phrase in self.noun_phrase(pos, counts=(2, 3, 4), size=False, color=None, noun=None):
            if phrase.color is not None or phrase.shape is not None:  # "three objects" alone is a cut-off prefix
                yield end

    def enumeration(self, pos: int, leads: bool = True) -> Iterator[int]:
        starts = [pos, *self.any_of(pos, _ENUMERATION_LEADS)] if leads else [pos]
        for start in starts:
            yield from self.list_of(start, self.object_np)

    def count_prefix(self, pos: int) -> Iterator[int]:
        for end, _ in self.noun_phrase(pos, counts=(1, 2, 3, 4), size=False, color=False, noun=False):
            yield end

    def located(self, pos: int) -> Iterator[int]:
        for end in self.one_np(pos):
            yield from self.any_of(end, _REGION_WORDS)

    def object_np(self, pos: int) -> Iterator[int]:
        for end, _ in self.noun_phrase(pos, counts=(1, 2, 3, 4), size=True, color=True, noun=True):
            yield end

    def one_np(self, pos: int) -> Iterator[int]:
        for end, _ in self.noun_phrase(pos, counts=(1,), size=True, color=True, noun=True):
            yield end

    def list_of(self, pos: int, item) -> Iterator[int]:
        """x | x ("," x)* "and" x"""
        for end in item(pos):
            yield end
            yield from self._list_tail(end, item)

    def _list_tail(self, pos: int, item) -> Iterator[int]:
        word = self.token(pos)
        if word == "and":
            yield from item(pos + 1)
        elif word == ",":
            for end in item(pos + 1):
                yield from self._list_tail(end, item)

    def noun_phrase(self, pos: int, counts: tuple[int, ...], size: bool, color: bool | None,
                    noun: bool | None) -> Iterator[tuple[int, NounPhrase]]:
        """determiner [size] [colour] noun, where ``size``: a size word may come; ``color``: True = required,
        False = not allowed, None = optional; ``noun``: True = a shape, False = "object", None = either."""
        det = self.token(pos)
        count = 1 if det in ARTICLES else NUMBER_WORDS.get(det or "")
        if count not in counts:
            return
        for size_end, size_word in self._optional(pos + 1, tuple(SIZES) if size else ()):
            colours = tuple(COLORS) if color is not False else ()
            for color_end, color_word in self._optional(size_end, colours, required=color is True):
                head = self.token(color_end)
                if head is None:
                    continue
                stem = head if count == 1 else head[:-1] if head.endswith("s") else None
                is_shape, is_object = stem in SHAPES, stem == OBJECT_NOUN
                if (is_shape and noun is not False) or (is_object and noun is not True):
                    yield color_end + 1, NounPhrase(count, size_word, color_word, stem if is_shape else None)

    def _optional(self, pos: int, options: tuple[str, ...], required: bool = False) -> Iterator[tuple[int, str | None]]:
        """The word at ``pos`` if it is one of ``options`` (longest first), then, unless ``required``, nothing."""
        if options and self.token(pos) in options:
            yield pos + 1, self.tokens[pos]
        if not required:
            yield pos, None
