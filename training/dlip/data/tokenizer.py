"""BERT-style lowercase WordPiece tokenizer (Hugging Face ``tokenizers``), trained here or read from a BLIP checkpoint.

Everything that shapes token ids lives inside ``tokenizer.json`` (normalizer, pre-tokenizer, model, post-processor
``[CLS] $A [SEP]``, decoder), so the Node server that loads the same file produces the same ids. Padding and
truncation are applied at call time: pad to the longest sequence in the batch, truncate to ``max_length`` tokens
keeping ``[SEP]`` last.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import Tensor

from .errors import DataError

# BLIP's special tokens. Trained tokenizers get them first, in this order, so their ids are fixed: [PAD]=0 ... [DEC]=6.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[ENC]", "[DEC]")


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the special tokens. [ENC] replaces [CLS] for image-grounded encoding (ITM, VQA question); [DEC] starts
    decoder sequences (captions, VQA answers); [SEP] ends them."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int
    enc: int
    dec: int


def train_wordpiece(texts: Iterable[str], vocab_size: int = 1000, min_frequency: int = 1) -> Tokenizer:
    """Trains a lowercase BERT WordPiece tokenizer on ``texts`` with BLIP's special tokens at ids 0-6."""
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"train_wordpiece: vocab_size must be > {len(SPECIAL_TOKENS)} (specials), got {vocab_size}")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(len(SPECIAL_TOKENS))), f"special token ids moved: {dict(zip(SPECIAL_TOKENS, ids))}"
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids[2]), ("[SEP]", ids[3])],
    )
    return tok


class TextTokenizer:
    """Batch tokenization to padded tensors and decoding, over a ``tokenizers.Tokenizer``."""

    def __init__(self, tokenizer: Tokenizer, special: SpecialTokens | None = None):
        self.tokenizer = tokenizer
        # Padding and truncation are applied in __call__; settings saved in a checkpoint's file would fight them.
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        if special is None:  # our own tokenizer.json: find the specials by their names
            special = _special_by_name(tokenizer, dict(zip(_ROLES, SPECIAL_TOKENS)))
        self.special = special

    # ---- loading and saving -----------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TextTokenizer:
        """Reads a tokenizer.json written by ``save`` (specials found by name: [PAD], [UNK], ... [DEC])."""
        return cls(_read_tokenizer_json(path))

    @classmethod
    def from_pretrained_dir(cls, path: str | os.PathLike) -> TextTokenizer:
        """Reads the tokenizer of a Hugging Face BLIP checkpoint directory (``save_pretrained`` output).

        Its tokenizer.json is a BERT tokenizer with [DEC] as bos_token and [ENC] as the first additional special
        token. Token names come from special_tokens_map.json and tokenizer_config.json when present (the later file
        wins), else BERT's defaults; ids are then looked up in the tokenizer itself.

        Hugging Face's BLIP classes never use [ENC], so a checkpoint's tokenizer may lack it (the HF BLIP-base
        tokenizer has 30523 tokens: BERT's 30522 and [DEC]). Then [ENC] is added to the tokenizer as a special token
        with the next id, as BLIP's own ``init_tokenizer`` does ([DEC] 30522, [ENC] 30523, and the model's text
        embedding has 30524 rows): the vocabulary size, the tokenizer that ``save`` writes and a model sized from
        ``vocab_size`` then agree with the checkpoint's embeddings.
        """
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"no such checkpoint directory: {root}")
        tok = _read_tokenizer_json(root / "tokenizer.json")
        names = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]", "dec": "[DEC]"}
        extra: list[str] = []
        for fname in ("special_tokens_map.json", "tokenizer_config.json"):
            cfg = _read_json_object(root / fname)
            for role in names:
                key = "bos_token" if role == "dec" else f"{role}_token"
                if cfg.get(key) is not None:
                    names[role] = _token_text(cfg[key], root / fname, key)
            for key in ("additional_special_tokens", "extra_special_tokens"):  # transformers 4 / 5 names
                if isinstance(cfg.get(key), list) and cfg[key]:
                    extra = [_token_text(t, root / fname, key) for t in cfg[key]]
        names["enc"] = extra[0] if extra else "[ENC]"
        if not extra and tok.token_to_id("[ENC]") is None:
            return cls(tok, _special_without_enc(tok, names, where=str(root)))
        return cls(tok, _special_by_name(tok, names, where=str(root)))

    def save(self, path: str | os.PathLike) -> None:
        """Writes tokenizer.json (everything the server needs to reproduce the ids)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))

    # ---- encoding and decoding --------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def __call__(self, texts: Sequence[str], max_length: int) -> tuple[Tensor, Tensor]:
        """Encodes ``[CLS] text [SEP]`` per text -> (input_ids, attention_mask), both LongTensor (B, L).

        L is the longest encoding in the batch, capped at ``max_length``; longer encodings keep their first
        ``max_length - 1`` tokens and end with [SEP]; shorter ones are right-padded with [PAD] (mask 0).
        """
        if isinstance(texts, str):
            raise TypeError("TextTokenizer: pass a list of strings, not a single string")
        if max_length < 2:
            raise ValueError(f"TextTokenizer: max_length must be >= 2 (room for [CLS] and [SEP]), got {max_length}")
        seqs = [enc.ids for enc in self.tokenizer.encode_batch(list(texts))]
        seqs = [s if len(s) <= max_length else s[: max_length - 1] + [self.special.sep] for s in seqs]
        length = max((len(s) for s in seqs), default=0)
        input_ids = torch.full((len(seqs), length), self.special.pad, dtype=torch.long)  # (B, L)
        attention_mask = torch.zeros((len(seqs), length), dtype=torch.long)  # (B, L)
        for i, s in enumerate(seqs):
            input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            attention_mask[i, : len(s)] = 1
        return input_ids, attention_mask

    def decode(self, ids: Sequence[int] | Tensor, skip_special_tokens: bool = True) -> str:
        """Token ids -> text, WordPiece pieces joined ("a red circle"); special tokens dropped by default."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def batch_decode(self, ids: Sequence[Sequence[int]] | Tensor, skip_special_tokens: bool = True) -> list[str]:
        """Decodes each row of a (B, L) tensor or list of id lists."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return self.tokenizer.decode_batch([list(s) for s in ids], skip_special_tokens=skip_special_tokens)

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size}, special={self.special})"


# ---------------------------------------------------------------------------------------------------------------

_ROLES = ("pad", "unk", "cls", "sep", "mask", "enc", "dec")


def _special_by_name(tok: Tokenizer, names: dict[str, str], where: str = "tokenizer") -> SpecialTokens:
    ids = {}
    for role in _ROLES:
        token_id = tok.token_to_id(names[role])
        if token_id is None:
            raise DataError(f"{where}: special token {names[role]} ({role}) is not in the vocabulary")
        ids[role] = token_id
    return SpecialTokens(**ids)


def _special_without_enc(tok: Tokenizer, names: dict[str, str], where: str) -> SpecialTokens:
    """Adds [ENC] to a tokenizer that lacks it (in place) and returns the specials.

    BLIP adds [DEC] then [ENC], so [ENC]'s id is the one after [DEC]; a tokenizer whose last token is not [DEC] has
    some other layout, and guessing where [ENC] sits in its model's embedding would be wrong: refused.
    """
    dec = tok.token_to_id(names["dec"])
    if dec is None:
        raise DataError(f"{where}: special token {names['dec']} (dec) is not in the vocabulary")
    size = tok.get_vocab_size(with_added_tokens=True)
    if dec != size - 1:
        raise DataError(f"{where}: the tokenizer has no [ENC] and {names['dec']} (id {dec}) is not its last token "
                        f"(size {size}), so [ENC]'s id cannot be BLIP's (the one after [DEC])")
    tok.add_special_tokens([AddedToken("[ENC]", special=True, normalized=False)])
    assert tok.token_to_id("[ENC]") == dec + 1, "[ENC] did not get the id after [DEC]"
    return _special_by_name(tok, {**names, "enc": "[ENC]"}, where)


def _read_tokenizer_json(path: str | os.PathLike) -> Tokenizer:
    if not Path(path).is_file():
        raise DataError(f"no such tokenizer file: {path}")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # the Rust side raises plain Exception subclasses on bad files
        raise DataError(f"{path}: not a valid tokenizer.json ({err})") from None


def _read_json_object(path: Path) -> dict[str, Any]:
    """Reads an optional JSON object file; {} when absent."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _token_text(value: Any, path: Path, key: str) -> str:
    """A special token entry is a string or, in older files, an AddedToken dict with a "content" field."""
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    if isinstance(value, str):
        return value
    raise DataError(f'{path}: "{key}" must be a token string, got {type(value).__name__}')
