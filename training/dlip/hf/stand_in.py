"""Random-weight stand-ins for Hugging Face BLIP checkpoints, written by transformers itself (``save_pretrained`` of
the model and of a ``BlipProcessor``), to try and test the real-checkpoint path without downloading weights.

Each stand-in is laid out as Salesforce's checkpoints are: a BERT WordPiece tokenizer (BERT's special-token ids:
[PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103 at the "base" size) with [DEC] added as ``bos_token`` and no
[ENC], and a text embedding one row larger than the tokenizer (BLIP's [ENC] row). Every stand-in of one size shares
the same tokenizer, so several of them can teach one student. The weights are random: a stand-in measures speed and
memory and exercises the code, never quality.

Sizes: ``tiny`` (32 px images, width 32, 2 layers; seconds to build) and ``base`` (Salesforce/blip-*-base's config:
ViT-B/16 at 384 px, BERT-base with 12 heads, vocabulary 30524; about a minute and 0.9-1.4 GB each).
"""

from __future__ import annotations

from pathlib import Path

from .blip import CAPTIONING, RETRIEVAL, VQA

CLASSES = {"retrieval": RETRIEVAL, "captioning": CAPTIONING, "vqa": VQA}
SIZES = ("tiny", "base")

# real words, so that text tokenises into something other than [UNK] (the Shapes benchmark's vocabulary first)
WORDS = ("a an the of and is are there what color shape how many where which in on at to with it this that yes no "
         "red green blue yellow purple orange gray black white brown pink circle square triangle diamond star small "
         "large big left right top bottom center above below next picture photo image man woman person dog cat car "
         "two three four five one zero 0 1 2 3 4 5 6 7 8 9 ##s ##es ##ed ##ing").split()
BERT_BASE_SIZE = 30522


def stand_in_vocab(size: str) -> list[str]:
    """The WordPiece vocabulary, one token per id. ``base`` follows BERT-base's layout and size (30522 entries, the
    unused ones as [unusedN]); ``tiny`` is the special tokens and ``WORDS``."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = list(dict.fromkeys([*WORDS, *letters, *(f"##{c}" for c in letters)]))
    if size == "tiny":
        return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces]
    vocab = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces]
    return vocab + [f"[unused{i}]" for i in range(99, 99 + BERT_BASE_SIZE - len(vocab))]


def blip_config(size: str, vocab_size: int, bos_token_id: int, sep_token_id: int):
    from transformers import BlipConfig

    text = dict(vocab_size=vocab_size, bos_token_id=bos_token_id, sep_token_id=sep_token_id, pad_token_id=0)
    # BlipVisionConfig's initializer_range is 1e-10 (fine under pretrained weights): random vision weights that small
    # make every image token alike. BERT's 0.02 gives random features that differ from image to image.
    vision = dict(initializer_range=0.02)
    if size == "base":
        # transformers' defaults are BLIP-base's sizes but for the text heads: Salesforce's config.json has 12, the
        # BlipTextConfig default 8
        return BlipConfig(vision_config=vision, text_config=dict(text, num_attention_heads=12))
    text.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=40)
    vision.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    return BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=32)


def write_stand_in(out: str | Path, kind: str, size: str = "tiny", seed: int = 0) -> Path:
    """Writes a random-weight ``save_pretrained`` directory of the HF BLIP class ``kind`` (``CLASSES``) at ``size``
    (``SIZES``): model weights, config.json, tokenizer and image processor. Returns ``out``."""
    if kind not in CLASSES:
        raise ValueError(f"unknown checkpoint class {kind!r} (known: {', '.join(CLASSES)})")
    if size not in SIZES:
        raise ValueError(f"unknown stand-in size {size!r} (known: {', '.join(SIZES)})")
    import tempfile

    import torch
    import transformers

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(stand_in_vocab(size)) + "\n", encoding="utf-8")
        tokenizer = transformers.BertTokenizer.from_pretrained(tmp)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})  # as Salesforce's checkpoints: [DEC] added, [ENC] not
    cfg = blip_config(size, len(tokenizer) + 1, tokenizer.bos_token_id, tokenizer.sep_token_id)
    side = cfg.vision_config.image_size
    torch.manual_seed(seed)
    model = getattr(transformers, CLASSES[kind])(cfg).eval()
    model.save_pretrained(out)
    # the image processor of Salesforce's checkpoints (bicubic, CLIP's mean and std) at the model's input size
    image_processor = transformers.BlipImageProcessorPil(size={"height": side, "width": side})
    transformers.BlipProcessor(image_processor, tokenizer).save_pretrained(out)
    return out
