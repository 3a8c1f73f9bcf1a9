"""The full-size benchmark's bundles: a teacher at BLIP-base sizes and the DLIP student at the paper's scale, random
weights, written by the project's exporter (``write_bundle``, with int8 graphs). Random weights measure speed and
memory only: every table marks them so.

    training/.venv/bin/python bench/full_bundles.py OUT_DIR [--only teacher|student] [--overwrite] [--fp16]

writes OUT_DIR/teacher and OUT_DIR/student (skipping a bundle that is already there unless --overwrite). Sizes:

- teacher (BLIP-base): ViT-B/16 at 384 px (12 layers of 768, MLP 3072); BERT-base text encoder and decoder (12 layers
  of 768, FFN 3072, 512 positions); vocabulary 30524 (BERT's 30522 + [DEC] + [ENC]).
- student (DLIP, ViT-S/16 + a small BERT): ViT-S/16 at 384 px (12 layers of 384, 6 heads, MLP 1536); text encoder
  and decoder of 6 layers of 384 (6 heads, FFN 1536). Its text width equals its vision width: the bundle's decoder
  cross-attends to image tokens and question states with the same weights (FORMAT.md).

A preset of training/dlip/presets.json is used instead of the explicit sizes below when it exists (``--teacher-preset
blip-base`` / ``--student-preset student-vit-s16``: the same sizes). The tokenizer is the exporter's built-in WordPiece (trained on Shapes-like sentences) whose
vocabulary is filled up to 30524 entries with unused tokens, so that the embeddings, the LM head and every decoder
step's logits have BLIP-base's sizes; the fillers are never produced by tokenising text.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))

import torch
from tokenizers import Tokenizer

from dlip.config import (
    ModelConfig,
    TextConfig,
    VisionConfig,
    load_presets,
    model_preset,
)
from dlip.data.tokenizer import TextTokenizer, train_wordpiece
from dlip.export.export import builtin_corpus, write_bundle
from dlip.model.med import BlipMED

VOCAB = 30524  # BLIP-base: BERT's 30522 + [DEC] + [ENC]
POSITIONS = 512  # BERT-base


def _bert(width: int, layers: int, heads: int) -> TextConfig:
    return TextConfig(hidden_size=width, num_layers=layers, num_heads=heads, intermediate_size=4 * width,
                      max_position_embeddings=POSITIONS)


# explicit sizes (used when the named preset is not in presets.json)
SIZES = {
    "teacher": ModelConfig(
        vision=VisionConfig(image_size=384, patch_size=16, hidden_size=768, num_layers=12, num_heads=12,
                            intermediate_size=3072),
        text=_bert(768, 12, 12), decoder=_bert(768, 12, 12), embed_dim=256),
    "student": ModelConfig(
        vision=VisionConfig(image_size=384, patch_size=16, hidden_size=384, num_layers=12, num_heads=6,
                            intermediate_size=1536),
        text=_bert(384, 6, 6), decoder=_bert(384, 6, 6), embed_dim=256),
}


def padded_tokenizer(size: int) -> TextTokenizer:
    """The built-in WordPiece tokenizer with its vocabulary filled to ``size`` entries by ``[unusedN]`` tokens."""
    small = json.loads(train_wordpiece(builtin_corpus(), vocab_size=300).to_str())
    vocab: dict[str, int] = small["model"]["vocab"]
    for i in range(size - len(vocab)):
        vocab[f"[unused{i}]"] = len(vocab)
    tok = TextTokenizer(Tokenizer.from_str(json.dumps(small)))
    assert tok.vocab_size == size, tok.vocab_size
    return tok


def model_config(role: str, preset: str | None) -> tuple[ModelConfig, str]:
    if preset and preset in load_presets():
        return model_preset(preset), f"preset {preset}"
    return SIZES[role], "explicit sizes (bench/full_bundles.py)"


def export(role: str, out: Path, preset: str | None, overwrite: bool, fp16: bool) -> None:
    target = out / role
    if (target / "manifest.json").is_file() and not overwrite:
        print(f"{target}: already there (pass --overwrite to write it again)")
        return
    tok = padded_tokenizer(VOCAB)
    cfg, how = model_config(role, preset)
    cfg = cfg.with_vocab(tok.vocab_size, tok.special.pad)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = BlipMED(cfg).eval()
    n = sum(p.numel() for p in model.parameters())
    print(f"{role}: {how}, {n / 1e6:.1f}M parameters, exporting to {target} (fp32 + int8{' + fp16' if fp16 else ''}) "
          "...", flush=True)
    source = {"run": None, "checkpoint_sha256": None, "random_init": True, "preset": preset if "preset" in how else None,
              "seed": 0, "sizes": dataclasses.asdict(cfg) if "explicit" in how else None,
              "made_by": "bench/full_bundles.py (the full-size benchmark; random weights: speed and memory only)"}
    extra = {"fp16": True} if fp16 else {}  # fp16 graphs (bench/gpu.ts) only when asked
    write_bundle(model, tok, target, name=f"blip-base-{role}-random" if role == "teacher" else "dlip-student-random",
                 version="1", source=source, metrics={}, max_text_tokens=35, max_answer_tokens=10,
                 max_caption_tokens=20, int8=True, weights=False, overwrite=overwrite, progress=False, **extra)
    size = sum(p.stat().st_size for p in target.iterdir())
    print(f"{role}: wrote {target} ({size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write teacher/ and student/ into (git-ignored, e.g. data/)")
    ap.add_argument("--only", choices=("teacher", "student"))
    ap.add_argument("--teacher-preset", default="blip-base", help="preset to use when presets.json has it")
    ap.add_argument("--student-preset", default="student-vit-s16",
                    help="preset to use when presets.json has it")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--fp16", action="store_true", help="also write float16 graphs for GPUs (bench/gpu.ts)")
    args = ap.parse_args()
    if args.fp16 and "fp16" not in inspect.signature(write_bundle).parameters:
        sys.exit("--fp16: this exporter writes no fp16 graphs (write_bundle has no fp16 option)")
    torch.set_num_threads(2)
    for role in ("student", "teacher"):
        if args.only in (None, role):
            export(role, args.out, args.teacher_preset if role == "teacher" else args.student_preset, args.overwrite,
                   args.fp16)


if __name__ == "__main__":
    main()
