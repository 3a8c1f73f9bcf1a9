"""The interface a runtime implements to be evaluated, and the model's text conventions, written once.

Arrays cross the interface as NumPy where they are small or the protocol reads them (token ids, masks, ITC features,
ITM logits, decoder logits). Token sequences a backend made and will read again (image tokens, question states) stay
in the backend's own arrays (``Tokens``: a NumPy array for onnxruntime, a tensor on the model's device for PyTorch):
the protocol only slices them (``x[a:b]``), takes ``len()``/``.shape``, and selects or joins them through
``Backend.take`` / ``Backend.cat``. The decoder's key/value cache is backend state behind ``DecoderCache``: the
protocol extends it one step at a time and reorders its rows for beam search, never reading it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..data.tokenizer import TextTokenizer
from ..data.transforms import ImagePreprocess

Tokens = Any  # (B, N, D) token states in the backend's own array type


class DecoderCache(Protocol):
    """The causal decoder over one batch of encoder states, with its cache of past keys/values and their mask."""

    def step(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Feeds T new tokens (B, T) with their mask (B, T) after the cached positions; returns logits (B, T, V)
        float32, and (for a cached decoder) extends the cache by T positions."""
        ...

    def reorder(self, rows: np.ndarray) -> None:
        """Keeps cache row ``rows[i]`` as row i (beam search: the beams that continue, duplicated as needed). The
        encoder states are not moved: ``rows[i]`` must be a beam of the same input as row i."""
        ...


class Backend(Protocol):
    tokenizer: TextTokenizer
    preprocess: ImagePreprocess  # image file -> (3, S, S), as the model was trained / the bundle's manifest says
    reads_image: bool  # model.vqa_decoder_reads_image: the answer decoder reads the image tokens too

    def encode_images(self, pixel_values: np.ndarray) -> tuple[Tokens, np.ndarray]:
        """(B, 3, S, S) -> image tokens (B, N, Dv) and L2-normalised ITC features (B, E)."""
        ...

    def encode_texts(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """[CLS] texts (B, L) -> L2-normalised ITC features (B, E)."""
        ...

    def itm_logits(self, image_embeds: Tokens, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Aligned (image tokens, [ENC] text) pairs -> (B, 2) [no match, match] logits."""
        ...

    def question_states(self, image_embeds: Tokens, input_ids: np.ndarray, attention_mask: np.ndarray) -> Tokens:
        """[ENC] question (B, Lq) with cross-attention over its image tokens -> question states (B, Lq, Dt)."""
        ...

    def decoder(self, encoder_hidden: Tokens, encoder_mask: np.ndarray | None, cached: bool = True) -> DecoderCache:
        """A decoder over ``encoder_hidden`` (B, M, D) (``encoder_mask`` (B, M); None: every position). With
        ``cached=False`` it keeps no cache: one pass over whole sequences (answer ranking)."""
        ...

    def take(self, x: Tokens, rows: np.ndarray) -> Tokens:
        """Rows ``rows`` of ``x`` (repeated or reordered)."""
        ...

    def cat(self, parts: list[Tokens], axis: int) -> Tokens:
        ...


# ------------------------------------------------------------------------------------------- text conventions
def with_first_token(ids: np.ndarray, token_id: int) -> np.ndarray:
    """BLIP swaps the tokenizer's [CLS] for [ENC] (image-grounded encoder: ITM, VQA questions) or [DEC] (decoder)."""
    out = ids.copy()
    out[:, 0] = token_id
    return out


def fusion_token(backend: Backend) -> int:
    """The first token of image-grounded encoder input (ITM, VQA questions): [ENC], or a bundle's own choice (an HF
    checkpoint's bundle keeps [CLS]: ``OrtBackend.fusion_token``)."""
    return getattr(backend, "fusion_token", backend.tokenizer.special.enc)


def tokenize(backend: Backend, texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """``[CLS] text [SEP]`` ids and mask (B, L) int64, padded to the longest, cut at ``max_tokens``."""
    ids, mask = backend.tokenizer(list(texts), max_tokens)
    return ids.numpy(), mask.numpy()


def answer_context(backend: Backend, image_embeds: Tokens, question_ids: np.ndarray,
                   question_mask: np.ndarray) -> tuple[Tokens, np.ndarray]:
    """What the VQA answer decoder cross-attends to, and its mask: the question states of the [ENC] question over
    its image, followed by the image tokens where the model's ``vqa_decoder_reads_image`` says so (cross-attention
    has no positions, so the order does not matter; padded question positions stay masked)."""
    states = backend.question_states(image_embeds, with_first_token(question_ids, fusion_token(backend)),
                                     question_mask)
    if not backend.reads_image:
        return states, question_mask
    ones = np.ones(image_embeds.shape[:2], dtype=question_mask.dtype)
    return backend.cat([states, image_embeds], axis=1), np.concatenate([question_mask, ones], axis=1)
