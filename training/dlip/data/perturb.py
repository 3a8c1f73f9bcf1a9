"""The robustness splits of the Shapes benchmark: one split rendered again, labels kept true.

Two presets. ``hard`` (the default; ``dlip.data.perturb_hard``): the scene graphs drawn again with changes that
survive the models' 64 px input (rotation, colour shades, textured backgrounds, occluding strokes; then shrunk to
about 64 px, blurred, noised and JPEG-compressed at that size). ``camera`` (the split of REPORT.md's first
robustness table), described here: ``perturb(src, out, preset="camera")`` reads a Shapes image root written by
``dlip data synth`` with renderer v1 (``scenes_{split}.jsonl``, the annotations and the data card, which names the
seed and pixel noise of the render) and writes, for every image of the split, in this order:

1. the scene drawn again from its scene graph with anti-aliased edges (``render(..., supersample=4)``: drawn at 4x
   the 256 px canvas, each 4x4 block averaged), the same colours and background, and the same pixel noise as the
   original image (the same per-image noise stream, so pixels away from object edges are unchanged; every original
   is first checked to be exactly its scene rendered again, so a data card that does not match its images fails);
2. optical blur: a Gaussian of radius (sigma) ``BLUR_RADIUS`` = 0.3 to 1.0 px on the 256 px canvas;
3. a resize to a side drawn from ``SIDES`` = 128, 160, 192, 320, 384 or 512 px (never 256), square like the
   canvas, with PIL's bicubic filter (which antialiases when it shrinks). Not smaller: at 96 px a small object is
   10 px wide, and after 4:2:0 JPEG a small yellow star on a light background keeps about 5 chroma pixels and no
   recognisable shape;
4. sensor noise: independent Gaussian noise per pixel and channel of sigma ``NOISE_SIGMA`` = 2 to 8 (on 0-255) at
   the delivered size, rounded and clipped;
5. JPEG compression at quality ``JPEG_QUALITY`` = 15 to 40 (4:2:0 chroma subsampling, baseline), written as .jpg.

Every image draws its strengths uniformly (the side from the list) from its own stream
``SeedSequence([seed, split, index, PERTURB_STREAM])``, one child for the strengths and one for the sensor noise, so
the output depends on ``seed`` only, not on ``workers``. Labels stay true: nothing moves, flips, crops or recolours;
object sizes and positions keep their proportions (scene graph boxes are in 256 px canvas coordinates: multiply by
``side / 256``); colours change only by blur at edges, noise and JPEG.

Layout under ``out``: ``images/{split}/{image_id}.jpg``; ``annotations/caption_{split}.json`` and
``annotations/vqa_{split}.json`` with "image" pointing at the new files (every other field as in ``src``);
``scenes_{split}.jsonl`` with "image" likewise rewritten; ``perturbations_{split}.jsonl`` (one line per image: its
drawn strengths); ``README.md``: the data card.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from .perturb_hard import CARD_STEPS as HARD_STEPS
from .perturb_hard import HARD, render_hard
from .shapes import CANVAS, SPLITS, image_rngs, render
from .shapes_scene import Scene

PRESETS = ("hard", "camera")
SUPERSAMPLE = 4  # anti-aliasing: the scene is drawn at this many times the canvas side, then box-filtered
BLUR_RADIUS = (0.3, 1.0)  # Gaussian blur sigma in px on the 256 px canvas, drawn uniformly
SIDES = (128, 160, 192, 320, 384, 512)  # delivered image side in px, drawn uniformly
NOISE_SIGMA = (2.0, 8.0)  # sensor noise sigma on 0-255, per pixel and channel, at the delivered side, drawn uniformly
JPEG_QUALITY = (15, 40)  # inclusive range of the JPEG quality, drawn uniformly
RESAMPLE = "bicubic"  # the resize filter
PERTURB_STREAM = 0x70657274  # ("pert") enters each image's seed sequence, apart from the streams synth draws from
_SPLIT_CODE = {split: i for i, split in enumerate(SPLITS)}
_SYNTH_CALL = re.compile(r"seed=(\d+), noise_sigma=([0-9.]+)\)")  # in the data card written by synth
_JPEG_SUBSAMPLING = 2  # 4:2:0, what cameras and most encoders write (PIL's default, fixed here for stable bytes)


@dataclass(frozen=True)
class Perturbation:
    """The strengths one image gets (a line of ``perturbations_{split}.jsonl``, with its file names)."""

    blur_radius: float  # Gaussian sigma in px on the 256 px canvas; 0 = none
    side: int  # delivered side in px; CANVAS = no resize
    noise_sigma: float  # sensor noise sigma on 0-255 at the delivered side; 0 = none
    jpeg_quality: int  # 1-95

    @staticmethod
    def draw(rng: np.random.Generator) -> Perturbation:
        """Uniform draws over the ranges of the module docstring (floats rounded to 3 decimals, as recorded)."""
        return Perturbation(
            blur_radius=round(float(rng.uniform(*BLUR_RADIUS)), 3),
            side=int(SIDES[int(rng.integers(len(SIDES)))]),
            noise_sigma=round(float(rng.uniform(*NOISE_SIGMA)), 3),
            jpeg_quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)),
        )


def perturbation_rngs(seed: int, split: str, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The (strengths, sensor noise) generators of image ``index`` of ``split``."""
    root = np.random.SeedSequence([seed, _SPLIT_CODE[split], index, PERTURB_STREAM])
    strengths, noise = root.spawn(2)
    return np.random.default_rng(strengths), np.random.default_rng(noise)


def degrade(image: Image.Image, p: Perturbation, noise_rng: np.random.Generator | None) -> Image.Image:
    """Steps 2-4 of the module docstring (blur, resize, sensor noise) on a canvas-sized RGB image; JPEG is applied
    when the result is saved (``save_jpeg``)."""
    if p.blur_radius > 0:
        image = image.filter(ImageFilter.GaussianBlur(radius=p.blur_radius))
    if p.side != image.width or p.side != image.height:
        image = image.resize((p.side, p.side), resample=Image.Resampling.BICUBIC)
    if p.noise_sigma > 0:
        if noise_rng is None:
            raise ValueError(f"degrade: noise_sigma={p.noise_sigma} needs a noise_rng")
        noise = noise_rng.standard_normal(size=(p.side, p.side, 3), dtype=np.float32) * p.noise_sigma  # (H, W, 3)
        pixels = np.asarray(image, dtype=np.int16) + np.rint(noise).astype(np.int16)  # (H, W, 3)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    return image


def save_jpeg(image: Image.Image, path: str | Path, quality: int) -> None:
    image.save(path, format="JPEG", quality=quality, subsampling=_JPEG_SUBSAMPLING, optimize=False)


def source_render(src: Path) -> tuple[int, float]:
    """(seed, noise_sigma) of the ``synth`` call that wrote ``src``, read from its data card."""
    card = src / "README.md"
    if not card.is_file():
        raise ValueError(f"{card} not found: perturb needs the data card of `dlip data synth`, which names the seed "
                         "and pixel noise the images were rendered with")
    text = card.read_text()
    if 'renderer="' in text:
        raise ValueError(f"{card}: the source was drawn by another renderer than v1; the camera preset re-renders "
                         "its scenes with v1 to check them (use --preset hard, which draws the scene graphs itself)")
    found = _SYNTH_CALL.search(text)
    if found is None:
        raise ValueError(f"{card}: no synth call with seed=... and noise_sigma=... (not a data card of `dlip data "
                         "synth`?)")
    return int(found.group(1)), float(found.group(2))


# ---------------------------------------------------------------------------------------------------------------
# Writing the perturbed split
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    src: str
    out: str
    split: str
    seed: int  # perturbation seed
    source_seed: int  # seed of the synth call (its noise streams); camera preset only
    source_noise: float  # noise sigma of the synth call; camera preset only
    preset: str = "hard"


def _perturb_one(item: tuple[int, dict[str, Any]], job: _Job) -> dict[str, Any]:
    """Checks, re-renders, degrades and saves image ``index``; returns its line of ``perturbations_{split}.jsonl``."""
    index, record = item
    scene = Scene.from_dict(record)
    source_path = Path(job.src) / record["image"]
    if not source_path.is_file():
        raise ValueError(f"{job.src}/scenes_{job.split}.jsonl line {index + 1}: image file not found: {source_path}")
    rel = f"images/{job.split}/{source_path.stem}.jpg"
    if job.preset == "hard":
        image, quality, drawn = render_hard(scene, *perturbation_rngs(job.seed, job.split, index))
        save_jpeg(image, Path(job.out) / rel, quality)
        return {"image": rel, "source_image": record["image"], **drawn}
    with Image.open(source_path) as original:
        original_pixels = np.asarray(original.convert("RGB"))
    again = render(scene, image_rngs(job.source_seed, job.split, index)[2], job.source_noise)
    if not np.array_equal(np.asarray(again), original_pixels):
        raise ValueError(f"{source_path} is not its scene graph (line {index + 1} of scenes_{job.split}.jsonl) "
                         f"rendered again with seed {job.source_seed} and noise {job.source_noise} (from README.md): "
                         "the data card does not match the images")
    smooth = render(scene, image_rngs(job.source_seed, job.split, index)[2], job.source_noise, supersample=SUPERSAMPLE)
    strength_rng, noise_rng = perturbation_rngs(job.seed, job.split, index)
    p = Perturbation.draw(strength_rng)
    save_jpeg(degrade(smooth, p, noise_rng), Path(job.out) / rel, p.jpeg_quality)
    return {"image": rel, "source_image": record["image"], "supersample": SUPERSAMPLE, **asdict(p),
            "resample": RESAMPLE}


def perturb(
    src: str | Path,
    out: str | Path,
    seed: int = 0,
    split: str = "test",
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    preset: str = "hard",
) -> dict[str, int]:
    """Writes the perturbed ``split`` of the Shapes image root ``src`` under ``out`` (module docstring); returns
    counts ``{"images", "captions", "questions"}``."""
    src, out = Path(src), Path(out)
    if preset not in PRESETS:
        raise ValueError(f"perturb: preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if split not in SPLITS:
        raise ValueError(f"perturb: split must be one of {', '.join(SPLITS)}, got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"perturb: seed must be an integer >= 0, got {seed!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"perturb: workers must be an integer >= 1, got {workers!r}")
    scenes_path = src / f"scenes_{split}.jsonl"
    if not scenes_path.is_file():
        raise ValueError(f"{scenes_path} not found: perturb re-renders the scene graphs that `dlip data synth` writes")
    annotation_files = [f"annotations/caption_{split}.json", f"annotations/vqa_{split}.json"]
    for rel in annotation_files:
        if not (src / rel).is_file():
            raise ValueError(f"{src / rel} not found")
    source_seed, source_noise = source_render(src) if preset == "camera" else (0, 0.0)
    records = [json.loads(line) for line in scenes_path.read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{scenes_path} holds no scenes")
    _prepare_out(src, out, split, overwrite)

    job = _Job(str(src), str(out), split, seed, source_seed, source_noise, preset)
    pool = multiprocessing.Pool(workers) if workers > 1 else None
    try:
        work, items = partial(_perturb_one, job=job), enumerate(records)
        results = pool.imap(work, items, chunksize=8) if pool is not None else map(work, items)
        lines = list(tqdm(results, total=len(records), desc=f"perturb {split}", unit="img", disable=not progress))
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    new_path = {line["source_image"]: line["image"] for line in lines}
    counts = {"images": len(lines)}
    for rel in annotation_files:
        entries = _repoint(src / rel, new_path)
        (out / rel).write_text(json.dumps(entries))
        counts["captions" if "caption_" in rel else "questions"] = _count(entries, "caption" in rel)
    with open(out / f"scenes_{split}.jsonl", "w") as f:
        for record in records:
            f.write(json.dumps({**record, "image": new_path[record["image"]]}) + "\n")
    with open(out / f"perturbations_{split}.jsonl", "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    card = (_data_card(src, split, seed, source_seed, source_noise, counts, lines) if preset == "camera"
            else _hard_data_card(src, split, seed, counts, lines))
    (out / "README.md").write_text(card)
    return counts


def _prepare_out(src: Path, out: Path, split: str, overwrite: bool) -> None:
    """Refuses an ``out`` that is ``src`` (or holds it) or is not empty (unless ``overwrite`` and it is a perturbed
    set); clears the split's old images."""
    if out.resolve() == src.resolve() or out.resolve() in src.resolve().parents:
        raise ValueError(f"perturb: --out {out} would overwrite the source data {src}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"perturb: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"perturb: {out} exists and is not empty (pass --overwrite to replace it)")
        if not any(out.glob("perturbations_*.jsonl")):
            raise ValueError(f"perturb: {out} is not empty and holds no perturbations_*.jsonl, so it is not a "
                             "perturbed set this command wrote: refusing to replace it even with --overwrite")
        shutil.rmtree(out / "images" / split, ignore_errors=True)
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)


def _repoint(path: Path, new_path: dict[str, str]) -> list[dict[str, Any]]:
    """The entries of an annotation file with "image" replaced by the perturbed file; every other field kept."""
    entries = json.loads(path.read_text())
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "image" in e for e in entries):
        raise ValueError(f"{path}: expected a list of entries, each with an \"image\"")
    out = []
    for i, entry in enumerate(entries):
        if entry["image"] not in new_path:
            raise ValueError(f"{path}: entry {i}: image {entry['image']!r} has no scene in the scenes file")
        out.append({**entry, "image": new_path[entry["image"]]})
    return out


def _count(entries: list[dict[str, Any]], captions: bool) -> int:
    if not captions:
        return len(entries)
    return sum(len(e["caption"]) if isinstance(e["caption"], list) else 1 for e in entries)


def _data_card(src: Path, split: str, seed: int, source_seed: int, source_noise: float, counts: dict[str, int],
               lines: list[dict[str, Any]]) -> str:
    spread = partial(_spread, lines)
    steps = [
        f"Anti-aliased edges: each scene graph of `{src}/scenes_{split}.jsonl` drawn again at {SUPERSAMPLE}x the "
        f"{CANVAS} px canvas and box-filtered to {CANVAS} px, with the same colours, background and pixel noise as "
        f"the original image (synth seed {source_seed}, noise sigma {source_noise}); every original was checked to be "
        "exactly its scene rendered again.",
        f"Blur: Gaussian, radius (sigma) uniform in {list(BLUR_RADIUS)} px on the {CANVAS} px canvas.",
        f"Size: square, side drawn uniformly from {list(SIDES)} px, resized with PIL's {RESAMPLE} filter.",
        f"Sensor noise: Gaussian per pixel and channel, sigma uniform in {list(NOISE_SIGMA)} (0-255 scale), at the "
        "delivered size; rounded, clipped.",
        f"JPEG: quality uniform in {list(JPEG_QUALITY)} (integers), 4:2:0 chroma subsampling.",
    ]
    return _card_text(
        split, seed, counts, lines,
        title=f"Shapes, {split} split with camera and encoder perturbations",
        written_by=f"`{_perturb_command(src, split, seed)} --preset camera` (module `dlip.data.perturb`)",
        steps=steps,
        drawn=f"blur radius {spread('blur_radius')}, noise sigma {spread('noise_sigma')}, JPEG quality "
              f"{spread('jpeg_quality')}",
        labels="The labels stay true: nothing is moved, flipped, cropped or recoloured; colours change only by blur at "
               "edges, noise and JPEG. Scene graph boxes are in canvas coordinates: multiply by side / "
               f"{CANVAS} for the delivered image.",
        fields="supersample, blur_radius, side, noise_sigma, jpeg_quality, resample",
    )


def _hard_data_card(src: Path, split: str, seed: int, counts: dict[str, int], lines: list[dict[str, Any]]) -> str:
    spread = partial(_spread, lines)
    return _card_text(
        split, seed, counts, lines,
        title=f"Shapes, {split} split, hard preset: changes that survive the models' 64 px input",
        written_by=f"`{_perturb_command(src, split, seed)}` (preset hard, module `dlip.data.perturb_hard`)",
        steps=HARD_STEPS,
        drawn=f"blur sigma {spread('blur_sigma')}, noise sigma {spread('noise_sigma')}, JPEG quality "
              f"{spread('jpeg_quality')}, strokes per image {spread('occluders')}",
        labels="The labels stay true: every object keeps its bounding box (a turned polygon is fitted back into it), "
               "so its centre, region, relations and size class are the scene graph's; colours are shaded, never "
               f"renamed; strokes hide at most {HARD.occluder_max_cover:.0%} of any object. Scene graph boxes are in "
               f"{CANVAS} px canvas coordinates: multiply by side / {CANVAS} for the delivered image.",
        fields="side, blur_sigma, noise_sigma, jpeg_quality, angles_deg, shades (per object), occluders (strokes)",
    )


def _perturb_command(src: Path, split: str, seed: int) -> str:
    return f"python -m dlip data perturb --data {src} --out <this folder> --seed {seed} --split {split}"


def _spread(lines: list[dict[str, Any]], key: str) -> str:
    """'lowest to highest' of one drawn strength over the split."""
    return f"{min(line[key] for line in lines)} to {max(line[key] for line in lines)}"


def _card_text(split: str, seed: int, counts: dict[str, int], lines: list[dict[str, Any]], *, title: str,
               written_by: str, steps: list[str], drawn: str, labels: str, fields: str) -> str:
    """The data card (README.md) of either preset; the arguments are what the presets' cards say differently:
    ``drawn`` the spread of the strengths besides the sides, ``labels`` why the labels stay true and how to scale
    the scene graph boxes, ``fields`` the columns of ``perturbations_{split}.jsonl`` after image and
    source_image."""
    sides = Counter(line["side"] for line in lines)
    drawn_sides = "sides: " + ", ".join(f"{side} px x {sides[side]}" for side in sorted(sides))
    lines_md = [
        f"# {title}",
        "",
        f"Written by {written_by}.",
        f"Seed {seed}: each image draws its strengths from its own stream (seed, split, image index), so the same "
        "seed gives identical files whatever the number of workers.",
        "",
        f"{counts['images']} images, {counts['captions']} captions, {counts['questions']} questions: the captions, "
        "questions and answers are those of the source, unchanged.",
        "",
        "## Every image gets, in this order",
        *(f"{i}. {step}" for i, step in enumerate(steps, 1)),
        "",
        f"Drawn here: {drawn_sides}; {drawn}.",
        "",
        labels,
        "",
        "## Files",
        f"- `images/{split}/{{image_id}}.jpg`",
        f"- `annotations/caption_{split}.json`, `annotations/vqa_{split}.json`: as the source's, with \"image\" "
        "pointing at the files above; evaluate with `python -m dlip eval-bundle BUNDLE --data <this folder>`.",
        f"- `scenes_{split}.jsonl`: the source's scene graphs, \"image\" likewise.",
        f"- `perturbations_{split}.jsonl`: one line per image: image, source_image, {fields}.",
    ]
    return "\n".join(lines_md) + "\n"
