"""The hard robustness split (``data perturb --preset hard``): Shapes scenes drawn again with changes that survive
the resize to the models' 64 px input, labels kept true.

The ``camera`` preset degrades a 256 px render (blur, noise, JPEG at 128-512 px), and the 4x shrink to 64 px
averages most of it away. Here every image is, in this order:

1. the scene graph drawn by renderer v2 (``dlip.data.render_v2``) with the ``HARD`` ranges: each polygon turned by
   up to 15 degrees about its box centre (and fitted to its box again), each object's colour shaded by a factor of
   0.85-1.15 plus a ramp of up to +-0.08 across it (the hue of its colour name kept), a background with a gradient of
   up to +-40 levels and a texture of up to +-20, and 2-5 light strokes 5-10 px wide across the image, each hiding
   at most 25% of any object;
2. shrunk to a side drawn from ``SIDES`` = 56, 64 or 80 px, i.e. about the models' input (box filter: the average
   of the pixels it covers);
3. blurred at that side (Gaussian sigma ``BLUR_SIGMA`` = 0.3-0.7 px, i.e. 1.2-2.8 px of the 256 px canvas);
4. sensor noise of sigma ``NOISE_SIGMA`` = 2-6 per pixel and channel at that side;
5. JPEG at quality ``JPEG_QUALITY`` = 25-50 at that side, so its 8 px blocks are blocks of the model's input.

Strengths come from the image's strengths stream and the noise from its noise stream
(``perturb.perturbation_rngs``), so the output depends on the seed only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from .render_v2 import Variation, compose, draw_plan
from .shapes_scene import Scene

HARD = Variation(
    rotation_deg=15.0, shade=(0.85, 1.15), shade_ramp=0.08, background_gradient=40.0, background_texture=20.0,
    background_floor=150, occluders=(2, 5), occluder_width=(5.0, 10.0), occluder_max_cover=0.25,
    blur_sigma=(0.0, 0.0), jpeg_quality=None,  # blur and JPEG come after the shrink (steps 3 and 5)
)
SIDES = (56, 64, 80)  # delivered side in px
BLUR_SIGMA = (0.3, 0.7)  # Gaussian sigma in px at the delivered side
NOISE_SIGMA = (2.0, 6.0)  # per pixel and channel, 0-255, at the delivered side
JPEG_QUALITY = (25, 50)  # inclusive

CARD_STEPS = [
    f"The scene graph drawn again by renderer v2 (`dlip.data.render_v2`) with the hard ranges: polygons turned by "
    f"up to {HARD.rotation_deg:g} degrees about their box centre and fitted to the box again; each object's colour "
    f"times {list(HARD.shade)} plus a ramp of up to +-{HARD.shade_ramp} across it; background gradient up to "
    f"+-{HARD.background_gradient:g} and texture up to +-{HARD.background_texture:g} levels, clipped to "
    f"[{HARD.background_floor}, 255]; {HARD.occluders[0]}-{HARD.occluders[1]} light strokes "
    f"{HARD.occluder_width[0]:g}-{HARD.occluder_width[1]:g} px wide, each hiding at most "
    f"{HARD.occluder_max_cover:.0%} of any object; anti-aliased ({HARD.supersample}x coverage).",
    f"Shrink: to a square side drawn from {list(SIDES)} px (box filter), about the models' input size.",
    f"Blur at that side: Gaussian sigma uniform in {list(BLUR_SIGMA)} px.",
    f"Sensor noise at that side: Gaussian per pixel and channel, sigma uniform in {list(NOISE_SIGMA)}.",
    f"JPEG at that side: quality uniform in {list(JPEG_QUALITY)}, 4:2:0.",
]


@dataclass(frozen=True)
class HardPerturbation:
    side: int
    blur_sigma: float
    noise_sigma: float
    jpeg_quality: int

    @staticmethod
    def draw(rng: np.random.Generator) -> HardPerturbation:
        return HardPerturbation(
            side=int(SIDES[int(rng.integers(len(SIDES)))]),
            blur_sigma=round(float(rng.uniform(*BLUR_SIGMA)), 3),
            noise_sigma=round(float(rng.uniform(*NOISE_SIGMA)), 3),
            jpeg_quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)),
        )


def render_hard(scene: Scene, strengths: np.random.Generator,
                noise: np.random.Generator) -> tuple[Image.Image, int, dict[str, Any]]:
    """Steps 1-4 of the module docstring; returns the image, its JPEG quality (step 5, applied on saving) and the
    drawn values (a line of ``perturbations_{split}.jsonl``)."""
    plan = draw_plan(scene, strengths, HARD)
    p = HardPerturbation.draw(strengths)
    image = compose(scene, plan, HARD.supersample)
    image = image.resize((p.side, p.side), resample=Image.Resampling.BOX)
    image = image.filter(ImageFilter.GaussianBlur(radius=p.blur_sigma))
    offsets = noise.standard_normal(size=(p.side, p.side, 3), dtype=np.float32) * p.noise_sigma  # (h, w, 3)
    pixels = np.asarray(image, dtype=np.int16) + np.rint(offsets).astype(np.int16)  # (h, w, 3)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    drawn = {
        "side": p.side, "blur_sigma": p.blur_sigma, "noise_sigma": p.noise_sigma, "jpeg_quality": p.jpeg_quality,
        "angles_deg": [round(o.angle_deg, 2) for o in plan.objects],
        "shades": [round(o.shade, 3) for o in plan.objects], "occluders": len(plan.occluders),
    }
    return image, p.jpeg_quality, drawn
