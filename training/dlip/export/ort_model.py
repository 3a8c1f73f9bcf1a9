"""A model bundle run by onnxruntime on CPU: image and text encoding, ITM, captions and VQA answers (greedy or beam
search over the cached decoder step). The reference for what the server does with a bundle, and what
``evaluate_bundle`` scores. Arrays in, arrays / ids / strings out, NumPy only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from ..data.tokenizer import TextTokenizer
from ..data.transforms import ImagePreprocess
from . import decoding
from .contract import DECODER, GRAPHS, ITM, TEXT, VISION, VQA_ENCODER, ModelDims, graph_specs, present_names
from .manifest import read_manifest, validate_bundle


def _batches(n: int, size: int, desc: str, progress: bool):
    return tqdm(range(0, n, size), desc=desc, disable=not progress, dynamic_ncols=True, leave=False)


class BundleModel:
    """Loads (and by default validates) a bundle directory and opens one onnxruntime session per graph.

    ``int8`` selects the ``*.int8.onnx`` variants (an error when the bundle has none); ``threads`` is onnxruntime's
    intra-op thread count per session.
    """

    def __init__(self, path: str | os.PathLike, int8: bool = False, threads: int = 1, validate: bool = True):
        self.path = Path(path)
        self.manifest: dict[str, Any] = validate_bundle(self.path) if validate else read_manifest(self.path)
        self.dims = ModelDims.from_manifest(self.manifest)
        self.reads_image = bool(self.manifest["model"].get("vqa_decoder_reads_image", False))
        tok = self.manifest["tokenizer"]
        self.tokenizer = TextTokenizer.from_file(self.path / tok["file"])
        special = {k: getattr(self.tokenizer.special, k) for k in tok["special_tokens"]}
        if special != tok["special_tokens"]:
            raise ValueError(f"{self.path / tok['file']}: special token ids {special} differ from the manifest's "
                             f"{tok['special_tokens']}")
        self.special = self.tokenizer.special
        self.max_text_tokens = tok["max_text_tokens"]
        self.max_answer_tokens = tok["max_answer_tokens"]
        self.max_caption_tokens = tok["max_caption_tokens"]
        pre = self.manifest["preprocessing"]
        self.preprocess = ImagePreprocess(pre["image_size"], tuple(pre["mean"]), tuple(pre["std"]), pre["resample"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sessions: dict[str, ort.InferenceSession] = {}
        for graph in GRAPHS:
            entry = self.manifest["graphs"][graph]
            if int8 and "int8" not in entry:
                raise ValueError(f"{self.path}: graph '{graph}' has no int8 variant (export with --int8)")
            file = entry["int8"]["file"] if int8 else entry["file"]
            self.sessions[graph] = ort.InferenceSession(str(self.path / file), opts,
                                                        providers=["CPUExecutionProvider"])
        self._specs = graph_specs(self.dims)

    def run(self, graph: str, *inputs: np.ndarray) -> list[np.ndarray]:
        """Runs ``graph`` on its inputs in the contract's order; returns its outputs in the contract's order."""
        spec = self._specs[graph]
        feeds = {t.name: np.ascontiguousarray(x, dtype=np.float32 if t.dtype == "float32" else np.int64)
                 for t, x in zip(spec.inputs, inputs, strict=True)}
        return self.sessions[graph].run(spec.output_names, feeds)

    # ------------------------------------------------------------------------------------------- encoders
    def load_images(self, paths: Sequence[str | os.PathLike], progress: bool = False) -> np.ndarray:
        """Image files -> (N, 3, S, S) float32, preprocessed as the manifest says."""
        return np.stack([self.preprocess(p).numpy() for p in tqdm(paths, desc="load images", disable=not progress,
                                                                    leave=False)])

    def tokenize(self, texts: Sequence[str], max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``[CLS] text [SEP]`` ids and mask (B, L) int64, padded to the longest, cut at ``max_tokens``."""
        ids, mask = self.tokenizer(list(texts), max_tokens or self.max_text_tokens)
        return ids.numpy(), mask.numpy()

    def encode_images(self, pixel_values: np.ndarray, batch_size: int = 64,
                      progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, S, S) -> image_embeds (N, T, Dv) and L2-normalised image_feat (N, E)."""
        embeds, feats = [], []
        for s in _batches(len(pixel_values), batch_size, "encode images", progress):
            e, f = self.run(VISION, pixel_values[s:s + batch_size])
            embeds.append(e)
            feats.append(f)
        return np.concatenate(embeds), np.concatenate(feats)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Texts -> ids, mask (N, L) and L2-normalised text_feat (N, E)."""
        ids, mask = self.tokenize(texts)
        feats = [self.run(TEXT, ids[s:s + batch_size], mask[s:s + batch_size])[0]
                 for s in _batches(len(texts), batch_size, "encode texts", progress)]
        return ids, mask, np.concatenate(feats)

    def itm_logits(self, image_embeds: np.ndarray, enc_ids: np.ndarray, mask: np.ndarray,
                   batch_size: int = 256) -> np.ndarray:
        """(P, 2) [no match, match] logits for P aligned (image tokens, [ENC] text) pairs."""
        return np.concatenate([self.run(ITM, image_embeds[s:s + batch_size], enc_ids[s:s + batch_size],
                                        mask[s:s + batch_size])[0] for s in range(0, len(enc_ids), batch_size)])

    def question_states(self, image_embeds: np.ndarray, enc_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """[ENC] question (B, Lq) over its image tokens -> question_states (B, Lq, Dt)."""
        return self.run(VQA_ENCODER, image_embeds, enc_ids, mask)[0]

    def answer_context(self, states: np.ndarray, mask: np.ndarray,
                       image_embeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the answer decoder reads: the question states, followed by the image tokens where the manifest's
        ``model.vqa_decoder_reads_image`` (format 2) says so; and its mask."""
        if not self.reads_image:
            return states, mask
        ones = np.ones(image_embeds.shape[:2], dtype=mask.dtype)
        return np.concatenate([states, image_embeds], axis=1), np.concatenate([mask, ones], axis=1)

    def with_first_token(self, ids: np.ndarray, token_id: int) -> np.ndarray:
        """BLIP swaps [CLS] for [ENC] (image-grounded encoder) or [DEC] (decoder)."""
        out = ids.copy()
        out[:, 0] = token_id
        return out

    # ------------------------------------------------------------------------------------------- decoder
    def empty_past(self, batch: int) -> list[np.ndarray]:
        """The P=0 cache of a first decoder step: 2K arrays (B, H, 0, Dh)."""
        d = self.dims
        return [np.zeros((batch, d.decoder_heads, 0, d.decoder_head_dim), dtype=np.float32)
                for _ in range(2 * d.decoder_layers)]

    def decoder_step(self, input_ids: np.ndarray, attention_mask: np.ndarray, encoder_hidden: np.ndarray,
                     encoder_mask: np.ndarray, past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One cached step: logits (B, T, V) and the grown cache (B, H, P+T, Dh) per key/value."""
        assert len(past) == len(present_names(self.dims.decoder_layers)), "one key and value per decoder layer"
        logits, *present = self.run(DECODER, input_ids, attention_mask, encoder_hidden, encoder_mask, *past)
        return logits, present

    def greedy_decode(self, encoder_hidden: np.ndarray, encoder_mask: np.ndarray | None, max_tokens: int,
                      min_tokens: int = 0) -> list[list[int]]:
        mask = _ones_mask(encoder_hidden) if encoder_mask is None else encoder_mask
        return decoding.greedy_decode(self.decoder_step, self.empty_past, encoder_hidden, mask, self.special.dec,
                                      self.special.sep, max_tokens, min_tokens)

    def beam_decode(self, encoder_hidden: np.ndarray, encoder_mask: np.ndarray | None, max_tokens: int,
                    num_beams: int = 3, min_tokens: int = 0) -> list[list[int]]:
        mask = _ones_mask(encoder_hidden) if encoder_mask is None else encoder_mask
        return decoding.beam_decode(self.decoder_step, self.empty_past, encoder_hidden, mask, self.special.dec,
                                    self.special.sep, max_tokens, num_beams, min_tokens)

    # ------------------------------------------------------------------------------------------- tasks
    def caption(self, image_embeds: np.ndarray, num_beams: int = 1, max_tokens: int | None = None,
                min_tokens: int = 1, batch_size: int = 64, progress: bool = False) -> list[str]:
        """Captions for image tokens (N, T, Dv): decoder over the image, [DEC] first, stop at [SEP]."""
        out: list[str] = []
        for s in _batches(len(image_embeds), batch_size, f"captions (beams={num_beams})", progress):
            ids = self.beam_decode(image_embeds[s:s + batch_size], None, max_tokens or self.max_caption_tokens,
                                   num_beams, min_tokens)
            out += self.tokenizer.batch_decode(ids)
        return out

    def answer(self, image_embeds: np.ndarray, questions: Sequence[str], candidates: Sequence[str] | None = None,
               batch_size: int = 64, progress: bool = False) -> list[str]:
        """VQA answers for one image's tokens per question: generated greedily, or the most likely of
        ``candidates`` (BLIP's ranking mode)."""
        sp = self.special
        if candidates is not None:
            cand_ids, cand_mask = self.tokenize(candidates, self.max_answer_tokens)
        out: list[str] = []
        desc = "VQA (rank)" if candidates is not None else "VQA (generate)"
        for s in _batches(len(questions), batch_size, desc, progress):
            q_ids, q_mask = self.tokenize(questions[s:s + batch_size])
            images = image_embeds[s:s + batch_size]
            states = self.question_states(images, self.with_first_token(q_ids, sp.enc), q_mask)
            states, q_mask = self.answer_context(states, q_mask, images)
            if candidates is None:
                ids = self.greedy_decode(states, q_mask, self.max_answer_tokens)
                out += self.tokenizer.batch_decode(ids)
            else:
                scores = decoding.rank_answers(self.decoder_step, self.empty_past, states, q_mask, cand_ids,
                                               cand_mask, sp.dec)
                out += [candidates[i] for i in scores.argmax(axis=1).tolist()]
        return out


def _ones_mask(encoder_hidden: np.ndarray) -> np.ndarray:
    return np.ones(encoder_hidden.shape[:2], dtype=np.int64)
