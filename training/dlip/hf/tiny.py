"""Tiny random-weight Hugging Face BLIP checkpoints, saved as transformers saves real ones (``save_pretrained`` of
the model and its ``BlipProcessor``), for the tests of ``dlip export HF_DIR`` (seconds to build).

Their layout follows the Hub's BLIP checkpoints at a small scale: a lowercase BERT WordPiece vocabulary with
[PAD] [UNK] [CLS] [SEP] [MASK] first, [DEC] added as the bos token (no [ENC]: HF's BLIP tokenizers lack it), a text
vocabulary one row larger than the tokenizer (BLIP's [ENC] row), [SEP] as the end of generation, the image processor
at the vision model's size with BLIP's mean/std and bicubic resize. Every weight is random and distinct (HF's own
initialisation sets the vision tower near zero and LayerNorms to 1, which would hide a swapped weight).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .blip import ARCHITECTURES

WORDS = ("a", "an", "the", "picture", "photo", "of", "dog", "dogs", "cat", "cats", "car", "red", "blue", "green",
         "white", "black", "sitting", "on", "in", "grass", "street", "what", "color", "is", "are", "how", "many",
         "there", "two", "one", "yes", "no", "man", "woman", "holding", "and", "with", "?", ".", "##s", "##ing")
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def tiny_blip(architecture: str, out: str | Path, seed: int = 0, image_size: int = 32, hidden: int = 32,
              layers: int = 2) -> Path:
    """Builds and saves a random ``architecture`` checkpoint (an HF BLIP class name) with its processor in
    ``out``."""
    import transformers
    from transformers import BertTokenizer, BlipConfig, BlipImageProcessor, BlipProcessor

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown BLIP architecture {architecture!r} (known: {', '.join(ARCHITECTURES)})")
    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]")  # [DEC] = len(vocab)
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    sep, dec = vocab["[SEP]"], tokenizer.bos_token_id
    heads = max(1, hidden // 16)
    text = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=heads,
                vocab_size=len(tokenizer) + 1, max_position_embeddings=64, bos_token_id=dec, sep_token_id=sep,
                pad_token_id=vocab["[PAD]"], eos_token_id=sep)
    vision = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                  num_attention_heads=heads, image_size=image_size, patch_size=image_size // 4)
    config = BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=16)
    torch.manual_seed(seed)
    model = getattr(transformers, architecture)(config).eval()
    randomize_(model)
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@torch.no_grad()
def randomize_(model: torch.nn.Module) -> None:
    """Every weight random and distinct (tied weights stay tied): LayerNorm weights near 1, the rest N(0, 0.2^2)."""
    for name, p in model.named_parameters():
        is_norm_weight = "norm" in name.lower() and name.endswith("weight")
        p.copy_(1.0 + 0.1 * torch.randn_like(p) if is_norm_weight else 0.2 * torch.randn_like(p))
