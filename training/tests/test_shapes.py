"""Shapes generator: determinism, file formats (read back by the BLIP loaders), data-card invariants on sampled
scene graphs, captions and answers checked against the scene by an independent parser, rendering."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlip.data.annotations import check_images, load_caption_eval, load_caption_train, load_vqa
from dlip.data.shapes import (
    COLORS, REGIONS, SHAPES, Scene, ShapeObject, captions, questions, render, sample_scene, synth,
)

N_SCENES = 300  # scene-graph checks (no rendering)
SIZE_RANGES = {"small": (28, 44), "large": (64, 92)}  # the data card, restated here on purpose
REGION_WORDS = {
    "in the top left": "top left", "at the top": "top", "in the top right": "top right", "on the left": "left",
    "in the center": "center", "on the right": "right", "in the bottom left": "bottom left", "at the bottom": "bottom",
    "in the bottom right": "bottom right",
}
RELATION_WORDS = {"to the left of": "left of", "to the right of": "right of", "above": "above", "below": "below"}
COUNT_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4}
_SIZE = "small|large"
_COLOR = "|".join(COLORS)
_SHAPE = "|".join(SHAPES)
# "a small red circle" (one object, article, optional size)
_ONE = rf"(?:a|an) (?:({_SIZE}) )?({_COLOR}) ({_SHAPE})"
_REGION_RE = re.compile(rf"{_ONE} ({'|'.join(sorted(REGION_WORDS, key=len, reverse=True))})")
_RELATION_RE = re.compile(rf"^{_ONE} ({'|'.join(RELATION_WORDS)}) {_ONE}$")
_COUNT_RE = re.compile(rf"\b(one|two|three|four) (?:({_SIZE}) )?(?:({_COLOR}) )?(?:({_SHAPE})s?|objects?)\b")


def _scenes(n: int = N_SCENES, seed: int = 0) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng) for _ in range(n)]


def _center(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _holds(a: ShapeObject, rel: str, b: ShapeObject) -> bool:
    """The 20 px relation rule, written independently of the generator."""
    (ax, ay), (bx, by) = _center(a.bbox), _center(b.bbox)
    return {"left of": ax < bx - 20, "right of": ax > bx + 20, "above": ay < by - 20, "below": ay > by + 20}[rel]


def _matching(scene: Scene, size=None, color=None, shape=None) -> list[ShapeObject]:
    return [
        o for o in scene.objects
        if (size is None or o.size == size)
        and (color is None or o.color == color)
        and (shape is None or o.shape == shape)
    ]


def _resolve(scene: Scene, ref: str) -> ShapeObject:
    """'the small red object' -> the one object it names (fails unless exactly one matches)."""
    words = ref.split()
    assert words[0] == "the", ref
    attrs = {"size": None, "color": None, "shape": None}
    for w in words[1:]:
        key = "size" if w in SIZE_RANGES else "color" if w in COLORS else "shape" if w in SHAPES else None
        assert key is not None or w == "object", f"unknown word {w!r} in {ref!r}"
        if key:
            attrs[key] = w
    hits = _matching(scene, **attrs)
    assert len(hits) == 1, f"{ref!r} names {len(hits)} objects"
    return hits[0]


def _reference_answer(scene: Scene, question: str, qtype: str) -> str:
    """Answers a generated question from the scene graph alone."""
    assert question.endswith("?") and question == question.lower(), question
    q = question[:-1]
    if qtype == "relation":
        m = re.fullmatch(rf"what (shape is|color is the object|is) ({'|'.join(RELATION_WORDS)}) (the .+)", q)
        anchor = _resolve(scene, m.group(3))
        hits = [o for o in scene.objects if o is not anchor and _holds(o, RELATION_WORDS[m.group(2)], anchor)]
        assert len(hits) == 1, f"{question!r}: {len(hits)} objects stand in that relation"
        return {"shape is": hits[0].shape, "color is the object": hits[0].color,
                "is": f"{hits[0].color} {hits[0].shape}"}[m.group(1)]
    if qtype == "count":
        words = re.fullmatch(r"how many (.+)s are there", q).group(1).split()
        attrs = {"size": None, "color": None, "shape": None}
        for w in words:
            if w != "object":
                attrs["size" if w in SIZE_RANGES else "color" if w in COLORS else "shape"] = w
        return str(len(_matching(scene, **attrs)))
    if qtype == "exist":
        words = re.fullmatch(r"is there (?:a|an) (.+)", q).group(1).split()
        attrs = {"size": None, "color": None, "shape": None}
        for w in words:
            if w != "object":
                attrs["size" if w in SIZE_RANGES else "color" if w in COLORS else "shape"] = w
        return "yes" if _matching(scene, **attrs) else "no"
    m = re.fullmatch(r"(what color is|what shape is|what size is|where is) (the .+)", q)
    obj = _resolve(scene, m.group(2))
    return {"what color is": obj.color, "what shape is": obj.shape, "what size is": obj.size,
            "where is": _region(obj)}[m.group(1)]


def _region(obj: ShapeObject) -> str:
    """The 3x3 grid cell of the centre, written independently of the generator."""
    cx, cy = _center(obj.bbox)
    return REGIONS[3 * min(int(cy // (256 / 3)), 2) + min(int(cx // (256 / 3)), 2)]


def _annotation_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(root.glob("annotations/*.json")) + sorted(root.glob("scenes_*.jsonl"))
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def _pixels(root: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(root).as_posix(): np.asarray(Image.open(p)) for p in sorted(root.glob("images/*/*.png"))}


# ---------------------------------------------------------------------------------------------------------------
# synth: determinism and formats
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    counts = synth(out, n_train=6, n_val=3, n_test=3, seed=0, progress=False)
    assert counts["train_images"] == 6 and counts["val_images"] == 3 and counts["test_images"] == 3
    assert counts["train_captions"] == 30 and counts["test_captions"] == 15
    return out


def test_same_seed_gives_identical_files_and_pixels_and_other_seed_differs(synth_dir, tmp_path):
    again = tmp_path / "again"
    synth(again, n_train=6, n_val=3, n_test=3, seed=0, progress=False, workers=2)  # worker count must not matter
    assert _annotation_bytes(again) == _annotation_bytes(synth_dir)
    a, b = _pixels(again), _pixels(synth_dir)
    assert a.keys() == b.keys() and len(a) == 12
    assert all(np.array_equal(a[k], b[k]) for k in a)

    other = tmp_path / "other"
    synth(other, n_train=6, n_val=3, n_test=3, seed=1, progress=False)
    assert _annotation_bytes(other)["annotations/caption_test.json"] != _annotation_bytes(synth_dir)[
        "annotations/caption_test.json"
    ]
    assert not np.array_equal(_pixels(other)["images/test/test_000000.png"], b["images/test/test_000000.png"])


def test_n_train_does_not_change_val_or_test(synth_dir, tmp_path):
    synth(tmp_path, n_train=2, n_val=3, n_test=3, seed=0, noise_sigma=3.0, progress=False)
    mine, ref = _annotation_bytes(tmp_path), _annotation_bytes(synth_dir)
    for name in ["annotations/caption_val.json", "annotations/vqa_test.json", "scenes_test.jsonl"]:
        assert mine[name] == ref[name], name
    assert mine["annotations/caption_train.json"] != ref["annotations/caption_train.json"]


def test_files_have_blip_formats_and_load(synth_dir):
    ann = synth_dir / "annotations"
    train = json.loads((ann / "caption_train.json").read_text())
    assert len(train) == 30 and set(train[0]) == {"image", "caption", "image_id"}
    per_image = Counter(e["image_id"] for e in train)
    assert per_image == {f"train_{i:06d}": 5 for i in range(6)}
    assert all(e["image"] == f"images/train/{e['image_id']}.png" for e in train)

    for split in ["val", "test"]:
        entries = json.loads((ann / f"caption_{split}.json").read_text())
        assert [e["image"] for e in entries] == [f"images/{split}/{split}_{i:06d}.png" for i in range(3)]
        caps = [e["caption"] for e in entries]
        train_caps = [[e["caption"] for e in train if e["image_id"] == f"train_{i:06d}"] for i in range(6)]
        for five in caps + train_caps:
            assert len(five) == 5 and len(set(five)) == 5, five
            for c in five:
                assert c == c.lower() and c.strip() == c and not c.endswith(".") and c, c

    ids = []
    for split in ["train", "val", "test"]:
        vqa = json.loads((ann / f"vqa_{split}.json").read_text())
        per_image = Counter(e["image"] for e in vqa)
        assert len(per_image) == {"train": 6, "val": 3, "test": 3}[split] and min(per_image.values()) >= 3
        for e in vqa:
            assert set(e) == {"question_id", "image", "question", "answer", "question_type"}
            assert isinstance(e["question_id"], int) and e["question"].endswith("?")
            assert e["answer"] == [e["answer"][0]] * 10 and e["answer"][0] == e["answer"][0].lower()
            ids.append(e["question_id"])
        items = load_vqa(ann / f"vqa_{split}.json")
        check_images(items, synth_dir)
    assert len(ids) == len(set(ids))

    check_images(load_caption_train(ann / "caption_train.json"), synth_dir)
    assert len(load_caption_eval(ann / "caption_test.json")[0].captions) == 5
    assert "Seed 0" in (synth_dir / "README.md").read_text()


def test_scene_file_matches_images(synth_dir):
    lines = (synth_dir / "scenes_val.jsonl").read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        d = json.loads(line)
        scene = Scene.from_dict(d)
        assert scene.to_dict()["objects"] == d["objects"]
        img = np.asarray(Image.open(synth_dir / d["image"]), dtype=int)
        assert img.shape == (256, 256, 3)
        for obj in scene.objects:
            cx, cy = (int(v) for v in obj.center)
            assert np.abs(img[cy, cx] - np.array(obj.rgb)).max() <= 20  # noise sigma 3


@pytest.mark.parametrize(
    "kwargs, match",
    [({"noise_sigma": 7.0}, "noise_sigma"), ({"n_train": -1}, "n_train"), ({"workers": 0}, "workers")],
)
def test_bad_arguments_raise_value_error(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        synth(tmp_path, **{"n_train": 1, "n_val": 0, "n_test": 0, "progress": False, **kwargs})


# ---------------------------------------------------------------------------------------------------------------
# Data card on scene graphs
# ---------------------------------------------------------------------------------------------------------------


def test_scenes_obey_the_data_card():
    counts = Counter()
    for scene in _scenes():
        assert 1 <= len(scene.objects) <= 4
        counts[len(scene.objects)] += 1
        assert all(200 <= c <= 255 for c in scene.background)
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.bbox
            assert 0 <= x0 and 0 <= y0 and x1 <= 256 and y1 <= 256
            assert x1 - x0 == y1 - y0
            lo, hi = SIZE_RANGES[obj.size]
            assert lo <= x1 - x0 <= hi
            assert obj.shape in SHAPES
            assert max(abs(a - b) for a, b in zip(obj.rgb, COLORS[obj.color])) <= 15
            assert obj.region == _region(obj)
        for a, b in itertools.combinations(scene.objects, 2):
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.bbox, b.bbox
            gap_x = max(bx0 - ax1, ax0 - bx1)
            gap_y = max(by0 - ay1, ay0 - by1)
            assert max(gap_x, gap_y) >= 4, (a.bbox, b.bbox)
    assert set(counts) == {1, 2, 3, 4}


def test_captions_are_true_of_the_scene():
    rng = np.random.default_rng(1)
    checked = Counter()
    for scene in _scenes():
        caps = captions(scene, rng)
        assert len(caps) == 5 and len(set(caps)) == 5
        # the first caption enumerates every object by colour and shape
        assert all(o.color in caps[0] and o.shape in caps[0] for o in scene.objects), caps[0]
        for cap in caps:
            assert cap == cap.lower() and not cap.endswith(".") and len(cap.split()) <= 30, cap
            for m in _COUNT_RE.finditer(cap):
                n = len(_matching(scene, size=m.group(2), color=m.group(3), shape=m.group(4)))
                assert n == COUNT_WORDS[m.group(1)], f"{cap!r}: {m.group(0)!r} but {n} in the scene"
                checked["count"] += 1
            for m in _REGION_RE.finditer(cap):
                objs = _matching(scene, size=m.group(1), color=m.group(2), shape=m.group(3))
                assert any(o.region == REGION_WORDS[m.group(4)] for o in objs), cap
                checked["region"] += 1
            if m := _RELATION_RE.match(cap):
                a_objs = _matching(scene, size=m.group(1), color=m.group(2), shape=m.group(3))
                b_objs = _matching(scene, size=m.group(5), color=m.group(6), shape=m.group(7))
                rel = RELATION_WORDS[m.group(4)]
                assert any(_holds(a, rel, b) for a in a_objs for b in b_objs if a is not b), cap
                checked["relation"] += 1
            if m := re.fullmatch(r"from (left to right|top to bottom): (.+)", cap):
                parts = re.split(r", | and ", m.group(2))
                rel = "left of" if m.group(1) == "left to right" else "above"
                specs = [re.fullmatch(_ONE, p).groups() for p in parts]
                assert any(
                    all(_matching(Scene(scene.background, (o,)), *s) for o, s in zip(perm, specs))
                    and all(_holds(p, rel, q) for p, q in zip(perm, perm[1:]))
                    for perm in itertools.permutations(scene.objects, len(specs))
                ), cap
                checked["order"] += 1
    assert min(checked[k] for k in ["count", "region", "relation", "order"]) >= 20, checked


def test_every_answer_matches_the_scene_and_all_types_appear():
    rng = np.random.default_rng(2)
    types = Counter()
    for scene in _scenes():
        qs = questions(scene, rng)
        assert 4 <= len(qs) <= 6 and len({q["question"] for q in qs}) == len(qs)
        for q in qs:
            assert q["answer"] == _reference_answer(scene, q["question"], q["question_type"]), q
            types[q["question_type"]] += 1
    assert set(types) == {"color", "shape", "count", "exist", "size", "region", "relation"}
    assert min(types.values()) >= 0.3 * N_SCENES * 5 / 7, types  # every type asked often


def test_relation_questions_follow_the_20px_rule_on_a_handmade_scene():
    def obj(shape, color, x, y):
        return ShapeObject(shape, color, COLORS[color], "small", (x, y, x + 30, y + 30))

    # centres x: circle 25, square 44 (19 px right of the circle: no relation), star 65 (21 px right of the square)
    # centres y: square 25, circle 115, star 215
    scene = Scene((230, 230, 230), (obj("circle", "red", 10, 100), obj("square", "blue", 29, 10),
                                    obj("star", "green", 50, 200)))
    asked = {}
    rng = np.random.default_rng(0)
    for _ in range(1500):
        for q in questions(scene, rng):
            if q["question_type"] == "relation":
                assert asked.setdefault(q["question"], q["answer"]) == q["answer"]
    assert asked["what shape is to the right of the red circle?"] == "star"  # the square is only 19 px right
    assert asked["what shape is to the right of the blue square?"] == "star"  # 21 px
    assert asked["what shape is above the red circle?"] == "square"
    assert asked["what is below the red circle?"] == "green star"
    assert "what shape is to the left of the blue square?" not in asked  # 19 px: nothing is left of it
    assert "what shape is to the left of the green star?" not in asked  # two objects are: the answer is not unique


def test_existence_answers_are_balanced():
    rng = np.random.default_rng(3)
    answers = Counter(
        q["answer"] for scene in _scenes(500, seed=3) for q in questions(scene, rng) if q["question_type"] == "exist"
    )
    total = answers["yes"] + answers["no"]
    assert total == sum(answers.values()) and total >= 200
    assert 0.42 <= answers["yes"] / total <= 0.58, answers


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------


def test_render_paints_object_colours_at_centres_and_background_elsewhere():
    for scene in _scenes(60, seed=4):
        clean = np.asarray(render(scene), dtype=int)
        noisy = np.asarray(render(scene, np.random.default_rng(0), noise_sigma=3.0), dtype=int)
        assert clean.shape == (256, 256, 3)
        for obj in scene.objects:
            cx, cy = (int(v) for v in obj.center)
            assert tuple(clean[cy, cx]) == obj.rgb, obj  # every shape is filled at its centre
            assert np.abs(noisy[cy, cx] - np.array(obj.rgb)).max() <= 16
            x0, y0, x1, y1 = obj.bbox
            if obj.shape == "square":  # fills its box exactly
                assert tuple(clean[y0, x0]) == obj.rgb and tuple(clean[y1 - 1, x1 - 1]) == obj.rgb
            if x0 >= 2:  # just left of the box is background (boxes are >= 4 px apart)
                assert tuple(clean[cy, x0 - 2]) == scene.background
        ink = np.any(clean != np.array(scene.background), axis=-1)
        covered = np.zeros_like(ink)
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.bbox
            covered[y0:y1, x0:x1] = True
        assert not np.any(ink & ~covered)  # nothing drawn outside the bounding boxes
        noise = noisy - clean
        assert 2.0 <= noise.std() <= 4.0 and np.abs(noise).max() <= 25


def test_render_needs_rng_for_noise_and_rejects_large_sigma():
    scene = _scenes(1)[0]
    with pytest.raises(ValueError, match="rng"):
        render(scene, None, noise_sigma=2.0)
    with pytest.raises(ValueError, match="noise_sigma"):
        render(scene, np.random.default_rng(0), noise_sigma=6.5)
