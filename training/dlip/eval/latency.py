"""CPU latency of model bundles with ONNX Runtime, end to end per task, as the report tables state it:
image encode, caption (greedy, KV cache) and VQA (encode image + question, generate the answer), at batch 1 and 32.

A benchmark, not a test: numbers depend on the machine, so compare models measured side by side in one run.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from ..infer import tasks
from ..infer.ort_backend import OrtBackend

TASKS = ("image_encode", "caption_greedy", "vqa")
QUESTION = "what color is the large circle?"


def _median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bundle_latency(path: str | Path, batch_sizes=(1, 32), repeats: int = 5, threads: int = 1,
                   seed: int = 0) -> dict[str, dict[int, float]]:
    """Median seconds per call of each task at each batch size, on random images of the bundle's input size.
    Captions decode a fixed number of tokens (the manifest's maximum; no early stop on [SEP]) so that every model
    does the same amount of decoding work."""
    model = OrtBackend(path, threads=threads)
    size = model.manifest["preprocessing"]["image_size"]
    max_tokens = model.manifest["tokenizer"]["max_caption_tokens"]
    rng = np.random.default_rng(seed)
    out: dict[str, dict[int, float]] = {task: {} for task in TASKS}
    for b in batch_sizes:
        pixels = rng.standard_normal((b, 3, size, size), dtype=np.float32)

        # the closures run within this iteration; the defaults bind this batch's values all the same
        def encode(pixels=pixels, b=b):
            return tasks.encode_images(model, pixels, batch_size=b)[0]

        def caption():
            tasks.caption_ids(model, encode(), max_tokens, num_beams=1, min_tokens=max_tokens)

        def vqa(b=b):
            tasks.answer_questions(model, encode(), [QUESTION] * b, model.max_text_tokens, model.max_answer_tokens)

        for task, fn in zip(TASKS, (encode, caption, vqa)):
            out[task][b] = _median_seconds(fn, repeats)
    return out


def latency_table(results: dict[str, dict[str, dict[int, float]]]) -> str:
    """Markdown: one row per bundle, milliseconds per call, and the speed-up of each row over the first."""
    batches = sorted({b for r in results.values() for t in r.values() for b in t})
    head = [f"{task} b{b} (ms)" for task in TASKS for b in batches]
    lines = ["| model | " + " | ".join(head) + " | caption b1 speed-up vs first row |",
             "|---|" + "---|" * (len(head) + 1)]
    first = next(iter(results.values()))
    for name, r in results.items():
        cells = [f"{1000 * r[task][b]:.1f}" for task in TASKS for b in batches]
        ratio = first["caption_greedy"][batches[0]] / r["caption_greedy"][batches[0]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    return "\n".join(lines) + "\n"
