"""ImagePreprocess: shapes, hand-computed normalisation, colour modes, EXIF orientation, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dlip.data.errors import DataError
from dlip.data.transforms import BLIP_MEAN, BLIP_STD, ImagePreprocess


def expected(rgb: tuple[int, int, int], mean=BLIP_MEAN, std=BLIP_STD) -> torch.Tensor:
    return torch.tensor([(v / 255 - m) / s for v, m, s in zip(rgb, mean, std)])


def test_shape_dtype_and_uniform_normalisation():
    pre = ImagePreprocess(16)
    x = pre(Image.new("RGB", (40, 23), (255, 128, 0)))
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    # (255/255 - 0.48145466) / 0.26862954 = 1.930336..., (128/255 - 0.4578275) / 0.26130258 = 0.168897...
    assert x[:, 5, 7].tolist() == pytest.approx([1.9303363, 0.1688972, -1.4802198], abs=1e-5)
    assert torch.allclose(x, expected((255, 128, 0)).view(3, 1, 1).expand(3, 16, 16), atol=1e-5)


def test_custom_mean_std_and_bilinear():
    pre = ImagePreprocess(4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resample="bilinear")
    x = pre(Image.new("RGB", (9, 9), (0, 255, 51)))
    assert torch.allclose(x, torch.tensor([-1.0, 1.0, -0.6]).view(3, 1, 1).expand(3, 4, 4), atol=1e-6)


def test_channels_are_rgb_order_and_spatial_layout_kept():
    img = Image.new("RGB", (8, 8), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 4, 8))  # left half red
    x = ImagePreprocess(8, mean=(0, 0, 0), std=(1, 1, 1))(img)
    assert x[0, :, :4].eq(1).all() and x[0, :, 4:].eq(0).all() and x[1:].eq(0).all()


def test_resize_matches_pil_bicubic():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    x = ImagePreprocess(8, mean=(0, 0, 0), std=(1, 1, 1))(img)
    ref = np.asarray(img.resize((8, 8), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    assert torch.allclose(x, torch.from_numpy(ref).permute(2, 0, 1))


def test_grayscale_replicated_to_rgb():
    x = ImagePreprocess(4, mean=(0, 0, 0), std=(1, 1, 1))(Image.new("L", (5, 5), 51))
    assert x.shape == (3, 4, 4) and torch.allclose(x, torch.full((3, 4, 4), 0.2))


def test_alpha_composited_over_white():
    pre = ImagePreprocess(4, mean=(0, 0, 0), std=(1, 1, 1))
    transparent = pre(Image.new("RGBA", (4, 4), (0, 0, 0, 0)))
    assert torch.allclose(transparent, torch.ones(3, 4, 4))  # fully transparent black -> white
    half = pre(Image.new("RGBA", (4, 4), (255, 0, 0, 128)))  # 128/255 red over white: G = B = 255 * 127/255 = 127
    assert half[:, 0, 0].tolist() == pytest.approx([1.0, 127 / 255, 127 / 255], abs=1.5 / 255)
    la = pre(Image.new("LA", (4, 4), (0, 0)))
    assert torch.allclose(la, torch.ones(3, 4, 4))


def test_palette_image_with_transparency():
    img = Image.new("P", (4, 4), 0)
    img.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    x = ImagePreprocess(4, mean=(0, 0, 0), std=(1, 1, 1))(img)
    assert x[:, 0, 0].tolist() == pytest.approx([10 / 255, 20 / 255, 30 / 255])
    img.info["transparency"] = 0
    assert torch.allclose(ImagePreprocess(4, mean=(0, 0, 0), std=(1, 1, 1))(img), torch.ones(3, 4, 4))


def test_exif_orientation_applied(tmp_path):
    # Stored pixels: 8 wide x 4 high, left half red, right half blue. Orientation 6 means "rotate 90 degrees
    # clockwise to display", so the upright image is 4 wide x 8 high with red on top.
    img = Image.new("RGB", (8, 4), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 4, 4))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    img.save(path, format="JPEG", exif=exif, quality=100)
    pre = ImagePreprocess(8, mean=(0, 0, 0), std=(1, 1, 1))
    upright = pre.to_rgb(Image.open(path))
    assert upright.size == (4, 8)
    x = pre(path)  # by path
    assert x[0, 1, 1] > 0.9 and x[2, 1, 1] < 0.1  # top: red
    assert x[2, 6, 1] > 0.9 and x[0, 6, 1] < 0.1  # bottom: blue
    no_exif = tmp_path / "plain.jpg"
    img.save(no_exif, format="JPEG", quality=100)
    y = pre(str(no_exif))
    assert y[0, 1, 1] > 0.9 and y[0, 1, 6] < 0.1  # not rotated: red on the left


def test_bad_files_raise_data_error(tmp_path):
    pre = ImagePreprocess(8)
    with pytest.raises(DataError, match=r"no such image file: .*missing\.png"):
        pre(tmp_path / "missing.png")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(DataError, match=r"junk\.jpg: not a readable image"):
        pre(junk)
    good = tmp_path / "good.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(DataError, match=r"truncated\.png: not a readable image"):
        pre(truncated)


def test_manifest_round_trip_and_validation():
    pre = ImagePreprocess(64, resample="bilinear")
    d = pre.to_dict()
    assert d == {
        "size": 64, "mean": list(BLIP_MEAN), "std": list(BLIP_STD), "resample": "bilinear",
        "alpha": "composite_white", "grayscale": "replicate", "exif": "apply",
    }
    assert ImagePreprocess.from_dict(d).to_dict() == d
    with pytest.raises(ValueError, match="unknown key 'crop'"):
        ImagePreprocess.from_dict({**d, "crop": "center"})
    with pytest.raises(ValueError, match="alpha='drop'"):
        ImagePreprocess.from_dict({**d, "alpha": "drop"})
    with pytest.raises(ValueError, match="resample must be one of"):
        ImagePreprocess(8, resample="nearest")
    with pytest.raises(ValueError, match="image_size"):
        ImagePreprocess(0)
    with pytest.raises(ValueError, match="std"):
        ImagePreprocess(8, std=(1, 0, 1))


def test_degrade_keeps_size_and_mode_and_changes_pixels_only_when_drawn():
    import random

    from dlip.data.transforms import Degrade

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    random.seed(0)
    never, always = Degrade(p=0.0), Degrade(p=1.0, min_size=16, blur=1.0, jpeg=(25, 30))
    assert never(img) is img
    outs = [always(img) for _ in range(20)]
    assert all(o.mode == "RGB" for o in outs)
    assert all(o.size[0] == o.size[1] and 16 <= o.size[0] <= 64 for o in outs)  # aspect ratio kept
    assert any(o.size[0] < 64 for o in outs)  # delivered smaller at least once in 20 draws
    assert all(not np.array_equal(np.asarray(o.resize((64, 64))), np.asarray(img)) for o in outs)
    # the preprocessing resizes a degraded image to the model's size as usual
    x = ImagePreprocess(32, augment=always)(img)
    assert x.shape == (3, 32, 32)


@pytest.mark.parametrize("kwargs, match", [({"p": 1.5}, "p must be"), ({"min_size": 4}, "min_size"),
                                           ({"blur": -1}, "blur"), ({"jpeg": (90, 20)}, "jpeg")])
def test_degrade_rejects_bad_settings(kwargs, match):
    from dlip.data.transforms import Degrade

    with pytest.raises(ValueError, match=match):
        Degrade(**kwargs)


def test_data_config_checks_lm_captions_and_augment_at_load():
    from dlip.config import DataConfig

    with pytest.raises(ValueError, match="lm_captions"):
        DataConfig(lm_captions="longest")
    with pytest.raises(ValueError, match="data.augment"):
        DataConfig(augment={"p": 0.5, "sharpen": 1})
    assert DataConfig(augment={"p": 0.5, "jpeg": [30, 90]}).augment["jpeg"] == [30, 90]
