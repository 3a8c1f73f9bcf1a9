"""Scoring a bundle with onnxruntime on the test split, with the protocol ``dlip eval`` runs on PyTorch (so its
``headline`` is comparable with the manifest's); and ``compare_decoding``: the same greedy decoding on two backends
(a run's PyTorch model and its bundle), token ids compared exactly.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..config import DataConfig
from ..infer import tasks
from ..infer.backend import Backend, tokenize
from ..infer.ort_backend import OrtBackend
from .evaluate import EvalSettings, caption_split, evaluate_backend, vqa_split, with_error


def evaluate_bundle(bundle: OrtBackend, data: DataConfig, settings: EvalSettings, progress: bool = True) -> dict:
    """The metrics of ``evaluate`` that depend on the model (no baselines, no FLOPs), with the same keys; texts and
    answers are cut at the bundle's token limits; ``precision`` says which graphs ran (fp32, int8 or fp16)."""
    started = time.time()
    data = dataclasses.replace(data, max_text_tokens=bundle.max_text_tokens,
                               max_answer_tokens=bundle.max_answer_tokens)
    metrics = {**evaluate_backend(bundle, data, settings, progress), "bundle": bundle.manifest["name"],
               "precision": bundle.precision}
    metrics["eval_seconds"] = round(time.time() - started, 1)
    return metrics


def greedy_outputs(backend: Backend, pixels: np.ndarray, question_pixels: np.ndarray, question_ids: np.ndarray,
                   question_mask: np.ndarray, max_caption_tokens: int, max_answer_tokens: int):
    """Greedy caption ids of ``pixels`` (N, 3, S, S) and greedy answer ids of tokenized questions over their images
    ``question_pixels`` (Q, 3, S, S), each in one batch: what ``compare_decoding`` compares across backends."""
    captions = answers = None
    if pixels is not None:
        embeds, _ = backend.encode_images(pixels)
        captions = tasks.caption_ids(backend, embeds, max_caption_tokens, num_beams=1, min_tokens=1)
    if question_pixels is not None:
        embeds, _ = backend.encode_images(question_pixels)
        answers = tasks.answer_ids(backend, embeds, question_ids, question_mask, max_answer_tokens)
    return captions, answers


def compare_decoding(reference: Backend, bundle: OrtBackend, data: DataConfig, limit: int = 50,
                     progress: bool = True, names: tuple[str, str] = ("torch", "onnx")) -> dict:
    """Greedy captions of the first ``limit`` test images and greedy answers to the first ``limit`` test questions,
    decoded by ``reference`` (a run's ``TorchBackend``) and by ``bundle`` from the same pixels (the bundle's
    preprocessing) and token ids; token ids compared exactly.

    Returns counts (``images``, ``captions_identical``, ``questions``, ``answers_identical``) and the differing
    cases under ``mismatches`` (texts keyed by ``names``).
    """
    pixels = q_pixels = q_ids = q_mask = None
    if data.test_captions:
        paths = caption_split(data, bundle.preprocess, limit).image_paths
        pixels = tasks.load_images(bundle, paths, progress)
    if data.test_vqa:
        split = vqa_split(data, limit)
        q_pixels = tasks.load_images(bundle, [str(data.path(p)) for p in split.image_paths], progress)
        q_pixels = q_pixels[split.image_index]  # (Q, 3, S, S)
        q_ids, q_mask = tokenize(bundle, split.questions, bundle.max_text_tokens)
    args = (pixels, q_pixels, q_ids, q_mask, bundle.max_caption_tokens, bundle.max_answer_tokens)
    ref_caps, ref_answers = greedy_outputs(reference, *args)
    got_caps, got_answers = greedy_outputs(bundle, *args)
    decode, (a, b) = bundle.tokenizer.decode, names
    out: dict = {}
    mismatches = []
    if pixels is not None:
        mismatches += [{"image": p, a: decode(r), b: decode(g)}
                       for p, r, g in zip(paths, ref_caps, got_caps) if r != g]
        out.update(images=len(paths), captions_identical=sum(r == g for r, g in zip(ref_caps, got_caps)))
    if q_pixels is not None:
        mismatches += [{"question": q, a: decode(r), b: decode(g)}
                       for q, r, g in zip(split.questions, ref_answers, got_answers) if r != g]
        out.update(questions=len(split.questions),
                   answers_identical=sum(r == g for r, g in zip(ref_answers, got_answers)))
    out["mismatches"] = mismatches
    return out


def headline_table(metrics: dict, manifest_metrics: dict) -> str:
    """Markdown: the bundle's headline numbers (+- one standard error over the test items) next to the manifest's
    (from the PyTorch evaluation)."""
    lines = ["| metric | bundle (onnxruntime) | manifest |", "|---|---|---|"]
    for key, value in metrics["headline"].items():
        ref = manifest_metrics.get(key)
        lines.append(f"| {key} | {with_error(value, metrics, key)} | {'-' if ref is None else f'{ref:.2f}'} |")
    return "\n".join(lines) + "\n"
