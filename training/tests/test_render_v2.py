"""Renderer v2 and the hard robustness split: the labels stay true (colours inside their name's shade range, every
object inside its box with its centre and size class kept, occluders hide at most their share), variation is really
there, and everything is deterministic by seed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlip.data.perturb import perturb
from dlip.data.perturb_hard import HARD, SIDES, render_hard
from dlip.data.render_v2 import (
    V2, Variation, compose, draw_plan, fitted_outline, object_coverage, render_v2, shade_range, stroke_coverage,
)
from dlip.data.shapes import CANVAS, COLORS, sample_scene, synth

N_SCENES = 40
CLEAN = dataclasses.replace(V2, blur_sigma=(0.0, 0.0), jpeg_quality=None)  # labels checked before blur and JPEG
HARD_SHAPES = dataclasses.replace(HARD, occluders=(0, 0))  # the hard split's drawing before strokes and shrinking


def _scenes(n: int = N_SCENES, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng) for _ in range(n)]


def _box_mask(scene) -> np.ndarray:
    inside = np.zeros((CANVAS, CANVAS), dtype=bool)
    for o in scene.objects:
        x0, y0, x1, y1 = o.bbox
        inside[y0:y1, x0:x1] = True
    return inside


@pytest.mark.parametrize("variation", [CLEAN, HARD_SHAPES], ids=["v2", "hard"])
def test_every_object_is_painted_inside_its_box_in_its_colours_shade_range(variation):
    rng = np.random.default_rng(1)
    shades = []
    for scene in _scenes():
        plan = draw_plan(scene, rng, variation)
        pixels = np.asarray(compose(scene, plan, variation.supersample), dtype=np.float64)  # (H, W, 3)
        # outside every box: background only (for v2 this shows no paint leaks: each colour has a channel below the
        # floor, test_shade_ranges_keep_each_colour_apart_from_the_background_and_hue_stays)
        assert pixels[~_box_mask(scene)].min() >= variation.background_floor
        for obj, op in zip(scene.objects, plan.objects):
            x0, y0, x1, y1 = obj.bbox
            coverage = object_coverage(obj, op.angle_deg, variation.supersample)
            inner = pixels[y0:y1, x0:x1][coverage == 1]  # (K, 3) pixels the shape covers whole
            assert len(inner) > 0.3 * obj.side**2, obj
            lo, hi = shade_range(obj.color, variation)
            assert (inner >= lo - 1).all() and (inner <= hi + 1).all(), (obj.color, inner.min(0), inner.max(0))
            # its own colour's range, and the shade is the plan's: the centre pixel is rgb x shade
            cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
            expected = np.clip(np.asarray(obj.rgb) * op.shade, 0, 255)
            assert np.abs(pixels[cy, cx] - expected).max() <= variation.shade_ramp * 255 / obj.side + 1
            # the drawn shape spans its box (side class kept) and is centred in it (region and relations kept)
            ys, xs = np.nonzero(coverage > 0.5)
            extent = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert extent >= obj.side - 2, (obj.shape, op.angle_deg, extent, obj.side)
            assert abs((xs.min() + xs.max() + 1) / 2 - obj.side / 2) <= 1.5
            assert abs((ys.min() + ys.max() + 1) / 2 - obj.side / 2) <= 1.5
            assert abs(op.angle_deg) <= variation.rotation_deg and (op.angle_deg == 0) == (obj.shape == "circle")
            shades.append(op.shade)
    lo, hi = variation.shade
    assert lo <= min(shades) < lo + 0.05 and hi - 0.05 < max(shades) <= hi  # really varied over the range


def test_shade_ranges_keep_each_colour_apart_from_the_background_and_hue_stays():
    for name in COLORS:
        lo, hi = shade_range(name, V2)
        assert hi.min() < V2.background_floor, name  # some channel always darker than any background pixel
    with pytest.raises(ValueError, match="shade range"):
        Variation(shade=(0.5, 1.0))
    with pytest.raises(ValueError, match="rotation_deg"):
        Variation(rotation_deg=45)


def test_fitted_outlines_fill_the_unit_box():
    for shape in ("square", "triangle", "diamond", "star"):
        for angle in (-15.0, 0.0, 7.5):
            pts = np.asarray(fitted_outline(shape, angle))
            lo, hi = pts.min(0), pts.max(0)
            assert np.isclose((hi - lo).max(), 1) and np.allclose((lo + hi) / 2, 0.5) and lo.min() >= -1e-9
    with pytest.raises(ValueError, match="no outline"):
        fitted_outline("circle", 0)


def test_same_seed_same_pixels_other_seed_differs():
    scene = _scenes(1)[0]

    def draw(seed):
        return np.asarray(render_v2(scene, np.random.default_rng(seed), V2, noise_sigma=3.0))

    assert np.array_equal(draw(5), draw(5))
    assert not np.array_equal(draw(5), draw(6))


def test_synth_v2_is_deterministic_named_in_the_card_and_v1_is_unchanged(tmp_path):
    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b, v1 = tmp_path / "a", tmp_path / "b", tmp_path / "v1"
    synth(a, n_train=3, n_val=1, n_test=3, seed=0, progress=False, renderer="v2")
    synth(b, n_train=3, n_val=1, n_test=3, seed=0, workers=2, progress=False, renderer="v2")
    synth(v1, n_train=3, n_val=1, n_test=3, seed=0, progress=False)
    fa, f1 = files(a), files(v1)
    assert fa == files(b)
    card = (a / "README.md").read_text()
    assert 'renderer="v2"' in card and "Renderer v2" in card and "renderer" not in (v1 / "README.md").read_text()
    for name in fa:  # the same scenes, captions and questions; other pixels
        if name.endswith(".png"):
            assert fa[name] != f1[name]
        elif name != "README.md":
            assert fa[name] == f1[name], name
    with pytest.raises(ValueError, match="renderer must be one of"):
        synth(tmp_path / "c", n_train=1, n_val=0, n_test=0, renderer="v3", progress=False)


def test_hard_occluders_hide_at_most_their_share_of_any_object():
    rng = np.random.default_rng(2)
    strokes = 0
    for scene in _scenes(25):
        plan = draw_plan(scene, rng, HARD)
        assert len(plan.occluders) <= HARD.occluders[1]
        for *line, width, _ in plan.occluders:
            stroke = stroke_coverage(tuple(line), width, HARD.supersample)
            strokes += 1
            for obj, op in zip(scene.objects, plan.objects):
                x0, y0, x1, y1 = obj.bbox
                cover = object_coverage(obj, op.angle_deg, HARD.supersample)
                hidden = (stroke[y0:y1, x0:x1] * cover).sum() / cover.sum()
                assert hidden <= HARD.occluder_max_cover + 0.03, (obj, hidden)  # drawn at 2x, checked at 4x
    assert strokes >= 2 * 25 * 0.8  # nearly every draw finds room


def test_hard_split_is_small_deterministic_and_keeps_the_annotations(tmp_path):
    source = tmp_path / "src"
    synth(source, n_train=1, n_val=0, n_test=5, seed=0, progress=False)
    out, again = tmp_path / "hard", tmp_path / "again"
    counts = perturb(source, out, seed=0, progress=False)
    perturb(source, again, seed=0, workers=2, progress=False)
    assert counts["images"] == 5

    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(out) == files(again)
    lines = [json.loads(line) for line in (out / "perturbations_test.jsonl").read_text().splitlines()]
    for line in lines:
        with Image.open(out / line["image"]) as im:
            assert im.format == "JPEG" and im.size == (line["side"], line["side"]) and line["side"] in SIDES
        assert all(abs(a) <= HARD.rotation_deg for a in line["angles_deg"])
    assert json.loads((out / "annotations/vqa_test.json").read_text())[0]["answer"] == json.loads(
        (source / "annotations/vqa_test.json").read_text())[0]["answer"]
    assert "hard preset" in (out / "README.md").read_text()


def test_render_hard_draws_from_both_streams_in_order():
    scene = _scenes(1)[0]
    a = render_hard(scene, np.random.default_rng(0), np.random.default_rng(1))
    b = render_hard(scene, np.random.default_rng(0), np.random.default_rng(1))
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0])) and a[1:] == b[1:]
    c = render_hard(scene, np.random.default_rng(0), np.random.default_rng(2))  # other noise only
    assert c[1:] == a[1:] and not np.array_equal(np.asarray(c[0]), np.asarray(a[0]))


def test_cli_writes_a_v2_data_set_and_a_hard_split(tmp_path):
    from dlip.cli import main

    data = tmp_path / "d"
    assert main(["data", "synth", "--out", str(data), "--n", "1", "0", "2", "--renderer", "v2", "--workers", "1"]) == 0
    assert main(["data", "perturb", "--data", str(data), "--out", str(tmp_path / "h"), "--workers", "1"]) == 0
    assert (tmp_path / "h" / "perturbations_test.jsonl").is_file()
    assert Path(tmp_path / "h" / "README.md").read_text().count("hard preset") == 1
