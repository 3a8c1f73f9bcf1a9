"""Captions and questions for Shapes scenes: every sentence is true of its scene by the data card's rules.

Captions (5 distinct per image, lowercase, no final period) come from template families; the first always
enumerates every object by colour and shape, the second describes the whole scene again (with sizes, a count prefix
or regions), the rest are drawn from the other families (relations, regions, orders, counts). Count words are exact:
"two yellow stars" means exactly two yellow stars in the scene (with a size word, exactly two of that size).

Questions (lowercase, ending in "?") have short lowercase answers. An object is only named through a description
that matches it alone ("the red circle", "the small star", "the blue object"), and a relation question is only asked
when exactly one object stands in that relation to its unique anchor. Existence answers are yes/no with
probability 1/2 each; count answers are "0"-"4".
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from .shapes_scene import COLORS, RELATIONS, SHAPES, SIZES, Scene, ShapeObject, relation_holds

COUNT_WORDS = ("zero", "one", "two", "three", "four")
QUESTION_TYPES = ("color", "shape", "count", "exist", "size", "region", "relation")
REGION_PHRASES = {
    "top left": "in the top left", "top": "at the top", "top right": "in the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "in the bottom left", "bottom": "at the bottom", "bottom right": "in the bottom right",
}
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
N_CAPTIONS = 5
MIN_QUESTIONS, MAX_QUESTIONS = 4, 6

# Attribute sets that may name an object in a question ("the small red object" = size + color).
_REFERENCE_ATTRS = (
    ("shape",), ("color",), ("size",), ("color", "shape"), ("size", "shape"), ("size", "color"),
    ("size", "color", "shape"),
)
_EXIST_FORMS = (("shape",), ("color",), ("color", "shape"), ("color", "shape"), ("size", "color", "shape"))
_COUNT_FORMS = ((), ("shape",), ("color",), ("color", "shape"), ("size",))  # attributes a count question names
_P_COUNT_PRESENT = 0.6  # a count question asks about a shape/colour present in the scene with this probability
_P_HARD_NEGATIVE = 0.5  # a "no" existence question shares an attribute with a present object with this probability
_REGION_ALL_MAX_OBJECTS = 3  # longer region enumerations would pass the 30-word caption budget


# ---------------------------------------------------------------------------------------------------------------
# Phrases
# ---------------------------------------------------------------------------------------------------------------


def _noun_phrase(count: int, modifiers: Sequence[str], shape: str | None) -> str:
    """``(1, ["orange"], "star")`` -> "an orange star"; ``(2, ["small"], "circle")`` -> "two small circles";
    ``shape=None`` gives "object(s)"."""
    noun = shape or "object"
    phrase = " ".join([*modifiers, noun if count == 1 else noun + "s"])
    if count == 1:
        return ("an " if phrase[0] in "aeiou" else "a ") + phrase
    return f"{COUNT_WORDS[count]} {phrase}"


def _object_phrase(obj: ShapeObject, with_size: bool) -> str:
    return _noun_phrase(1, [obj.size, obj.color] if with_size else [obj.color], obj.shape)


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _attrs(obj: ShapeObject, names: Sequence[str]) -> dict[str, str]:
    return {name: getattr(obj, name) for name in names}


def _count_matching(scene: Scene, attrs: dict[str, str]) -> int:
    return sum(all(getattr(o, k) == v for k, v in attrs.items()) for o in scene.objects)


def _describe(attrs: dict[str, str], article: str = "the") -> str:
    """{"size": "small", "color": "red"} -> "the small red object" (or "a small red object")."""
    modifiers = [attrs[k] for k in ("size", "color") if k in attrs]
    if article == "the":
        return " ".join(["the", *modifiers, attrs.get("shape", "object")])
    return _noun_phrase(1, modifiers, attrs.get("shape"))


# ---------------------------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------------------------


def captions(scene: Scene, rng: np.random.Generator) -> list[str]:
    """Five distinct true captions of the scene (see the module docstring for the families)."""
    pools = _caption_pools(scene, rng)
    chosen: list[str] = []

    def take(pool: list[str]) -> None:
        fresh = [c for c in pool if c not in chosen]
        if fresh and len(chosen) < N_CAPTIONS:
            chosen.append(fresh[int(rng.integers(len(fresh)))])

    take(pools["enum"])  # always one full colour+shape enumeration
    take(pools[("enum_size", "enum_count", "region_all")[int(rng.integers(3))]] or pools["enum_size"])
    for kind in rng.permutation(["relation", "region", "order", "count", "enum_size", "enum_count", "region_all"]):
        take(pools[str(kind)])
    leftovers = [c for pool in pools.values() for c in pool]
    while len(chosen) < N_CAPTIONS:
        before = len(chosen)
        take(leftovers)
        assert len(chosen) > before, f"fewer than {N_CAPTIONS} distinct captions for {scene}"
    return chosen


def _caption_pools(scene: Scene, rng: np.random.Generator) -> dict[str, list[str]]:  # noqa: C901 (one branch per caption family)
    objs = scene.objects
    n = len(objs)
    count_prefix = _noun_phrase(n, [], None) + ": "  # "three objects: "
    plain, sized = _enumeration(scene, rng, with_size=False), _enumeration(scene, rng, with_size=True)
    first_is_one = plain.startswith(("a ", "an "))
    pools: dict[str, list[str]] = {
        # not "a picture of ...": that is BLIP's captioning prompt, which the LM data prepends to every caption
        "enum": [plain, ("there is " if first_is_one else "there are ") + plain, "a drawing of " + plain],
        "enum_size": [sized, "an image of " + sized],
        "enum_count": [count_prefix + plain, count_prefix + sized],
        "region": [],
        "region_all": [],
        "relation": [],
        "order": [],
        "count": [],
    }
    for obj in objs:
        for with_size in (False, True):
            pools["region"].append(f"{_object_phrase(obj, with_size)} {REGION_PHRASES[obj.region]}")
    if n <= _REGION_ALL_MAX_OBJECTS:
        order = rng.permutation(n)
        parts = [f"{_object_phrase(objs[i], False)} {REGION_PHRASES[objs[i].region]}" for i in order]
        pools["region_all"].append(_join(parts))
    for a, b in itertools.permutations(objs, 2):
        for rel in RELATIONS:
            if relation_holds(a, rel, b):
                with_size = bool(rng.random() < 0.5)
                a_np, b_np = _object_phrase(a, with_size), _object_phrase(b, with_size)
                pools["relation"].append(f"{a_np} {RELATION_PHRASES[rel]} {b_np}")
    if n >= 2:
        for axis, rel, lead in ((0, "left of", "from left to right: "), (1, "above", "from top to bottom: ")):
            ranked = sorted(objs, key=lambda o: o.center[axis])
            if all(relation_holds(p, rel, q) for p, q in zip(ranked, ranked[1:])):
                pools["order"].append(lead + _join([_object_phrase(o, False) for o in ranked]))
    kinds = Counter((o.color, o.shape) for o in objs)
    for (color, shape), k in kinds.items():
        if k >= 2:
            pools["count"].append(_noun_phrase(k, [color], shape))
    for shape, k in Counter(o.shape for o in objs).items():
        if k >= 2:
            pools["count"].append(_noun_phrase(k, [], shape))
    for color, k in Counter(o.color for o in objs).items():
        if k >= 2:
            pools["count"].append(_noun_phrase(k, [color], None))
    return {kind: list(dict.fromkeys(pool)) for kind, pool in pools.items()}


def _enumeration(scene: Scene, rng: np.random.Generator, with_size: bool) -> str:
    """Every object once, identical kinds grouped with an exact count: "a red circle and two blue squares"."""
    keys = [((o.size,) if with_size else ()) + (o.color, o.shape) for o in scene.objects]
    groups = list(Counter(keys).items())  # first-appearance order, then shuffled
    order = rng.permutation(len(groups))
    return _join([_noun_phrase(groups[i][1], groups[i][0][:-1], groups[i][0][-1]) for i in order])


# ---------------------------------------------------------------------------------------------------------------
# Questions
# ---------------------------------------------------------------------------------------------------------------


def questions(scene: Scene, rng: np.random.Generator) -> list[dict[str, str]]:
    """4-6 distinct questions ``{"question", "answer", "question_type"}``, types visited in a random order."""
    target = int(rng.integers(MIN_QUESTIONS, MAX_QUESTIONS + 1))
    listed = {  # types whose candidates can be listed in full
        "color": _attribute_questions(scene, "color", "what color is {}?"),
        "shape": _attribute_questions(scene, "shape", "what shape is {}?"),
        "size": _attribute_questions(scene, "size", "what size is {}?"),
        "region": _attribute_questions(scene, "region", "where is {}?"),
        "relation": _relation_questions(scene),
    }
    drawn: dict[str, Callable[[Scene, np.random.Generator, set[str]], tuple[str, str] | None]] = {
        "count": _count_question,
        "exist": _exist_question,
    }
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    order = [str(t) for t in rng.permutation(QUESTION_TYPES)]
    for _ in range(3):  # rounds over the types; the second and third only fill up scenes with few candidates
        for qtype in order:
            if len(out) >= target:
                return out
            if qtype in listed:
                fresh = [qa for qa in listed[qtype] if qa[0] not in seen]
                qa = fresh[int(rng.integers(len(fresh)))] if fresh else None
            else:
                qa = drawn[qtype](scene, rng, seen)
            if qa is not None:
                seen.add(qa[0])
                out.append({"question": qa[0], "answer": qa[1], "question_type": qtype})
    return out


def _unique_references(scene: Scene, obj: ShapeObject, exclude: str | None = None) -> list[str]:
    """Descriptions ("the red circle", "the small object") that match ``obj`` and no other object."""
    refs = []
    for names in _REFERENCE_ATTRS:
        if exclude in names:
            continue
        attrs = _attrs(obj, names)
        if _count_matching(scene, attrs) == 1:
            refs.append(_describe(attrs))
    return refs


def _attribute_questions(scene: Scene, attribute: str, template: str) -> list[tuple[str, str]]:
    """Questions asking one attribute ("color", "shape", "size", "region") of a uniquely described object."""
    out = []
    for obj in scene.objects:
        answer = obj.region if attribute == "region" else getattr(obj, attribute)
        for ref in _unique_references(scene, obj, exclude=attribute):
            out.append((template.format(ref), answer))
    return out


def _relation_questions(scene: Scene) -> list[tuple[str, str]]:
    """'what shape is to the left of the orange diamond?' when exactly one object is left of the unique anchor."""
    out = []
    for anchor in scene.objects:
        for rel in RELATIONS:
            hits = [o for o in scene.objects if o is not anchor and relation_holds(o, rel, anchor)]
            if len(hits) != 1:
                continue
            (hit,) = hits
            for ref in _unique_references(scene, anchor):
                where = f"{RELATION_PHRASES[rel]} {ref}"
                out.append((f"what shape is {where}?", hit.shape))
                out.append((f"what color is the object {where}?", hit.color))
                out.append((f"what is {where}?", f"{hit.color} {hit.shape}"))
    return out


def _count_question(scene: Scene, rng: np.random.Generator, seen: set[str]) -> tuple[str, str] | None:
    """A random "how many ...?" question not in ``seen`` (None after a few tries); answers "0"-"4"."""
    for _ in range(8):
        names = _COUNT_FORMS[int(rng.integers(len(_COUNT_FORMS)))]  # () counts all objects
        if rng.random() < _P_COUNT_PRESENT:
            attrs = _attrs(_random_object(scene, rng), names)
        else:
            attrs = _random_attrs(rng, names)
        modifiers = [attrs[k] for k in ("size", "color") if k in attrs]
        question = f"how many {' '.join([*modifiers, attrs.get('shape', 'object') + 's'])} are there?"
        if question not in seen:
            return question, str(_count_matching(scene, attrs))
    return None


def _exist_question(scene: Scene, rng: np.random.Generator, seen: set[str]) -> tuple[str, str] | None:
    """'is there a green square?' not in ``seen``. The answer (yes/no, probability 1/2 each) is drawn first and kept
    while the wording is redrawn, so skipping duplicates cannot tilt the balance."""
    answer = "yes" if rng.random() < 0.5 else "no"
    for form in rng.permutation(len(_EXIST_FORMS)):
        names = _EXIST_FORMS[int(form)]
        if answer == "yes":
            pool = [_attrs(o, names) for o in scene.objects]
        else:
            absent = [a for a in _all_attrs(names) if _count_matching(scene, a) == 0]
            hard = [a for a in absent if len(names) > 1 and any(_shares_value(a, o) for o in scene.objects)]
            pool = hard if hard and rng.random() < _P_HARD_NEGATIVE else absent
        fresh = [q for q in (f"is there {_describe(a, article='a')}?" for a in pool) if q not in seen]
        if fresh:
            return fresh[int(rng.integers(len(fresh)))], answer
    return None


def _random_object(scene: Scene, rng: np.random.Generator) -> ShapeObject:
    return scene.objects[int(rng.integers(len(scene.objects)))]


def _shares_value(attrs: dict[str, str], obj: ShapeObject) -> bool:
    return any(getattr(obj, k) == v for k, v in attrs.items())


def _values(name: str) -> tuple[str, ...]:
    return {"shape": SHAPES, "color": tuple(COLORS), "size": tuple(SIZES)}[name]


def _all_attrs(names: Sequence[str]) -> list[dict[str, str]]:
    return [dict(zip(names, combo)) for combo in itertools.product(*(_values(n) for n in names))]


def _random_attrs(rng: np.random.Generator, names: Sequence[str]) -> dict[str, str]:
    return {n: _values(n)[int(rng.integers(len(_values(n))))] for n in names}
