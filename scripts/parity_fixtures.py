"""Writes test/parity/: what the Python side (training/dlip) computes for the micro fixture bundle, so the server's
tests can check that they compute the same: token ids, preprocessed pixels, embeddings, ITM logits, captions (greedy
and beam search) and VQA answers. Run by scripts/make-parity-fixtures.sh with training/.venv/bin/python.

Everything here goes through the Python reference for bundles, ``dlip.infer.ort_backend.OrtBackend`` (onnxruntime
on CPU) driven by the evaluation protocol (``dlip.infer.tasks``), with ``dlip.data.transforms.ImagePreprocess`` (PIL) for images and ``dlip.data.tokenizer.TextTokenizer``
for text. The images are drawn here (tiny, a few hundred bytes to a few KB) in every format and colour mode the
server takes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dlip.config import DataConfig
from dlip.data.annotations import pre_caption, pre_question
from dlip.infer import tasks
from dlip.infer.backend import tokenize, with_first_token
from dlip.infer.ort_backend import OrtBackend

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "test" / "fixtures" / "micro"
OUT = ROOT / "test" / "parity"
MAX_WORDS = DataConfig.max_words

TEXTS = [
    "a red circle left of a blue square",
    "A RED Circle, left of a Blue square!",
    "Héllo  wörld: naïve café",
    "two green triangles above one yellow star.",
    "",
    "   ",
    "日本語 text with 中文 characters",
    "supercalifragilisticexpialidocious",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp",
    "emoji 🙂 and symbols #@$%^&*()[]{}<>",
    "don't stop-believing; it's 3.14 o'clock",
    "zero\u200bwidth and control\u0007chars",
    "how many shapes are there?",
    "what color is the square?",
    " ".join(["circle"] * 60),  # longer than max_text_tokens: truncated, [SEP] kept last
]
QUESTIONS = ["what color is the circle?", "how many shapes are there?", "is there a triangle?",
             "What COLOR is the square: (the big one)!"]  # pre_question deletes . ! " ( ) * # : ; ~


def scene(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A small drawing with shapes, so resizing has edges to disagree about."""
    img = Image.new("RGB", size, (235, 235, 225))
    d = ImageDraw.Draw(img)
    w, h = size
    d.ellipse([w * 0.1, h * 0.15, w * 0.45, h * 0.6], fill=(210, 30, 40))
    d.rectangle([w * 0.55, h * 0.4, w * 0.9, h * 0.85], fill=(30, 60, 200))
    d.polygon([(w * 0.2, h * 0.9), (w * 0.35, h * 0.65), (w * 0.5, h * 0.9)], fill=(40, 170, 60))
    for x in range(0, w, 7):  # a few thin lines: high frequencies
        d.line([(x, 0), (x + h // 3, h)], fill=(250, 200, 20), width=1)
    return img.convert(mode) if mode != "RGB" else img


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def images() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    out["exact32.png"] = encode(scene((32, 32)), "PNG")  # no resize: sharp and PIL see identical pixels
    out["rgb.jpg"] = encode(scene((48, 40)), "JPEG", quality=95)
    rotated = scene((40, 56)).transpose(Image.Transpose.ROTATE_90)  # stored sideways, EXIF says rotate back
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    out["exif6.jpg"] = encode(rotated, "JPEG", quality=95, exif=exif.tobytes())
    rgba = scene((64, 48)).convert("RGBA")
    alpha = Image.new("L", rgba.size, 0)
    ImageDraw.Draw(alpha).ellipse([4, 4, 60, 44], fill=255)
    alpha.paste(128, (0, 0, 20, 48))
    rgba.putalpha(alpha)
    out["rgba.png"] = encode(rgba, "PNG")
    out["gray.png"] = encode(scene((50, 50), "L"), "PNG")
    la = scene((40, 40), "L").convert("LA")
    la.putalpha(Image.new("L", la.size, 200))
    out["gray_alpha.png"] = encode(la, "PNG")
    pal = scene((36, 36)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out["palette.gif"] = encode(pal, "GIF", transparency=0)
    out["lossless.webp"] = encode(scene((48, 48)), "WEBP", lossless=True)
    out["rgb.tiff"] = encode(scene((40, 30)), "TIFF")
    out["large.png"] = encode(scene((320, 200)), "PNG")  # 10x downscale: the filter's antialiasing matters
    try:
        out["rgb.avif"] = encode(scene((48, 48)), "AVIF", quality=90)
    except (KeyError, OSError, ValueError) as err:  # a Pillow built without AVIF
        print(f"skipping AVIF: {err}", file=sys.stderr)
    return out


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def main() -> None:
    model = OrtBackend(BUNDLE, threads=1)
    sp = model.special
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "images").mkdir(exist_ok=True)

    tok = [{"text": t, "ids": ids, "decoded": model.tokenizer.decode(ids)}
           for t in TEXTS for ids in [model.tokenizer([t], model.max_text_tokens)[0][0].tolist()]]

    # the evaluation's cleaning (pre_caption / pre_question) before the graphs; the raw texts are what the server is sent
    cleaned = [pre_caption(t, MAX_WORDS) for t in TEXTS[:4]]
    files = images()
    entries = []
    for name, data in files.items():
        (OUT / "images" / name).write_bytes(data)
        rgb = model.preprocess.to_rgb(Image.open(io.BytesIO(data)))
        size = (model.preprocess.image_size,) * 2
        resized = rgb if rgb.size == size else rgb.resize(size, resample=Image.Resampling.BICUBIC)
        rgb_u8 = np.asarray(resized, dtype=np.uint8)  # (S, S, 3): what the Python pipeline feeds before scaling
        pixels = model.preprocess(Image.open(io.BytesIO(data))).numpy()[None]  # (1, 3, S, S)
        embeds, feat = model.encode_images(pixels)
        greedy = tasks.caption_ids(model, embeds, model.max_caption_tokens, 1, min_tokens=1)[0]
        beam3 = tasks.caption_ids(model, embeds, model.max_caption_tokens, 3, min_tokens=1)[0]  # one row: per-row stop
        q_ids, q_mask = tokenize(model, [pre_question(q, MAX_WORDS) for q in QUESTIONS], model.max_text_tokens)
        answers = tasks.answer_ids(model, np.repeat(embeds, len(QUESTIONS), 0), q_ids, q_mask, model.max_answer_tokens)
        t_ids, t_mask, _ = tasks.encode_texts(model, cleaned, model.max_text_tokens)
        itm = tasks.itm_scores(model, np.repeat(embeds, 4, 0), with_first_token(t_ids, sp.enc), t_mask)
        entries.append({
            "file": f"images/{name}",
            "rgb_u8": b64(rgb_u8),
            "image_feat": feat[0].tolist(),
            "caption_greedy": {"ids": greedy, "text": model.tokenizer.decode(greedy)},
            "caption_beam3": {"ids": beam3, "text": model.tokenizer.decode(beam3)},
            "vqa": [{"question": q, "ids": a, "answer": model.tokenizer.decode(a)} for q, a in zip(QUESTIONS, answers)],
            "itm_texts": TEXTS[:4],
            "itm_match_logits": itm.tolist(),
        })
    _, _, text_feats = tasks.encode_texts(model, cleaned, model.max_text_tokens)
    expected = {
        "bundle": "test/fixtures/micro",
        "bundle_files": model.manifest["files"],  # the tests refuse a stale copy: regenerate after the bundle changes
        "tokenizer": tok,
        "text_feats": {"texts": TEXTS[:4], "feats": text_feats.tolist()},
        "images": entries,
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    digest = hashlib.sha256((OUT / "expected.json").read_bytes()).hexdigest()[:12]
    print(f"wrote {OUT} ({total} bytes, expected.json {digest})")


if __name__ == "__main__":
    main()
