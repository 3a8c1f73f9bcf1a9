"""Deterministic image preprocessing (no torchvision), described by a manifest dict the inference server mirrors,
and one optional train-time augmentation (``Degrade``) that keeps every label true.

There are no flips or crops: the synthetic Shapes data has left/right semantics and regions, so a flip or a crop
would change the true caption.
"""

from __future__ import annotations

import io
import os
import random
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError
from torch import Tensor

from .errors import DataError

BLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # BLIP / CLIP RGB mean (on [0, 1] values)
BLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_MANIFEST_KEYS = {"size", "mean", "std", "resample", "alpha", "grayscale", "exif"}
_FIXED = {"alpha": "composite_white", "grayscale": "replicate", "exif": "apply"}  # steps with no options


class ImagePreprocess:
    """PIL image or image path -> normalised float32 tensor (3, image_size, image_size), in this order:

    1. ``exif="apply"``: apply the EXIF orientation tag (``PIL.ImageOps.exif_transpose``), so the pixels are upright
       as a viewer shows them; the tag is then dropped.
    2. Colour to 8-bit RGB. ``alpha="composite_white"``: images with an alpha channel (RGBA, LA, palette with
       transparency) are composited over opaque white: ``out = a * c + (1 - a) * 255`` per channel, in 8 bits.
       ``grayscale="replicate"``: one gray channel is copied to R, G and B; palette images are expanded.
    3. Resize to exactly (image_size, image_size), ignoring the aspect ratio, with PIL's ``bicubic`` (default) or
       ``bilinear`` filter, which antialiases when downscaling. This matches BLIP's eval transform
       ``Resize((S, S), BICUBIC)``.
    4. Scale to float in [0, 1] (``x / 255``), channels first (3, H, W), RGB order.
    5. Normalise per channel: ``(x - mean[c]) / std[c]``.

    ``to_dict()`` gives this description for the model bundle manifest; ``from_dict`` reads it back.
    """

    def __init__(
        self,
        image_size: int,
        mean: tuple[float, float, float] = BLIP_MEAN,
        std: tuple[float, float, float] = BLIP_STD,
        resample: str = "bicubic",
        augment: Degrade | None = None,
    ):
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"ImagePreprocess: image_size must be a positive integer, got {image_size!r}")
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"ImagePreprocess: mean and std need 3 values (RGB), got mean={mean} std={std}")
        if any(s <= 0 for s in std):
            raise ValueError(f"ImagePreprocess: std values must be positive, got {tuple(std)}")
        if resample not in _RESAMPLE:
            raise ValueError(f"ImagePreprocess: resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
        self.image_size = image_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.resample = resample
        self.augment = augment  # train-time only; not part of the manifest (serving never augments)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)  # (3, 1, 1) broadcasts over H, W
        self._std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Image.Image | str | os.PathLike) -> Tensor:
        if isinstance(image, (str, os.PathLike)):
            return self._from_path(image)
        if not isinstance(image, Image.Image):
            raise TypeError(f"ImagePreprocess: expected a PIL image or a path, got {type(image).__name__}")
        return self._process(image)

    def to_rgb(self, image: Image.Image) -> Image.Image:
        """Steps 1-2 (orientation, colour); useful for showing exactly what the model sees, before resizing."""
        image = ImageOps.exif_transpose(image)
        if _has_alpha(image):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")

    def to_dict(self) -> dict[str, Any]:
        """The manifest description of these steps (JSON-ready)."""
        return {
            "size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resample": self.resample,
            **_FIXED,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePreprocess:
        """Inverse of ``to_dict``; rejects unknown keys and fixed steps this code does not implement."""
        unknown = sorted(set(data) - _MANIFEST_KEYS)
        if unknown:
            known = ", ".join(sorted(_MANIFEST_KEYS))
            raise ValueError(f"preprocess manifest: unknown key '{unknown[0]}' (known: {known})")
        for key, value in _FIXED.items():
            if data.get(key, value) != value:
                raise ValueError(f"preprocess manifest: {key}={data[key]!r} is not supported (only {value!r})")
        if "size" not in data:
            raise ValueError("preprocess manifest: missing key 'size'")
        return cls(
            data["size"],
            tuple(data.get("mean", BLIP_MEAN)),
            tuple(data.get("std", BLIP_STD)),
            data.get("resample", "bicubic"),
        )

    def __repr__(self) -> str:
        return (
            f"ImagePreprocess(image_size={self.image_size}, mean={self.mean}, std={self.std}, "
            f"resample={self.resample!r})"
        )

    # -----------------------------------------------------------------------------------------------------------

    def _from_path(self, path: str | os.PathLike) -> Tensor:
        if not os.path.isfile(path):
            raise DataError(f"no such image file: {path}")
        try:
            with Image.open(path) as image:
                image.load()  # decode now, inside the try: truncated files fail here, not later
                return self._process(image)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            # SyntaxError / ValueError: some PIL plugins raise these on malformed headers
            raise DataError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None

    def _process(self, image: Image.Image) -> Tensor:
        rgb = self.to_rgb(image)
        if self.augment is not None:
            rgb = self.augment(rgb)
        size = (self.image_size, self.image_size)
        if rgb.size != size:
            rgb = rgb.resize(size, resample=_RESAMPLE[self.resample])
        x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0)  # (H, W, 3) in [0, 1]
        x = x.permute(2, 0, 1)  # (3, H, W)
        return ((x - self._mean) / self._std).contiguous()


class Degrade:
    """Train-time degradation of an RGB image, labels unchanged: with probability ``p`` the picture is delivered as a
    camera, a thumbnailer or an encoder would: scaled to a random side in [``min_size``, its own side] (bicubic; the
    aspect ratio kept), blurred with a Gaussian of sigma up to ``blur`` px at that size, and JPEG-compressed at a
    quality drawn from ``jpeg`` (inclusive) with probability 1/2. The preprocessing then resizes it to the model's
    size as usual. Random draws use Python's ``random`` (DataLoader workers seed it per worker)."""

    def __init__(self, p: float = 0.5, min_size: int = 48, blur: float = 1.0, jpeg: tuple[int, int] = (25, 95)):
        if not 0 <= p <= 1:
            raise ValueError(f"data.augment.p must be in [0, 1], got {p!r}")
        if min_size < 8:
            raise ValueError(f"data.augment.min_size must be >= 8, got {min_size!r}")
        if blur < 0:
            raise ValueError(f"data.augment.blur must be >= 0, got {blur!r}")
        if not (len(jpeg) == 2 and 1 <= jpeg[0] <= jpeg[1] <= 100):
            raise ValueError(f"data.augment.jpeg must be [low, high] qualities in 1..100, got {jpeg!r}")
        self.p, self.min_size, self.blur, self.jpeg = float(p), int(min_size), float(blur), (int(jpeg[0]), int(jpeg[1]))

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        w, h = image.size
        side = max(w, h)
        target = random.randint(min(self.min_size, side), side)
        if target < side:
            image = image.resize((max(1, round(w * target / side)), max(1, round(h * target / side))),
                                 resample=Image.Resampling.BICUBIC)
        sigma = random.uniform(0.0, self.blur)
        if sigma > 0.05:
            image = image.filter(ImageFilter.GaussianBlur(sigma))
        if random.random() < 0.5:
            buf = io.BytesIO()
            image.save(buf, format="JPEG", quality=random.randint(*self.jpeg))
            buf.seek(0)
            with Image.open(buf) as decoded:
                image = decoded.convert("RGB")
        return image

    def __repr__(self) -> str:
        return f"Degrade(p={self.p}, min_size={self.min_size}, blur={self.blur}, jpeg={self.jpeg})"


def _has_alpha(image: Image.Image) -> bool:
    """True for modes with an alpha band and for palette / gray images that declare a transparent colour."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
