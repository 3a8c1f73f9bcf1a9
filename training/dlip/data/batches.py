"""Training batches: an image batch with its tokenised captions (ITC/ITM/LM) or questions and answers (VQA).

The collate functions tokenise, so text never reaches ``forward()`` and the model stays exportable. The objectives
(``dlip/objectives.py``) and the distillation step take these batches whole.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from .datasets import collate_vqa_train
from .tokenizer import TextTokenizer

_Batch = TypeVar("_Batch")


@dataclass
class CaptionBatch:
    pixel_values: Tensor  # (B, 3, H, W)
    input_ids: Tensor  # (B, L) starting with [CLS]
    attention_mask: Tensor  # (B, L)
    image_ids: Tensor  # (B,) source image of each caption
    # what the LM objective reads when it differs from the captions above (data.lm_captions "first"); None: the same
    lm_ids: Tensor | None = None  # (B, L') starting with [CLS]
    lm_mask: Tensor | None = None

    @property
    def decoder_ids(self) -> Tensor:
        return self.input_ids if self.lm_ids is None else self.lm_ids

    @property
    def decoder_mask(self) -> Tensor:
        return self.attention_mask if self.lm_mask is None else self.lm_mask

    def to(self, device: torch.device) -> CaptionBatch:
        return _to(self, device)


@dataclass
class VQABatch:
    pixel_values: Tensor  # (B, 3, H, W)
    question_ids: Tensor  # (B, Lq)
    question_mask: Tensor
    answer_ids: Tensor  # (sum n, La): every weighted answer of every question
    answer_mask: Tensor
    answer_weights: Tensor  # (sum n,)
    n_answers: Tensor  # (B,)

    def to(self, device: torch.device) -> VQABatch:
        return _to(self, device)


class CaptionCollate:
    def __init__(self, tokenizer: TextTokenizer, max_tokens: int):
        self.tokenizer, self.max_tokens = tokenizer, max_tokens

    def __call__(self, items: list[tuple[Tensor, str, int]] | list[tuple[Tensor, str, int, str]]) -> CaptionBatch:
        images, captions, image_ids, *lm = zip(*items)
        ids, mask = self.tokenizer(list(captions), self.max_tokens)
        lm_ids, lm_mask = self.tokenizer(list(lm[0]), self.max_tokens) if lm else (None, None)
        return CaptionBatch(torch.stack(images), ids, mask, torch.tensor(image_ids), lm_ids, lm_mask)


class VQACollate:
    def __init__(self, tokenizer: TextTokenizer, max_question_tokens: int, max_answer_tokens: int):
        self.tokenizer = tokenizer
        self.max_q, self.max_a = max_question_tokens, max_answer_tokens

    def __call__(self, items) -> VQABatch:
        images, questions, answers, weights, n = collate_vqa_train(items)
        q_ids, q_mask = self.tokenizer(list(questions), self.max_q)
        a_ids, a_mask = self.tokenizer(list(answers), self.max_a)
        return VQABatch(images, q_ids, q_mask, a_ids, a_mask, torch.as_tensor(weights, dtype=torch.float32),
                        torch.as_tensor(n, dtype=torch.long))


def _to(batch: _Batch, device: torch.device) -> _Batch:
    """The same batch with every tensor on ``device``."""
    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device)
                                         for f in dataclasses.fields(batch) if getattr(batch, f.name) is not None})
