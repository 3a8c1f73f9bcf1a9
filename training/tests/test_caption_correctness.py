"""Caption correctness: the data card's grammar read back (every caption the generator writes is a complete sentence
whose statements are true of its scene; cut-off captions are told from ungrammatical ones), and the per-caption and
aggregate measures against hand-computed references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlip.data.shapes import captions, sample_scene
from dlip.data.shapes_grammar import NounPhrase, grammar_status, parse_caption, tokenize
from dlip.data.shapes_scene import ShapeObject
from dlip.eval.caption_correctness import caption_correctness, grade_caption
from dlip.eval.sampling_error import ratio_standard_error


def _obj(color: str, shape: str, size: str = "small") -> ShapeObject:
    return ShapeObject(shape=shape, color=color, rgb=(0, 0, 0), size=size, bbox=(0, 0, 30, 30))


# ---------------------------------------------------------------------------------------------------------------
# Grammar
# ---------------------------------------------------------------------------------------------------------------


def test_every_generated_caption_is_complete_and_true_of_its_scene():
    """300 scenes x 5 captions from the generator: all parse as complete sentences, name only pairs of the scene,
    every size word and count they state is right; the first caption (an enumeration) names exactly the scene."""
    rng = np.random.default_rng(0)
    families_seen = set()
    for _ in range(300):
        scene = sample_scene(rng)
        caps = captions(scene, rng)
        for i, caption in enumerate(caps):
            parsed = parse_caption(caption)
            assert parsed.status == "complete", caption
            g = grade_caption(caption, scene.objects)
            assert g.named <= g.truth, caption
            assert g.size_right == g.size_judged == sum(p.size is not None for p in parsed.phrases), caption
            assert g.counts_right == g.counts_stated, caption
            families_seen.add(caption.split()[0] + ("(count)" if g.counts_stated else ""))
            if i == 0:
                assert g.exact_set and g.exact_objects and g.recall == 1 and g.precision == 1, caption
    assert len(families_seen) >= 6, families_seen


@pytest.mark.parametrize("caption, status", [
    ("an object a small red diamond", "complete"),  # "an object: ..." after pre_caption
    ("two objects: a large red star and a small yellow star", "complete"),
    ("there are two small red circles and a blue square", "complete"),
    ("a red circle to the left of a blue star", "complete"),
    ("from top to bottom a red circle, a blue star and a gray square", "complete"),
    ("a green triangle in the bottom left and a red star at the top", "complete"),
    ("two red objects", "complete"),
    ("two stars", "complete"),
    ("A Red Circle.", "complete"),
    # cut off mid-phrase: a proper prefix of a sentence
    ("an image of a large gray square, a large orange star, a large black star and a small", "truncated"),
    ("a green triangle in the bottom left, a green square in the center and a green diamond in the", "truncated"),
    ("four objects a large red square, a large orange square, a large red square and a large red", "truncated"),
    ("a red circle, a blue star", "truncated"),  # a list of three needs its "and"
    ("three objects", "truncated"),
    ("a red circle in the top", "truncated"),
    ("", "truncated"),
    # neither
    ("a red circle blah", "ungrammatical"),
    ("a red large star", "ungrammatical"),
    ("a red circles", "ungrammatical"),  # an article needs a singular noun
    ("two red circle", "ungrammatical"),  # a number word a plural one
    ("a red circle and and a blue star", "ungrammatical"),
    ("two small objects", "ungrammatical"),
])
def test_grammar_status(caption, status):
    assert grammar_status(tokenize(caption)) == status


def test_noun_phrases_are_read_from_any_caption():
    assert parse_caption("four objects: a large red square, two small blue stars and a").phrases == (
        NounPhrase(4, None, None, None), NounPhrase(1, "large", "red", "square"),
        NounPhrase(2, "small", "blue", "star"),
    )
    assert parse_caption("two red objects").phrases == (NounPhrase(2, None, "red", None),)
    assert parse_caption("a drawing of an image").phrases == ()
    assert [p.states_count for p in parse_caption("an object a red circle and two stars").phrases] == [
        True, False, True]


# ---------------------------------------------------------------------------------------------------------------
# Grading one caption (hand-computed)
# ---------------------------------------------------------------------------------------------------------------

SCENE = [_obj("red", "circle", "large"), _obj("blue", "square"), _obj("blue", "square", "large")]


def test_grade_exact_and_counted():
    g = grade_caption("there are a large red circle and two blue squares", SCENE)
    assert g.exact_set and g.exact_objects and g.status == "complete"
    assert (g.precision, g.recall) == (1, 1)
    assert (g.size_words, g.size_judged, g.size_right) == (1, 1, 1)
    assert (g.counts_stated, g.counts_right) == (1, 1)


def test_grade_wrong_pair_wrong_count_wrong_size_cut_off():
    # named {red circle, green star, blue square}: 2 of 3 true; recall 2/2; "three objects" right; "two red
    # circles" wrong (one); sizes: "small red circle" judged (a red circle exists) and wrong (it is large), "large
    # green star" not judged (no green star), "small blue square" judged and right
    caption = "three objects two small red circles, a large green star and a small blue square and a"
    g = grade_caption(caption, SCENE)
    assert g.named == {("red", "circle"), ("green", "star"), ("blue", "square")}
    assert not g.exact_set and not g.exact_objects
    assert math.isclose(g.precision, 2 / 3) and g.recall == 1
    assert (g.size_words, g.size_judged, g.size_right) == (3, 2, 1)
    assert (g.counts_stated, g.counts_right) == (2, 1)
    assert g.status == "ungrammatical"  # "... and a blue square and a": two "and"s, not a prefix of a sentence
    assert grade_caption("three objects two small red circles and a", SCENE).status == "truncated"


def test_grade_set_right_but_objects_miscounted():
    g = grade_caption("a red circle and a blue square", SCENE)  # the scene has two blue squares
    assert g.exact_set and not g.exact_objects


def test_grade_names_nothing():
    g = grade_caption("two stars", SCENE)
    assert g.named == frozenset() and g.precision is None and g.recall == 0 and not g.exact_set
    assert (g.counts_stated, g.counts_right) == (1, 0)  # no star at all
    with pytest.raises(ValueError, match="at least one object"):
        grade_caption("a red circle", [])


# ---------------------------------------------------------------------------------------------------------------
# Aggregates (hand-computed)
# ---------------------------------------------------------------------------------------------------------------


def test_caption_correctness_aggregates():
    scenes = [SCENE, [_obj("red", "circle")], [_obj("gray", "star", "large")], [_obj("black", "diamond")]]
    caps = [
        "a large red circle and two blue squares",  # exact; 1 size judged right; 1 count right
        "a red circle and a green star",  # precision 1/2, recall 1; all_named_true no
        "two stars",  # names no pair; count wrong (one star)
        "a small black diamond and a",  # exact set; cut off; size right
    ]
    m = caption_correctness(caps, scenes)
    assert m["exact_set"] == 50 and m["exact_objects"] == 50
    assert m["sampling_error"]["exact_set"] == pytest.approx(100 * 0.5 / 2)  # std 0.5 / sqrt(4)
    assert m["all_named_true"] == 50 and m["names_no_pair"] == 25
    assert m["precision"] == pytest.approx(100 * (1 + 0.5 + 1) / 3)  # over the three that name a pair
    assert m["recall"] == pytest.approx(100 * (1 + 1 + 0 + 1) / 4)
    assert m["size_acc"] == 100 and m["counts"]["size_words_judged"] == 2
    assert m["count_acc"] == 50 and m["counts"]["count_statements"] == 2
    # delta method over images: hits (1, 0, 0, 0) of statements (1, 0, 1, 0), R = 1/2
    assert m["sampling_error"]["count_acc"] == pytest.approx(100 * math.sqrt(0.25 + 0.25) / 2)
    assert m["incomplete"] == 25 and m["ungrammatical"] == 0
    assert m["counts"]["captions"] == 4 and m["counts"]["naming_a_pair"] == 3


def test_caption_correctness_with_nothing_to_average():
    m = caption_correctness(["two stars"], [[_obj("red", "circle")]])
    assert m["precision"] is None and m["size_acc"] is None and m["sampling_error"]["size_acc"] is None
    with pytest.raises(ValueError, match="one scene per caption"):
        caption_correctness(["a red circle"], [])


def test_ratio_standard_error_matches_the_mean_form_and_a_brute_force_bootstrap():
    hits, trials = np.array([1, 0, 1, 1, 0, 1]), np.ones(6)
    assert ratio_standard_error(hits, trials) == pytest.approx(hits.std() / math.sqrt(6))
    rng = np.random.default_rng(0)
    trials = rng.integers(0, 5, size=400).astype(float)
    hits = rng.binomial(trials.astype(int), 0.7).astype(float)
    draws = rng.integers(0, 400, size=(4000, 400))
    boot = hits[draws].sum(1) / trials[draws].sum(1)
    assert ratio_standard_error(hits, trials) == pytest.approx(boot.std(), rel=0.1)
    with pytest.raises(ValueError):
        ratio_standard_error([0, 0], [0, 0])


# ---------------------------------------------------------------------------------------------------------------
# correctness-report
# ---------------------------------------------------------------------------------------------------------------


def test_correctness_report_tables_eval_bundle_output(shapes_dir, tmp_path, capsys):
    import json
    from pathlib import Path

    from dlip.cli import main

    bundle = Path(__file__).resolve().parents[2] / "test/fixtures/micro"
    out = tmp_path / "clean.json"
    assert main(["eval-bundle", str(bundle), "--data", str(shapes_dir), "--k", "2", "--beams", "2",
                 "--limit-questions", "12", "--no-vqa-rank", "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    c = m["caption"]["beam2"]["correctness"]
    assert m["headline"]["caption_exact_set"] == c["exact_set"] and c["counts"]["captions"] == 8
    assert set(m["vqa"]["sampling_error"]["by_type"]) == set(m["vqa"]["by_type"])
    report = tmp_path / "REPORT.md"
    report.write_text("# R\n\n<!-- correctness:begin -->\nold\n<!-- correctness:end -->\n")
    assert main(["correctness-report", "--row", f"micro, a=b split={out}", "--out", str(report)]) == 0
    text = report.read_text()
    assert "old" not in text and "| micro, a=b split | 8 | " in text
    assert f"{c['exact_set']:.1f} (+-{c['sampling_error']['exact_set']:.1f})" in text
    assert f"| micro, a=b split | 12 | {m['vqa']['acc']:.1f} (+-{m['vqa']['sampling_error']['acc']:.1f}) |" in text
    del m["caption"]["beam2"]["correctness"]
    out.write_text(json.dumps(m))
    capsys.readouterr()
    assert main(["correctness-report", "--row", f"x={out}", "--out", str(report)]) == 2
    assert "no graded beam captions" in capsys.readouterr().err
