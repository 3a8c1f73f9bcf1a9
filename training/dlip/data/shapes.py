"""The synthetic Shapes benchmark: rendering and the ``synth`` writer (public API of the generator).

``synth(out_dir)`` writes images, BLIP-format caption and VQA annotation files, scene graphs and a data card; the
same loaders then read it as they read COCO-Karpathy / Flickr30K / VQAv2. Layout under ``out_dir`` (the image root):

- ``images/{split}/{split}_{index:06d}.png``
- ``annotations/caption_train.json``: one entry per caption ``{"image", "caption": str, "image_id"}``
- ``annotations/caption_{val,test}.json``: one entry per image ``{"image", "caption": [5 str]}``
- ``annotations/vqa_{train,val,test}.json``: ``{"question_id", "image", "question", "answer": [str]*10,
  "question_type"}``
- ``scenes_{split}.jsonl``: one scene graph per line (``Scene.to_dict`` plus "image" and "image_id")
- ``README.md``: the data card

Renderer: ``renderer="v1"`` (this function's default, so the test fixtures and the earlier recipes of
report/HISTORY.md stay byte-identical; ``dlip data synth`` draws v2 by default: flat colours, hard edges, a flat
background, pixel noise) or ``"v2"`` (``dlip.data.render_v2``: anti-aliasing,
shades, background gradients and texture, slight rotation, blur, JPEG), named in the data card.

Determinism: image ``i`` of a split draws from its own numpy stream ``SeedSequence([seed, split, i])`` (split-wise
children for scene, text and noise), so the output does not depend on ``workers``, changing ``n_train`` leaves val
and test unchanged, and changing ``noise_sigma`` changes pixels only.

Scene sampling and the data card's rules live in ``shapes_scene``; captions and questions in ``shapes_text``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from .shapes_scene import (
    BACKGROUND_RANGE, CANVAS, COLOR_JITTER, COLORS, MAX_OBJECTS, MIN_GAP, MIN_OBJECTS, RELATION_MARGIN, REGIONS,
    SHAPES, SIZES, Scene, ShapeObject, region_of, relation_holds, sample_scene,
)
from .render_v2 import RENDERERS, V2, render_v2
from .shapes_text import N_CAPTIONS, QUESTION_TYPES, captions, questions

__all__ = [
    "CANVAS", "COLORS", "REGIONS", "SHAPES", "SIZES", "QUESTION_TYPES", "Scene", "ShapeObject", "captions",
    "questions", "region_of", "relation_holds", "render", "sample_scene", "synth",
]

SPLITS = ("train", "val", "test")
MAX_NOISE_SIGMA = 6.0
VQA_ANSWERS_PER_QUESTION = 10  # VQAv2 has 10 annotators; all agree here since the scene is known
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}  # enters the seed sequence
_QUESTION_ID_BASE = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000}  # ids unique across splits
_STAR_INNER_RATIO = 0.45  # inner/outer radius of the star (0.38 is a pentagram; a little fatter reads better small)
_PNG_COMPRESS_LEVEL = 1  # noisy images barely compress; level 1 is several times faster than the default 6


def _unit_polygon(points: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Scales a polygon so its bounding box is exactly [0, 1] x [0, 1]."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return tuple(((x - min(xs)) / (max(xs) - min(xs)), (y - min(ys)) / (max(ys) - min(ys))) for x, y in points)


def _star_points() -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5  # first point straight up
    radii = np.where(np.arange(10) % 2 == 0, 1.0, _STAR_INNER_RATIO)
    return list(zip((radii * np.cos(angles)).tolist(), (radii * np.sin(angles)).tolist()))


_POLYGONS = {  # unit polygons, y down, filling their bounding box
    "triangle": _unit_polygon([(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)]),
    "diamond": _unit_polygon([(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)]),
    "star": _unit_polygon(_star_points()),
}


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------


def render(scene: Scene, rng: np.random.Generator | None = None, noise_sigma: float = 0.0,
           supersample: int = 1) -> Image.Image:
    """Draws the scene with PIL and adds Gaussian pixel noise of ``noise_sigma`` (needs ``rng``), rounded to integers
    and clipped to [0, 255].

    ``supersample=1`` (the benchmark's images) draws without anti-aliasing. ``supersample=s > 1`` draws the same
    geometry at s times the canvas side and averages each s x s block (a box filter): anti-aliased edges, the same
    colours inside objects and background, and, from an ``rng`` in the same state, the same noise."""
    _check_noise(noise_sigma)
    if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"render: supersample must be an integer >= 1, got {supersample!r}")
    image = Image.new("RGB", (CANVAS * supersample, CANVAS * supersample), scene.background)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_object(draw, obj, supersample)
    if supersample > 1:
        image = image.resize((CANVAS, CANVAS), resample=Image.Resampling.BOX)
    if noise_sigma == 0:
        return image
    if rng is None:
        raise ValueError(f"render: noise_sigma={noise_sigma} needs an rng")
    # One offset per pixel shared by its three channels (grey noise): a third of the random numbers and of the PNG
    # entropy of independent per-channel noise, with the same per-channel sigma.
    noise = rng.standard_normal(size=(CANVAS, CANVAS, 1), dtype=np.float32) * noise_sigma  # (H, W, 1)
    pixels = np.asarray(image, dtype=np.int16) + np.rint(noise).astype(np.int16)  # (H, W, 3)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def _draw_object(draw: ImageDraw.ImageDraw, obj: ShapeObject, scale: int = 1) -> None:
    """Draws ``obj`` on a canvas ``scale`` times the benchmark's side, where canvas pixel p covers pixels
    scale*p .. scale*p + scale - 1: every shape spans its scaled bounding box, as it spans its box at scale 1."""
    x0, y0, x1, y1 = (v * scale for v in obj.bbox)
    last_x, last_y = x1 - 1, y1 - 1  # PIL coordinates are inclusive: pixels x0..x1-1 are covered
    if obj.shape == "circle":
        draw.ellipse((x0, y0, last_x, last_y), fill=obj.rgb)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, last_x, last_y), fill=obj.rgb)
    elif obj.shape in _POLYGONS:
        span = scale * obj.side - 1
        draw.polygon([(x0 + u * span, y0 + v * span) for u, v in _POLYGONS[obj.shape]], fill=obj.rgb)
    else:
        raise ValueError(f"unknown shape '{obj.shape}' (known: {', '.join(SHAPES)})")


def _check_noise(noise_sigma: float) -> None:
    if not 0 <= noise_sigma <= MAX_NOISE_SIGMA:
        raise ValueError(f"noise_sigma must be in [0, {MAX_NOISE_SIGMA}], got {noise_sigma}")


# ---------------------------------------------------------------------------------------------------------------
# Writing a data set
# ---------------------------------------------------------------------------------------------------------------


def image_rngs(seed: int, split: str, index: int) -> tuple[np.random.Generator, ...]:
    """The (scene, text, noise) generators of image ``index`` of ``split``."""
    root = np.random.SeedSequence([seed, _SPLIT_CODE[split], index])
    return tuple(np.random.default_rng(child) for child in root.spawn(3))


def make_example(index: int, out_dir: str, split: str, seed: int, noise_sigma: float,
                 renderer: str = "v1") -> dict[str, Any]:
    """Samples, renders and saves one image; returns its scene dict, captions and questions. Renderer v2 draws its
    variations and its noise from the image's noise stream."""
    scene_rng, text_rng, noise_rng = image_rngs(seed, split, index)
    scene = sample_scene(scene_rng)
    image_id = f"{split}_{index:06d}"
    rel_path = f"images/{split}/{image_id}.png"
    image = render(scene, noise_rng, noise_sigma) if renderer == "v1" else render_v2(scene, noise_rng, V2, noise_sigma)
    image.save(os.path.join(out_dir, rel_path), compress_level=_PNG_COMPRESS_LEVEL)
    return {
        "image": rel_path,
        "image_id": image_id,
        "scene": scene.to_dict(),
        "captions": captions(scene, text_rng),
        "questions": questions(scene, text_rng),
    }


def synth(
    out_dir: str | os.PathLike,
    n_train: int = 20000,
    n_val: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
    noise_sigma: float = 3.0,
    workers: int = 1,
    progress: bool = True,
    renderer: str = "v1",
) -> dict[str, int]:
    """Writes the Shapes benchmark under ``out_dir`` (layout in the module docstring), drawn by ``renderer``.

    Returns counts: ``{"train_images", "train_captions", "train_questions", "val_images", ...}``. Existing files
    of the same names are overwritten; images of an earlier, larger run are left in place (unreferenced).
    """
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for name, n in [("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("seed", seed)]:
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"synth: {name} must be an integer >= 0, got {n!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"synth: workers must be an integer >= 1, got {workers!r}")
    _check_noise(noise_sigma)
    if renderer not in RENDERERS:
        raise ValueError(f"synth: renderer must be one of {', '.join(RENDERERS)}, got {renderer!r}")
    out = Path(out_dir)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    pool = multiprocessing.Pool(workers) if workers > 1 else None
    try:
        for split in SPLITS:
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
            job = partial(make_example, out_dir=str(out), split=split, seed=seed, noise_sigma=noise_sigma,
                          renderer=renderer)
            indices = range(sizes[split])
            results = pool.imap(job, indices, chunksize=16) if pool is not None else map(job, indices)
            bar = tqdm(results, total=sizes[split], desc=f"shapes {split}", unit="img", disable=not progress)
            counts.update(_write_split(out, split, list(bar)))
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    call = (  # v1's call is written as before renderers existed, so v1 data cards stay byte-identical
        f'synth("<out_dir>", n_train={n_train}, n_val={n_val}, n_test={n_test}, '
        + (f'renderer="{renderer}", ' if renderer != "v1" else "")
        + f"seed={seed}, noise_sigma={noise_sigma})"
    )
    (out / "README.md").write_text(_data_card(counts, seed, noise_sigma, call, renderer))
    return counts


def _write_split(out: Path, split: str, examples: list[dict[str, Any]]) -> dict[str, int]:
    """Writes one split's annotation files and scene graphs; returns its counts."""
    if split == "train":
        caption_entries: list[dict[str, Any]] = [
            {"image": ex["image"], "caption": c, "image_id": ex["image_id"]} for ex in examples for c in ex["captions"]
        ]
    else:
        caption_entries = [{"image": ex["image"], "caption": ex["captions"]} for ex in examples]
    vqa_entries = []
    for ex in examples:
        for qa in ex["questions"]:
            vqa_entries.append({
                "question_id": _QUESTION_ID_BASE[split] + len(vqa_entries),
                "image": ex["image"],
                "question": qa["question"],
                "answer": [qa["answer"]] * VQA_ANSWERS_PER_QUESTION,
                "question_type": qa["question_type"],
            })
    _write_json(out / "annotations" / f"caption_{split}.json", caption_entries)
    _write_json(out / "annotations" / f"vqa_{split}.json", vqa_entries)
    with open(out / f"scenes_{split}.jsonl", "w") as f:
        for ex in examples:
            f.write(json.dumps({"image": ex["image"], "image_id": ex["image_id"], **ex["scene"]}) + "\n")
    return {
        f"{split}_images": len(examples),
        f"{split}_captions": sum(len(ex["captions"]) for ex in examples),
        f"{split}_questions": len(vqa_entries),
    }


def _write_json(path: Path, entries: list[dict[str, Any]]) -> None:
    with open(path, "w") as f:
        json.dump(entries, f)


_V2_RULE = (
    f"Renderer v2 (`dlip.data.render_v2`): anti-aliased ({V2.supersample}x coverage); each object's colour times "
    f"{list(V2.shade)} plus a ramp of up to +-{V2.shade_ramp} across it; polygons turned by up to "
    f"{V2.rotation_deg:g} degrees and fitted to their box again (box, region and size class unchanged); background "
    f"colour plus a gradient of up to +-{V2.background_gradient:g} and a texture of up to "
    f"+-{V2.background_texture:g} levels, clipped to [{V2.background_floor}, 255]; Gaussian blur sigma "
    f"{list(V2.blur_sigma)} px; a JPEG round trip at quality {list(V2.jpeg_quality)} for {V2.jpeg_probability:.0%} of "
    "the images; all drawn per image from its noise stream."
)


def _data_card(counts: dict[str, int], seed: int, noise_sigma: float, call: str, renderer: str = "v1") -> str:
    """README.md of a written data set: how it was made, counts, the rules and the files (one line per bullet)."""
    colors = ", ".join(f"{name} {rgb}" for name, rgb in COLORS.items())
    sizes = ", ".join(f"{k} {lo}-{hi}" for k, (lo, hi) in SIZES.items())
    rows = [
        f"| {s} | {counts[f'{s}_images']} | {counts[f'{s}_captions']} | {counts[f'{s}_questions']} |" for s in SPLITS
    ]
    rules = [
        f"{CANVAS}x{CANVAS} RGB PNG. Background: one uniform colour, each channel in {list(BACKGROUND_RANGE)}; "
        f"Gaussian pixel noise with sigma {noise_sigma} (one offset per pixel, shared by its channels) over the image.",
        *([] if renderer == "v1" else [_V2_RULE]),
        f"{MIN_OBJECTS} to {MAX_OBJECTS} objects, fully inside the canvas, bounding boxes at least {MIN_GAP} px apart.",
        f"Shapes: {', '.join(SHAPES)} (triangle point up, diamond = square turned 45 degrees, star with five points).",
        f"Colours (reference RGB, each channel varies by up to {COLOR_JITTER}): {colors}.",
        f"Sizes (bounding box side, px): {sizes}.",
        f"Region: the cell of a 3x3 grid holding the object's centre: {', '.join(REGIONS)}.",
        f"Relations: A is left of B when A's centre x < B's - {RELATION_MARGIN} px (right of likewise); above when "
        f"A's centre y < B's - {RELATION_MARGIN} px (below likewise).",
        f"Captions: {N_CAPTIONS} distinct true lowercase sentences per image, no final period: object enumerations "
        "with exact counts, sizes, regions, relations, left-to-right / top-to-bottom orders.",
        f"Questions: 4-6 per image, types {', '.join(QUESTION_TYPES)}. Objects are named only by descriptions that "
        'match one object; existence answers are yes/no with probability 1/2; counts are "0"-"4"; each question '
        f"carries {VQA_ANSWERS_PER_QUESTION} identical answers (VQAv2 format).",
    ]
    files = [
        "`images/{split}/{split}_{index:06d}.png`; image paths in annotations are relative to this folder.",
        "`annotations/caption_train.json` (one entry per caption), `caption_val.json`, `caption_test.json` (one "
        f"entry per image, {N_CAPTIONS} captions), `vqa_{{train,val,test}}.json`: BLIP's COCO-Karpathy and VQAv2 "
        "formats.",
        "`scenes_{split}.jsonl`: the scene graph of each image (shape, colour name, RGB, size, bbox x0 y0 x1 y1 with "
        "x1/y1 exclusive, centre, region).",
    ]
    lines = [
        "# Shapes: a synthetic image-text benchmark",
        "",
        f"Written by `python -m dlip data synth`, i.e. `dlip.data.shapes.{call}`.",
        f"Seed {seed}: the same seed gives identical annotation files and images. Each split has its own random "
        "streams derived from (seed, split), so `n_train` does not change val or test.",
        "",
        "| split | images | captions | questions |",
        "|---|---|---|---|",
        *rows,
        "",
        "## Rules",
        *(f"- {r}" for r in rules),
        "",
        "## Files",
        *(f"- {f}" for f in files),
    ]
    return "\n".join(lines) + "\n"
