"""Scoring a bundle with onnxruntime on the test split, with the protocols and metric functions of
``dlip.eval.evaluate`` (retrieval by ITC and ITC top-k + ITM re-ranking, greedy and beam captions, VQA generated and
ranked), so its ``headline`` is comparable with the manifest's; and ``compare_decoding``, which checks that a bundle
decodes exactly the tokens its PyTorch model does.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

from ..config import DataConfig
from ..data.annotations import load_vqa, pre_question
from ..data.datasets import CaptionEvalDataset
from ..data.tokenizer import TextTokenizer
from ..eval.evaluate import EvalSettings, headline
from ..eval.metrics import caption_scores, retrieval_metrics, vqa_accuracy_by_type, vqa_accuracy_mean
from ..model.generate import greedy_decode
from ..model.med import BlipMED
from .ort_model import BundleModel


def evaluate_bundle(bundle: BundleModel, data: DataConfig, settings: EvalSettings, progress: bool = True) -> dict:
    """The metrics of ``evaluate`` that depend on the model (no baselines, no FLOPs), as one nested dict with the
    same keys; ``headline`` is computed by the same function."""
    started = time.time()
    metrics: dict = {"settings": settings.__dict__.copy(), "bundle": bundle.manifest["name"]}
    if data.test_captions:
        ds = CaptionEvalDataset(data.path(data.test_captions), data.image_root, bundle.preprocess, data.max_words)
        n_img = min(len(ds), settings.limit_images or len(ds))
        img2txt = {i: ds.img2txt[i] for i in range(n_img)}
        n_txt = max(t for ts in img2txt.values() for t in ts) + 1
        txt2img = {t: ds.txt2img[t] for t in range(n_txt)}
        images = bundle.load_images(ds.image_paths[:n_img], progress)
        image_embeds, image_feats = bundle.encode_images(images, settings.batch_size, progress)
        ids, mask, text_feats = bundle.encode_texts(ds.texts[:n_txt], progress=progress)
        scores = retrieval_scores(bundle, image_embeds, image_feats, ids, mask, text_feats, settings.k, progress)
        metrics["retrieval"] = {
            "itc": retrieval_metrics(scores["itc_i2t"], scores["itc_t2i"], img2txt, txt2img),
            "itm": retrieval_metrics(scores["itm_i2t"], scores["itm_t2i"], img2txt, txt2img),
        }
        refs = {i: list(ds.images[i].captions) for i in range(n_img)}
        caps: dict = {}
        for name, beams in (("greedy", 1), (f"beam{settings.num_beams}", settings.num_beams)):
            preds = bundle.caption(image_embeds, beams, settings.max_caption_tokens, batch_size=settings.batch_size,
                                   progress=progress)
            caps[name] = {k: 100 * v for k, v in caption_scores(dict(enumerate(preds)), refs).items()}
            caps[name]["examples"] = preds[:10]
        metrics["caption"] = caps
    if data.test_vqa:
        metrics["vqa"] = evaluate_vqa(bundle, data, settings, progress)
    metrics["headline"] = headline(metrics)
    metrics["eval_seconds"] = round(time.time() - started, 1)
    return metrics


def retrieval_scores(bundle: BundleModel, image_embeds: np.ndarray, image_feats: np.ndarray, text_ids: np.ndarray,
                     text_mask: np.ndarray, text_feats: np.ndarray, k: int,
                     progress: bool = True) -> dict[str, np.ndarray]:
    """BLIP's retrieval inference, as ``dlip.eval.inference.retrieval_scores``: ITC cosine ranking, then each
    query's top-k re-scored as ITM match logit + ITC cosine, -100 elsewhere."""
    sims = (image_feats @ text_feats.T).astype(np.float32)  # (N_img, N_txt) cosine
    enc_ids = bundle.with_first_token(text_ids, bundle.special.enc)
    k_i2t, k_t2i = min(k, sims.shape[1]), min(k, sims.shape[0])
    i2t = np.full_like(sims, -100.0)
    for i in tqdm(range(sims.shape[0]), desc="ITM re-rank i2t", disable=not progress, leave=False):
        top = _topk(sims[i], k_i2t)
        logits = bundle.itm_logits(np.repeat(image_embeds[i:i + 1], k_i2t, axis=0), enc_ids[top], text_mask[top])
        i2t[i, top] = logits[:, 1] + sims[i, top]
    t2i = np.full_like(sims.T, -100.0)
    for t in tqdm(range(sims.shape[1]), desc="ITM re-rank t2i", disable=not progress, leave=False):
        top = _topk(sims[:, t], k_t2i)
        logits = bundle.itm_logits(image_embeds[top], np.repeat(enc_ids[t:t + 1], k_t2i, axis=0),
                                   np.repeat(text_mask[t:t + 1], k_t2i, axis=0))
        t2i[t, top] = logits[:, 1] + sims[top, t]
    return {"itc_i2t": sims, "itc_t2i": sims.T.copy(), "itm_i2t": i2t, "itm_t2i": t2i}


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-x, kind="stable")[:k]


def evaluate_vqa(bundle: BundleModel, data: DataConfig, settings: EvalSettings, progress: bool) -> dict:
    """VQA accuracy of generated answers (and, with training questions, of answers ranked over the 128 most
    frequent training answers), as ``dlip.eval.evaluate.evaluate_vqa``."""
    test, per_question, questions = _vqa_inputs(bundle.preprocess, data, settings.limit_questions)
    images = bundle.load_images([str(data.path(p)) for p in per_question[0]], progress)
    image_embeds, _ = bundle.encode_images(images, settings.batch_size, progress)
    embeds = image_embeds[per_question[1]]  # (Q, N, Dv)
    gts = [list(it.answers) for it in test]
    types = [getattr(it, "question_type", None) or " ".join(q.split()[:3]) for it, q in zip(test, questions)]
    generated = bundle.answer(embeds, questions, batch_size=settings.batch_size, progress=progress)
    out = {"acc": vqa_accuracy_mean(generated, gts), "by_type": vqa_accuracy_by_type(generated, gts, types),
           "examples": [{"question": q, "answer": a, "truth": g[0]} for q, a, g in zip(questions, generated, gts)][:10]}
    if data.train_vqa:
        train = load_vqa(data.path(data.train_vqa), require_answers=True)
        counts = Counter(a for it in train for a in set(it.answers))
        candidates = [a for a, _ in counts.most_common(128)]
        ranked = bundle.answer(embeds, questions, candidates, settings.batch_size, progress)
        out["acc_rank"] = vqa_accuracy_mean(ranked, gts)
    return out


def _vqa_inputs(preprocess, data: DataConfig, limit: int | None):
    """Test questions (first ``limit``), their unique image paths and each question's image index, and the
    normalised question texts: exactly what ``evaluate_vqa`` feeds the model."""
    test = load_vqa(data.path(data.test_vqa), require_answers=True)[:limit]
    paths = sorted({it.image for it in test})
    where = {p: i for i, p in enumerate(paths)}
    questions = [pre_question(it.question, data.max_words) for it in test]
    return test, (paths, [where[it.image] for it in test]), questions


# ------------------------------------------------------------------------------------------------ decoding parity
@torch.no_grad()
def compare_decoding(model: BlipMED, tokenizer: TextTokenizer, bundle: BundleModel, data: DataConfig,
                     limit: int = 50, progress: bool = True) -> dict:
    """Greedy captions of the first ``limit`` test images and greedy answers to the first ``limit`` test questions,
    decoded by PyTorch (``dlip.model.generate.greedy_decode``) and by the bundle; token ids compared exactly.

    Returns counts (``images``, ``captions_identical``, ``questions``, ``answers_identical``) and the differing
    cases under ``mismatches``.
    """
    model.eval()
    sp, out, mismatches = tokenizer.special, {}, []
    if data.test_captions:
        ds = CaptionEvalDataset(data.path(data.test_captions), data.image_root, bundle.preprocess, data.max_words)
        paths = ds.image_paths[:limit]
        images = bundle.load_images(paths, progress)
        ort_embeds, _ = bundle.encode_images(images)
        torch_embeds = model.encode_image(torch.from_numpy(images)).last_hidden
        ref = greedy_decode(model, torch_embeds, sp.dec, sp.sep, bundle.max_caption_tokens, min_tokens=1)
        got = bundle.greedy_decode(ort_embeds, None, bundle.max_caption_tokens, min_tokens=1)
        mismatches += [{"image": p, "torch": tokenizer.decode(r), "onnx": tokenizer.decode(g)}
                       for p, r, g in zip(paths, ref, got) if r != g]
        out.update(images=len(paths), captions_identical=sum(r == g for r, g in zip(ref, got)))
    if data.test_vqa:
        _, (paths, index), questions = _vqa_inputs(bundle.preprocess, data, limit)
        images = bundle.load_images([str(data.path(p)) for p in paths], progress)[index]  # (Q, 3, S, S)
        q_ids, q_mask = bundle.tokenize(questions)
        enc_ids = bundle.with_first_token(q_ids, sp.enc)
        ort_embeds = bundle.encode_images(images)[0]
        ort_states, ort_mask = bundle.answer_context(bundle.question_states(ort_embeds, enc_ids, q_mask), q_mask,
                                                     ort_embeds)
        torch_embeds = model.encode_image(torch.from_numpy(images)).last_hidden
        states = model.fuse(torch.from_numpy(enc_ids), torch.from_numpy(q_mask), torch_embeds).last_hidden
        states, torch_mask = model.answer_context(states, torch.from_numpy(q_mask), torch_embeds)
        ref = greedy_decode(model, states, sp.dec, sp.sep, bundle.max_answer_tokens, encoder_mask=torch_mask)
        got = bundle.greedy_decode(ort_states, ort_mask, bundle.max_answer_tokens)
        mismatches += [{"question": q, "torch": tokenizer.decode(r), "onnx": tokenizer.decode(g)}
                       for q, r, g in zip(questions, ref, got) if r != g]
        out.update(questions=len(questions), answers_identical=sum(r == g for r, g in zip(ref, got)))
    out["mismatches"] = mismatches
    return out


def headline_table(metrics: dict, manifest_metrics: dict) -> str:
    """Markdown: the bundle's headline numbers next to the manifest's (from the PyTorch evaluation)."""
    lines = ["| metric | bundle (onnxruntime) | manifest |", "|---|---|---|"]
    for key, value in metrics["headline"].items():
        ref = manifest_metrics.get(key)
        lines.append(f"| {key} | {value:.2f} | {'-' if ref is None else f'{ref:.2f}'} |")
    return "\n".join(lines) + "\n"
