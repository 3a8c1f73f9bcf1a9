"""Renderer v2 of the Shapes benchmark: the scene graph drawn with what a real renderer varies, labels kept true.

v1 (``shapes.render``) paints flat colours with hard edges on a flat background. v2 draws the same scene graph with,
per image, values drawn uniformly from the ranges of a ``Variation``:

- anti-aliasing: each object's coverage is drawn at ``supersample`` times the canvas and box-filtered, so edge
  pixels blend object and background by the fraction of the pixel the shape covers;
- colour shades inside each colour name: the object's RGB (the scene graph's, its reference colour +- 15 per
  channel) times a shade factor, plus a linear ramp across the object (zero at its centre), so the hue of the
  name is kept and only the lightness moves;
- the background: the scene's colour plus a linear gradient across the canvas and a smooth texture (a coarse random
  grid upsampled bicubically), clipped to ``background_floor``-255 (every object colour has a channel below it);
- slight rotation: each polygon turned about its box centre by up to ``rotation_deg`` and scaled to fit its
  bounding box again, so the box, its centre (region, relations) and the size class stay the scene graph's; a
  circle is drawn as in v1;
- occluders (the hard split of ``data perturb``): thin light strokes across the image; a stroke that would hide
  more than ``occluder_max_cover`` of any object is drawn again elsewhere (up to 10 tries, then left out);
- blur, pixel noise and a JPEG round trip at the canvas side.

Every draw comes from the caller's generator, in a fixed order (``draw_plan``), so the same seed gives the same
pixels. ``compose(scene, plan)`` is deterministic; tests read the plan to check the labels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .shapes_scene import CANVAS, COLOR_JITTER, COLORS, SHAPES, Scene, ShapeObject

RENDERERS = ("v1", "v2")
_STAR_INNER_RATIO = 0.45  # as v1
_TEXTURE_GRID = 8  # the background texture: a random grid of this side, upsampled to the canvas


@dataclass(frozen=True)
class Variation:
    """Ranges a v2 render draws from (uniformly, per image or per object). Levels are on the 0-255 scale."""

    supersample: int = 4  # anti-aliasing: coverage drawn at this many times the canvas side
    rotation_deg: float = 10.0  # each polygon turned by up to +- this many degrees about its box centre
    shade: tuple[float, float] = (0.9, 1.1)  # each object's RGB times a factor in this range
    shade_ramp: float = 0.05  # plus a linear ramp across the object from -this to +this (0 at its centre)
    background_gradient: float = 20.0  # +- levels of a linear ramp across the canvas
    background_texture: float = 8.0  # +- levels of a smooth random texture
    background_floor: int = 170  # background channels are clipped to [floor, 255]
    occluders: tuple[int, int] = (0, 0)  # inclusive range of the number of strokes across the image
    occluder_width: tuple[float, float] = (4.0, 8.0)  # stroke width in px on the canvas
    occluder_max_cover: float = 0.3  # a stroke may hide at most this fraction of any object
    blur_sigma: tuple[float, float] = (0.0, 1.2)  # Gaussian blur sigma in px on the canvas
    jpeg_quality: tuple[int, int] | None = (40, 95)  # inclusive JPEG quality range of the round trip; None = none
    jpeg_probability: float = 0.5  # the chance an image gets the JPEG round trip

    def __post_init__(self) -> None:
        if self.supersample < 1:
            raise ValueError(f"Variation.supersample must be >= 1, got {self.supersample}")
        if not 0 <= self.rotation_deg <= 30:
            raise ValueError(f"Variation.rotation_deg must be in [0, 30] (shapes must stay recognisable), got "
                             f"{self.rotation_deg}")
        lo, hi = self.shade
        if not 0.7 <= lo <= hi <= 1.3 or not 0 <= self.shade_ramp <= 0.1:
            raise ValueError(f"Variation.shade {self.shade} with ramp {self.shade_ramp} leaves the colour names' "
                             "shade range: shade within [0.7, 1.3], ramp within [0, 0.1]")
        if self.background_floor > 200:
            raise ValueError(f"Variation.background_floor must be <= 200, got {self.background_floor}")


V2 = Variation()  # `data synth --renderer v2`: what a real renderer varies, moderate


@dataclass(frozen=True)
class ObjectPlan:
    angle_deg: float  # rotation about the box centre (0 for a circle)
    shade: float  # the RGB's factor at the object's centre
    ramp: tuple[float, float]  # the shade's change per box side along x and y (its centre stays at ``shade``)


@dataclass(frozen=True)
class Plan:
    """Every value one v2 image was drawn with."""

    objects: tuple[ObjectPlan, ...]
    background_ramp: tuple[float, float]  # levels per canvas side along x and y (0 at the canvas centre)
    texture: np.ndarray = field(repr=False, compare=False)  # (G, G) levels, upsampled to the canvas
    background_floor: float  # background channels clipped to [this, 255]
    occluders: tuple[tuple[float, float, float, float, float, int], ...]  # (x0, y0, x1, y1, width, grey level)
    blur_sigma: float
    jpeg_quality: int | None
    noise_sigma: float


def draw_plan(scene: Scene, rng: np.random.Generator, variation: Variation = V2, noise_sigma: float = 0.0) -> Plan:
    """Draws every random value of one image, in a fixed order (occluders are checked against the objects here)."""
    objects = []
    for obj in scene.objects:
        angle = 0.0 if obj.shape == "circle" else float(rng.uniform(-variation.rotation_deg, variation.rotation_deg))
        shade = float(rng.uniform(*variation.shade))
        direction = rng.uniform(0, 2 * math.pi)
        ramp = variation.shade_ramp * float(rng.uniform(0, 1))
        objects.append(ObjectPlan(angle, shade, (ramp * math.cos(direction), ramp * math.sin(direction))))
    direction = rng.uniform(0, 2 * math.pi)
    amount = variation.background_gradient * float(rng.uniform(0, 1))
    background_ramp = (amount * math.cos(direction), amount * math.sin(direction))
    texture = rng.uniform(-1, 1, size=(_TEXTURE_GRID, _TEXTURE_GRID)) * variation.background_texture
    occluders = _draw_occluders(scene, objects, rng, variation)
    blur = float(rng.uniform(*variation.blur_sigma))
    quality = None
    if variation.jpeg_quality is not None and rng.random() < variation.jpeg_probability:
        quality = int(rng.integers(variation.jpeg_quality[0], variation.jpeg_quality[1] + 1))
    return Plan(tuple(objects), background_ramp, texture, variation.background_floor, occluders, blur, quality,
                noise_sigma)


def render_v2(scene: Scene, rng: np.random.Generator, variation: Variation = V2,
              noise_sigma: float = 0.0) -> Image.Image:
    """The scene drawn by renderer v2 (module docstring), every variation drawn from ``rng``."""
    plan = draw_plan(scene, rng, variation, noise_sigma)
    return compose(scene, plan, variation.supersample, rng)


def compose(scene: Scene, plan: Plan, supersample: int = V2.supersample,
            noise_rng: np.random.Generator | None = None) -> Image.Image:
    """Draws ``scene`` with the values of ``plan`` (deterministic but for the pixel noise, drawn from ``noise_rng``
    last)."""
    canvas = _background(scene, plan)  # (H, W, 3) float
    ys, xs = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32) + 0.5  # pixel centres
    for obj, op in zip(scene.objects, plan.objects):
        x0, y0, x1, y1 = obj.bbox
        alpha = object_coverage(obj, op.angle_deg, supersample)[..., None]  # (side, side, 1)
        cx, cy = obj.center
        u = (xs[y0:y1, x0:x1] - cx) / obj.side  # (side, side), -0.5..0.5 across the box
        v = (ys[y0:y1, x0:x1] - cy) / obj.side
        factor = op.shade + op.ramp[0] * u + op.ramp[1] * v  # (side, side)
        color = np.clip(np.asarray(obj.rgb, dtype=np.float32) * factor[..., None], 0, 255)  # (side, side, 3)
        region = canvas[y0:y1, x0:x1]
        canvas[y0:y1, x0:x1] = region * (1 - alpha) + color * alpha
    for x0, y0, x1, y1, width, grey in plan.occluders:
        alpha = stroke_coverage((x0, y0, x1, y1), width, supersample)[..., None]  # (H, W, 1)
        canvas = canvas * (1 - alpha) + grey * alpha
    image = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mode="RGB")
    if plan.blur_sigma > 0:
        image = image.filter(ImageFilter.GaussianBlur(radius=plan.blur_sigma))
    if plan.noise_sigma > 0:
        if noise_rng is None:
            raise ValueError(f"compose: noise_sigma={plan.noise_sigma} needs a noise_rng")
        noise = noise_rng.standard_normal(size=(CANVAS, CANVAS, 1), dtype=np.float32) * plan.noise_sigma  # (H, W, 1)
        pixels = np.asarray(image, dtype=np.int16) + np.rint(noise).astype(np.int16)  # (H, W, 3)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    if plan.jpeg_quality is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=plan.jpeg_quality)
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image


# ---------------------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------------------


def _star() -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, _STAR_INNER_RATIO)
    return list(zip((radii * np.cos(angles)).tolist(), (radii * np.sin(angles)).tolist()))


_OUTLINES = {  # y down, any scale: fitted to the box after rotation
    "square": [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)],
    "triangle": [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)],
    "diamond": [(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)],
    "star": _star(),
}


def fitted_outline(shape: str, angle_deg: float) -> list[tuple[float, float]]:
    """The shape's outline turned by ``angle_deg`` and scaled and moved so its bounding box is centred in the unit
    box [0, 1]^2 and touches two opposite sides of it (as v1's shapes fill their box)."""
    if shape not in _OUTLINES:
        raise ValueError(f"no outline for shape '{shape}' (known: {', '.join(s for s in SHAPES if s != 'circle')})")
    pts = np.asarray(_OUTLINES[shape], dtype=np.float64)  # (P, 2)
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    turned = (pts - pts.mean(axis=0)) @ rot.T  # (P, 2)
    lo, hi = turned.min(axis=0), turned.max(axis=0)
    scale = 1.0 / float((hi - lo).max())
    fitted = (turned - (lo + hi) / 2) * scale + 0.5  # centred in the unit box
    return [(float(x), float(y)) for x, y in fitted]


def object_coverage(obj: ShapeObject, angle_deg: float, supersample: int = V2.supersample) -> np.ndarray:
    """(side, side) fraction in [0, 1] of each pixel of the object's box that its shape covers."""
    side = obj.side * supersample
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    if obj.shape == "circle":
        draw.ellipse((0, 0, side - 1, side - 1), fill=255)
    else:
        draw.polygon([(u * (side - 1), v * (side - 1)) for u, v in fitted_outline(obj.shape, angle_deg)], fill=255)
    if supersample > 1:
        mask = mask.resize((obj.side, obj.side), resample=Image.Resampling.BOX)
    return np.asarray(mask, dtype=np.float32) / 255


def stroke_coverage(line: tuple[float, float, float, float], width: float,
                    supersample: int = V2.supersample) -> np.ndarray:
    """(H, W) fraction of each canvas pixel that a straight stroke of ``width`` px from (x0, y0) to (x1, y1)
    covers."""
    s = supersample
    mask = Image.new("L", (CANVAS * s, CANVAS * s), 0)
    ImageDraw.Draw(mask).line([v * s for v in line], fill=255, width=max(1, round(width * s)))
    if s > 1:
        mask = mask.resize((CANVAS, CANVAS), resample=Image.Resampling.BOX)
    return np.asarray(mask, dtype=np.float32) / 255


def _background(scene: Scene, plan: Plan) -> np.ndarray:
    """(H, W, 3) float: the scene's colour, the ramp and the texture, clipped to [floor, 255]."""
    ys, xs = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32)
    ramp = plan.background_ramp[0] * (xs / CANVAS - 0.5) + plan.background_ramp[1] * (ys / CANVAS - 0.5)  # (H, W)
    texture = np.asarray(Image.fromarray(plan.texture.astype(np.float32), mode="F").resize(
        (CANVAS, CANVAS), resample=Image.Resampling.BICUBIC))  # (H, W)
    base = np.asarray(scene.background, dtype=np.float32)  # (3,)
    return np.clip(base + (ramp + texture)[..., None], plan.background_floor, 255)  # (H, W, 3)


def _draw_occluders(scene: Scene, objects: list[ObjectPlan], rng: np.random.Generator,
                    variation: Variation) -> tuple[tuple[float, float, float, float, float, int], ...]:
    lo, hi = variation.occluders
    n = int(rng.integers(lo, hi + 1)) if hi > 0 else 0
    coverages = [object_coverage(o, p.angle_deg, 2) for o, p in zip(scene.objects, objects)] if n else []
    out = []
    for _ in range(n):
        for _try in range(10):
            x0, x1 = rng.uniform(0, CANVAS, size=2)
            line = (float(x0), 0.0, float(x1), float(CANVAS)) if rng.random() < 0.5 else (
                0.0, float(x0), float(CANVAS), float(x1))
            width = float(rng.uniform(*variation.occluder_width))
            grey = int(rng.integers(185, 246))
            stroke = stroke_coverage(line, width, 2)
            if all(_hidden(stroke, o, c) <= variation.occluder_max_cover for o, c in zip(scene.objects, coverages)):
                out.append((*line, width, grey))
                break
    return tuple(out)


def _hidden(stroke: np.ndarray, obj: ShapeObject, coverage: np.ndarray) -> float:
    """The fraction of an object's coverage a stroke's coverage hides."""
    x0, y0, x1, y1 = obj.bbox
    return float((stroke[y0:y1, x0:x1] * coverage).sum() / coverage.sum())


def shade_range(color: str, variation: Variation = V2) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel range an object's pixel of colour ``color`` can take inside the object under ``variation``
    before blur, noise and JPEG: (reference +- jitter) times (the shade range widened by the ramp), clipped."""
    ref = np.asarray(COLORS[color], dtype=np.float64)
    lo_f = variation.shade[0] - variation.shade_ramp
    hi_f = variation.shade[1] + variation.shade_ramp
    lo = np.clip((ref - COLOR_JITTER) * lo_f, 0, 255)
    hi = np.clip((ref + COLOR_JITTER) * hi_f, 0, 255)
    return lo, hi
