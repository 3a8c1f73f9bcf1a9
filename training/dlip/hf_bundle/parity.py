"""The export-time check of an HF checkpoint's bundle: its graphs on onnxruntime against transformers' own model.

Inputs: ``IMAGES`` random images (seeded pixel values: the graphs are compared, not the image preprocessing) and
``TEXTS``, tokenized by the bundle's tokenizer (the checkpoint's) and padded to the longest, as the processor would.
Compared, per task (the manifest's ``parity.max_abs_diff`` keys):

- retrieval: ``image_embeds`` (vision_model), ``image_feat``, ``text_feat``, ``itc`` (HF's ``itm_score`` with
  ``use_itm_head=False``: the cosine of every image with every text), ``itm_logits`` (``use_itm_head=True``);
- captioning: ``image_embeds``, ``first_logits`` (the decoder's logits after [DEC]); greedy captions equal to
  ``generate`` (``min_new_tokens=1``: the server never returns an empty caption);
- vqa: ``image_embeds``, ``question_states``, ``first_logits`` (per question, alone: transformers' answer decoder
  attends to padded question positions, the server masks them; the two agree on an unpadded question); greedy
  answers equal to ``generate``.

A difference is allowed up to ``RTOL x max(1, max |transformers' value|)`` per output; a greedy sequence must be
identical. Anything else raises ``ValueError`` with the measured numbers, and the bundle is not written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..hf.blip import CAPTIONING, RETRIEVAL, VQA
from ..infer.ort_backend import OrtBackend
from ..infer.search import greedy_decode

RTOL = 1e-3  # of max(1, the reference's largest magnitude): float32 onnxruntime vs PyTorch, after graph fusions
IMAGES = 2
TEXTS = ("a picture of a dog sitting on the grass", "what color is the car?")


def check_parity(bundle: str | Path, hf_dir: str | Path, architecture: str, seed: int = 0) -> dict[str, Any]:
    """The manifest's ``parity``; raises ValueError when the bundle differs from transformers beyond tolerance."""
    import transformers

    hf = getattr(transformers, architecture).from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    backend = OrtBackend(bundle, threads=max(1, torch.get_num_threads()))
    size = backend.dims.image_size
    pixels = torch.randn(IMAGES, 3, size, size, generator=torch.Generator().manual_seed(seed))
    ids, mask = (x.numpy() for x in backend.tokenizer(list(TEXTS), backend.max_text_tokens))
    diffs: dict[str, tuple[float, float]] = {}  # output -> (max |ours - transformers'|, max(1, max |transformers'|))
    greedy: list[tuple[list[int], list[int]]] = []  # (ours, transformers')
    with torch.no_grad():
        ref_embeds = hf.vision_model(pixel_values=pixels).last_hidden_state
        embeds, feats = backend.encode_images(pixels.numpy())
        _diff(diffs, "image_embeds", embeds, ref_embeds)
        if architecture == RETRIEVAL:
            _retrieval(hf, backend, pixels, ids, mask, embeds, feats, ref_embeds, diffs)
        elif architecture == CAPTIONING:
            _captioning(hf, backend, pixels, embeds, ref_embeds, diffs, greedy)
        else:
            assert architecture == VQA, architecture
            _vqa(hf, backend, pixels, ids, mask, embeds, diffs, greedy)
    report = {"reference": f"transformers {transformers.__version__} {architecture}", "tolerance": RTOL,
              "max_abs_diff": {k: d for k, (d, _) in diffs.items()},
              "greedy_equal": sum(a == b for a, b in greedy), "greedy_total": len(greedy)}
    return _verdict(report, diffs, greedy, hf_dir)


def _retrieval(hf, backend: OrtBackend, pixels, ids, mask, embeds, feats, ref_embeds, diffs) -> None:
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
    ref_img = torch.nn.functional.normalize(hf.vision_proj(ref_embeds[:, 0]), dim=-1)
    text_states = hf.text_encoder(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
    ref_txt = torch.nn.functional.normalize(hf.text_proj(text_states[:, 0]), dim=-1)
    text_feats = backend.encode_texts(ids, mask)
    _diff(diffs, "image_feat", feats, ref_img)
    _diff(diffs, "text_feat", text_feats, ref_txt)
    ref_itc = hf(input_ids=t_ids, pixel_values=pixels, attention_mask=t_mask, use_itm_head=False).itm_score
    _diff(diffs, "itc", feats @ text_feats.T, ref_itc)  # (images, texts)
    fused = ids.copy()
    fused[:, 0] = backend.fusion_token  # [CLS] kept (fusion_first_token "cls"): a no-op, written as the server does
    ref_itm = hf(input_ids=t_ids, pixel_values=pixels, attention_mask=t_mask, use_itm_head=True).itm_score
    _diff(diffs, "itm_logits", backend.itm_logits(embeds, fused, mask), ref_itm)


def _captioning(hf, backend: OrtBackend, pixels, embeds, ref_embeds, diffs, greedy) -> None:
    sp = backend.special
    bos = torch.full((len(pixels), 1), sp.dec, dtype=torch.long)
    ref_first = hf.text_decoder(input_ids=bos, encoder_hidden_states=ref_embeds).logits[:, -1]
    first = backend.decoder(embeds, None).step(bos.numpy(), np.ones((len(pixels), 1), dtype=np.int64))[:, -1]
    _diff(diffs, "first_logits", first, ref_first)
    ours = greedy_decode(backend, embeds, None, sp.dec, sp.sep, backend.max_caption_tokens, min_tokens=1)
    theirs = hf.generate(pixel_values=pixels, max_new_tokens=backend.max_caption_tokens, min_new_tokens=1,
                         do_sample=False, num_beams=1)
    greedy += [(o, _strip(t, sp.sep)) for o, t in zip(ours, theirs.tolist())]


def _vqa(hf, backend: OrtBackend, pixels, ids, mask, embeds, diffs, greedy) -> None:
    sp = backend.special
    for i in range(len(pixels)):  # each image with each question, alone (unpadded)
        for q in range(len(ids)):
            n = int(mask[q].sum())
            q_ids, q_mask = ids[q:q + 1, :n], mask[q:q + 1, :n]
            image, ref_image = embeds[i:i + 1], hf.vision_model(pixel_values=pixels[i:i + 1]).last_hidden_state
            fused = q_ids.copy()
            fused[:, 0] = backend.fusion_token
            states = backend.question_states(image, fused, q_mask)
            ref_states = hf.text_encoder(input_ids=torch.from_numpy(q_ids), attention_mask=torch.from_numpy(q_mask),
                                         encoder_hidden_states=ref_image).last_hidden_state
            _diff(diffs, "question_states", states, ref_states)
            bos = np.full((1, 1), sp.dec, dtype=np.int64)
            first = backend.decoder(states, q_mask).step(bos, np.ones((1, 1), dtype=np.int64))[:, -1]
            ref_first = hf.text_decoder(input_ids=torch.from_numpy(bos),
                                        encoder_hidden_states=ref_states).logits[:, -1]
            _diff(diffs, "first_logits", first, ref_first)
            (ours,) = greedy_decode(backend, states, q_mask, sp.dec, sp.sep, backend.max_answer_tokens)
            (theirs,) = hf.generate(input_ids=torch.from_numpy(q_ids), attention_mask=torch.from_numpy(q_mask),
                                    pixel_values=pixels[i:i + 1], max_new_tokens=backend.max_answer_tokens,
                                    do_sample=False, num_beams=1).tolist()
            greedy.append((ours, _strip(theirs, sp.sep)))


def _diff(diffs: dict[str, tuple[float, float]], key: str, ours: np.ndarray, ref: torch.Tensor) -> None:
    """Keeps the largest |ours - ref| under ``key``, with the largest max(1, |ref|) (the tolerance's scale)."""
    ref_np = ref.detach().float().numpy()
    if ours.shape != ref_np.shape:
        raise ValueError(f"parity: {key} has shape {ours.shape}, transformers' {ref_np.shape}")
    d, scale = diffs.get(key, (0.0, 1.0))
    diffs[key] = (max(d, float(np.abs(ours - ref_np).max())), max(scale, float(np.abs(ref_np).max())))


def _strip(row: list[int], eos: int) -> list[int]:
    """transformers' generated row -> the tokens after [DEC], up to (without) the first [SEP]."""
    row = row[1:]
    return row[:row.index(eos)] if eos in row else row


def _verdict(report: dict[str, Any], diffs: dict[str, tuple[float, float]], greedy, hf_dir) -> dict[str, Any]:
    over = {k: (d, scale) for k, (d, scale) in diffs.items() if d > RTOL * scale}
    unequal = [(i, a, b) for i, (a, b) in enumerate(greedy) if a != b]
    if over or unequal:
        parts = [f"{k} differs by {d:.3g} (tolerance {RTOL:g} x max(1, max |transformers' {k}|) = {RTOL * scale:.3g})"
                 for k, (d, scale) in over.items()]
        parts += [f"greedy sequence {i}: bundle {a} vs transformers {b}" for i, a, b in unequal[:3]]
        raise ValueError(f"{hf_dir}: the exported graphs do not reproduce transformers' model, not written: "
                         + "; ".join(parts))
    return report
