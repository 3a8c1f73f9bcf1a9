"""The onnxruntime backend: a model bundle (FORMAT.md) run on CPU behind the ``Backend`` interface, NumPy only.
The reference for what the server does with a bundle, and what ``dlip eval-bundle`` scores.

Decoding as format 3 means it: ``cross_kv`` turns a batch's image tokens or question states into the decoder's
cross-attention keys and values once, then each ``decoder`` step takes them with its self-attention cache, the mask
over past and new positions and each row's ``position_ids`` (the count of its real cached positions onwards).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..data.tokenizer import TextTokenizer
from ..data.transforms import ImagePreprocess
from ..export.contract import (CROSS_KV, DECODER, ITM, TEXT, VISION, VQA_ENCODER, ModelDims, cross_names, graph_specs,
                               present_names)
from ..export.manifest import fusion_first_token, read_manifest, validate_bundle


class OrtBackend:
    """Loads (and by default validates) a bundle directory and opens one onnxruntime session per graph.

    ``int8`` (or ``precision="int8"``) selects the ``*.int8.onnx`` variants, ``precision="fp16"`` the
    ``*.fp16.onnx`` ones (an error when the bundle has none); ``threads`` is onnxruntime's intra-op thread count per
    session. Only the graphs of the bundle's tasks exist (format 4); a task without them fails at its first call.
    """

    def __init__(self, path: str | os.PathLike, int8: bool = False, threads: int = 1, validate: bool = True,
                 precision: str = "fp32"):
        self.path = Path(path)
        self.precision = "int8" if int8 else precision  # which graph files the sessions run
        self.manifest: dict[str, Any] = validate_bundle(self.path) if validate else read_manifest(self.path)
        self.tasks: tuple[str, ...] = tuple(self.manifest["tasks"])
        self.dims = ModelDims.from_manifest(self.manifest)
        self.reads_image = bool(self.manifest["model"]["vqa_decoder_reads_image"])
        tok = self.manifest["tokenizer"]
        self.tokenizer = TextTokenizer.from_file(self.path / tok["file"])
        special = {k: getattr(self.tokenizer.special, k) for k in tok["special_tokens"]}
        if special != tok["special_tokens"]:
            raise ValueError(f"{self.path / tok['file']}: special token ids {special} differ from the manifest's "
                             f"{tok['special_tokens']}")
        self.special = self.tokenizer.special
        # the first token of itm / vqa_encoder input ids: [ENC] (BLIP) or the tokenizer's own [CLS] (HF checkpoints)
        self.fusion_token = self.special.cls if fusion_first_token(self.manifest) == "cls" else self.special.enc
        self.max_text_tokens = tok["max_text_tokens"]
        self.max_answer_tokens = tok["max_answer_tokens"]
        self.max_caption_tokens = tok["max_caption_tokens"]
        pre = self.manifest["preprocessing"]
        self.preprocess = ImagePreprocess(pre["image_size"], tuple(pre["mean"]), tuple(pre["std"]), pre["resample"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sessions: dict[str, ort.InferenceSession] = {}
        for graph, entry in self.manifest["graphs"].items():
            if self.precision != "fp32" and self.precision not in entry:
                raise ValueError(f"{self.path}: graph '{graph}' has no {self.precision} variant (export with "
                                 f"--{self.precision})")
            file = entry["file"] if self.precision == "fp32" else entry[self.precision]["file"]
            self.sessions[graph] = ort.InferenceSession(str(self.path / file), opts,
                                                        providers=["CPUExecutionProvider"])
        self._specs = graph_specs(self.dims)

    def run(self, graph: str, *inputs: np.ndarray) -> list[np.ndarray]:
        """Runs ``graph`` on its inputs in the contract's order; returns its outputs in the contract's order."""
        spec = self._specs[graph]
        if graph not in self.sessions:
            raise ValueError(f"{self.path}: has no '{graph}' graph (it serves {', '.join(self.tasks)})")
        feeds = {t.name: np.ascontiguousarray(x, dtype=np.float32 if t.dtype == "float32" else np.int64)
                 for t, x in zip(spec.inputs, inputs, strict=True)}
        return self.sessions[graph].run(spec.output_names, feeds)

    # ------------------------------------------------------------------------------------------- Backend
    def encode_images(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        embeds, feats = self.run(VISION, pixel_values)
        return embeds, feats

    def encode_texts(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.run(TEXT, input_ids, attention_mask)[0]

    def itm_logits(self, image_embeds: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.run(ITM, image_embeds, input_ids, attention_mask)[0]

    def question_states(self, image_embeds: np.ndarray, input_ids: np.ndarray,
                        attention_mask: np.ndarray) -> np.ndarray:
        return self.run(VQA_ENCODER, image_embeds, input_ids, attention_mask)[0]

    def decoder(self, encoder_hidden: np.ndarray, encoder_mask: np.ndarray | None,
                cached: bool = True) -> OrtDecoder:
        mask = np.ones(encoder_hidden.shape[:2], dtype=np.int64) if encoder_mask is None else encoder_mask
        return OrtDecoder(self, encoder_hidden, mask, cached)

    def take(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return x[rows]

    def cat(self, parts: list[np.ndarray], axis: int) -> np.ndarray:
        return np.concatenate(parts, axis=axis)

    # ------------------------------------------------------------------------------------------- decoder graph
    def empty_past(self, batch: int) -> list[np.ndarray]:
        """The P=0 cache of a first decoder step: 2K arrays (B, H, 0, Dh)."""
        d = self.dims
        return [np.zeros((batch, d.decoder_heads, 0, d.decoder_head_dim), dtype=np.float32)
                for _ in range(2 * d.decoder_layers)]

    def cross_kv(self, encoder_hidden: np.ndarray) -> list[np.ndarray]:
        """One run of the ``cross_kv`` graph: cross_key_0, cross_value_0, ... (B, H, M, Dh) of ``encoder_hidden``."""
        return self.run(CROSS_KV, encoder_hidden)

    def decoder_step(self, input_ids: np.ndarray, position_ids: np.ndarray, attention_mask: np.ndarray,
                     encoder_mask: np.ndarray, past: list[np.ndarray],
                     cross: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One run of the ``decoder`` graph: logits (B, T, V) and the grown cache (B, H, P+T, Dh) per key/value."""
        layers = self.dims.decoder_layers
        assert len(past) == len(present_names(layers)), "one key and value per decoder layer"
        assert len(cross) == len(cross_names(layers)), "one cross-attention key and value per decoder layer"
        logits, *present = self.run(DECODER, input_ids, position_ids, attention_mask, encoder_mask, *past, *cross)
        return logits, present


class OrtDecoder:
    """The ``decoder`` graph's cache (past_key_i / past_value_i arrays) and the decoder mask between steps, over
    the cross-attention keys and values ``cross_kv`` computed once for the batch."""

    def __init__(self, backend: OrtBackend, encoder_hidden: np.ndarray, encoder_mask: np.ndarray, cached: bool):
        self.backend, self.cached = backend, cached
        self.cross, self.encoder_mask = backend.cross_kv(encoder_hidden), encoder_mask
        b = len(encoder_hidden)
        self.past = backend.empty_past(b)
        self.mask = np.empty((b, 0), dtype=np.int64)

    def step(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        mask = np.concatenate([self.mask, attention_mask.astype(np.int64)], axis=1)  # (B, P+T)
        # each row continues after its own real cached positions (all of them here: the protocol never pads a past)
        positions = self.mask.sum(axis=1, keepdims=True) + np.arange(input_ids.shape[1], dtype=np.int64)
        logits, present = self.backend.decoder_step(input_ids, positions, mask, self.encoder_mask, self.past,
                                                    self.cross)
        if self.cached:
            self.past, self.mask = present, mask
        return logits

    def reorder(self, rows: np.ndarray) -> None:
        self.past = [p[rows] for p in self.past]
        self.mask = self.mask[rows]
