"""The caption correctness table (``python -m dlip correctness-report``): per row, a model scored on one Shapes split by
``eval-bundle`` (or ``eval``), its beam captions graded against the scene graphs and its VQA accuracy by question
type, each value with its standard error over the test items."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.shapes_text import QUESTION_TYPES
from .caption_correctness import RATES

# caption columns: (header, key in the correctness dict)
CAPTION_COLUMNS = (
    ("exact set", "exact_set"), ("exact objects", "exact_objects"), ("precision", "precision"),
    ("recall", "recall"), ("only true pairs", "all_named_true"), ("cut off", "incomplete"),
    ("size words right", "size_acc"), ("counts right", "count_acc"),
)
assert {key for _, key in CAPTION_COLUMNS} <= {key for key, _ in RATES}


def read_correctness_metrics(path: str | Path) -> dict:
    """An ``eval-bundle --out`` JSON (or a run's metrics.json), checked to hold graded beam captions and VQA by type
    with their sampling errors."""
    metrics = json.loads(Path(path).read_text())
    caption = metrics.get("caption", {}) if isinstance(metrics, dict) else {}
    beam = next((k for k in caption if k.startswith("beam")), None)
    if beam is None or "correctness" not in caption[beam]:
        raise ValueError(f"{path}: no graded beam captions (caption.beamK.correctness): evaluate Shapes data with "
                         "this version of `dlip eval-bundle` / `dlip eval`")
    vqa = metrics.get("vqa", {})
    if "by_type" not in vqa.get("sampling_error", {}):
        raise ValueError(f"{path}: no VQA accuracy by type with sampling errors (vqa.sampling_error.by_type): "
                         "evaluate again with this version")
    return metrics


def _cell(value: float | None, se: float | None) -> str:
    return "-" if value is None else f"{value:.1f} (+-{se:.1f})"


def correctness_markdown(rows: dict[str, dict], machine: str) -> str:
    """Two tables, one row per label: the beam captions' correctness rates and VQA accuracy by question type."""
    first = next(iter(rows.values()))
    beam = next(k for k in first["caption"] if k.startswith("beam"))
    lines = ["| model, split | images | " + " | ".join(h for h, _ in CAPTION_COLUMNS) + " |",
             "|---|---|" + "---|" * len(CAPTION_COLUMNS)]
    for label, m in rows.items():
        c = next(v for k, v in m["caption"].items() if k.startswith("beam"))["correctness"]
        cells = [_cell(c[key], c["sampling_error"][key]) for _, key in CAPTION_COLUMNS]
        lines.append(f"| {label} | {c['counts']['captions']} | " + " | ".join(cells) + " |")
    types = [t for t in QUESTION_TYPES if any(t in m["vqa"]["by_type"] for m in rows.values())]
    lines += ["", "| model, split | questions | VQA acc | " + " | ".join(types) + " |",
              "|---|---|---|" + "---|" * len(types)]
    for label, m in rows.items():
        v = m["vqa"]
        cells = [_cell(v["by_type"].get(t), v["sampling_error"]["by_type"].get(t)) for t in types]
        lines.append(f"| {label} | {v['questions']} | {_cell(v['acc'], v['sampling_error']['acc'])} | "
                     + " | ".join(cells) + " |")
    lines += ["", f"Captions: {beam} search, graded against each image's scene graph "
              "(`dlip/eval/caption_correctness.py`): exact set = the caption names exactly the scene's set of "
              "(colour, shape) pairs; exact objects = and with the right number of each; precision / recall of "
              "the named pairs (precision over captions that name one); only true pairs = names at least one pair "
              "and none that is absent; cut off = a proper prefix of a sentence of the data card's grammar; size "
              "words right = of those whose colour and shape match an object; counts right = of the number words "
              "and count prefixes. VQA: generated answers, VQAv2 accuracy. All in %, +-: one standard error over "
              f"the images (questions). Machine: {machine}."]
    return "\n".join(lines)
