"""The robustness table: each model's headline metrics on the clean test split and on the perturbed one (``python -m
dlip data perturb``), both from ``dlip eval-bundle --out X.json``, the drops, and the check that no model after the
first (the teacher) drops more than the teacher's drop + ``MARGIN`` points."""

from __future__ import annotations

from pathlib import Path

from ..jsonfile import read_json

METRICS = (("TR@1", "retrieval_tr1"), ("IR@1", "retrieval_ir1"), ("BLEU-4", "caption_bleu4"),
           ("CIDEr", "caption_cider"), ("VQA acc", "vqa_acc"))
RELATIVE = ("caption_cider",)  # checked on the drop as % of clean: CIDEr x100 runs to ~150-200, not a percentage
MARGIN = 3.0  # a model may drop this many points (CIDEr: % of clean) more than the teacher
_SAME_ACROSS_ROWS = ("k", "num_beams", "limit_images", "limit_questions")  # the protocol every row must share
_IGNORED_SETTINGS = ("batch_size",)  # does not change any number


def read_eval_metrics(path: str | Path) -> dict:
    """An ``eval-bundle --out`` JSON, checked to hold every headline metric of the table."""
    metrics = read_json(path, "eval-bundle metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("headline"), dict):
        raise ValueError(f"{path}: no 'headline' object (expected the JSON of `dlip eval-bundle ... --out`)")
    missing = [key for _, key in METRICS if key not in metrics["headline"]]
    if missing:
        raise ValueError(f"{path}: headline lacks {', '.join(missing)} (evaluated without captions or VQA?)")
    return metrics


def drops(clean: dict, perturbed: dict) -> dict[str, tuple[float, float]]:
    """Per headline key: (clean - perturbed in points, that drop as % of clean); positive = worse when perturbed."""
    out = {}
    for _, key in METRICS:
        c, p = clean["headline"][key], perturbed["headline"][key]
        out[key] = (c - p, 100 * (c - p) / c if c else float("nan"))
    return out


def protocol(metrics: dict) -> dict:
    """The evaluation settings of an ``eval-bundle`` JSON that change its numbers."""
    return {k: v for k, v in metrics.get("settings", {}).items() if k not in _IGNORED_SETTINGS}


def first_difference(a: dict, b: dict) -> str:
    """'different KEY (A vs B)' for the first key, by name, whose value differs between two settings dicts."""
    key = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))[0]
    return f"different {key} ({a.get(key)!r} vs {b.get(key)!r})"


def check_same_evaluation(x: dict, y: dict, what: str) -> dict:
    """Raises ``ValueError`` (``what`` names the pair) unless two ``eval-bundle`` JSONs are of one bundle under one
    protocol; returns that protocol."""
    if x.get("bundle") != y.get("bundle"):
        raise ValueError(f"{what} are of different bundles ({x.get('bundle')!r} vs {y.get('bundle')!r})")
    a, b = protocol(x), protocol(y)
    if a != b:
        raise ValueError(f"{what} were evaluated with {first_difference(a, b)}")
    return a


def check_comparable(rows: dict[str, tuple[dict, dict]]) -> None:
    """Raises ``ValueError`` when a row's clean and perturbed runs differ in bundle or evaluation settings, or when
    rows differ in the protocol (ITM top-k, beams, image and question limits)."""
    first = None
    for name, (clean, perturbed) in rows.items():
        a = check_same_evaluation(clean, perturbed, f"row {name!r}: clean and perturbed metrics")
        if first is None:
            first = (name, a)
            continue
        for key in _SAME_ACROSS_ROWS:
            if a.get(key) != first[1].get(key):
                raise ValueError(f"rows {first[0]!r} and {name!r} were evaluated with different {key} "
                                 f"({first[1].get(key)!r} vs {a.get(key)!r})")


def robustness_markdown(rows: dict[str, tuple[dict, dict]], machine: str) -> str:
    """The drop table (every row) and the check table (every row after the first against the first, the teacher)."""
    if not rows:
        raise ValueError("the robustness table needs at least one row")
    check_comparable(rows)
    d = {name: drops(clean, perturbed) for name, (clean, perturbed) in rows.items()}
    head, rule = ["model"], ["---"]
    for label, key in METRICS:
        cols = [f"{label} clean", f"{label} perturbed", f"{label} drop"]
        cols += [f"{label} drop (% of clean)"] if key in RELATIVE else []
        head += cols
        rule += ["---"] * len(cols)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(rule) + "|"]
    for name, (clean, perturbed) in rows.items():
        cells = [name]
        for _, key in METRICS:
            points, pct = d[name][key]
            cells += [f"{clean['headline'][key]:.2f}", f"{perturbed['headline'][key]:.2f}", f"{points:.2f}"]
            cells += [f"{pct:.1f}%"] if key in RELATIVE else []
        lines.append("| " + " | ".join(cells) + " |")
    settings = next(iter(rows.values()))[0].get("settings", {})
    lines += ["", "Drop: clean minus perturbed, in points (positive: worse on the perturbed images); CIDEr is x100, "
              "so its drop is also given as % of the clean score. Both splits scored by `dlip eval-bundle` with ITC "
              f"top-{settings.get('k')} + ITM re-ranking, beam-{settings.get('num_beams')} captions, generated VQA "
              f"answers, {settings.get('limit_images') or 'all'} test images and "
              f"{settings.get('limit_questions') or 'all'} questions; perturbed split from `dlip data perturb` (its "
              f"data card has the command, seed and ranges). Machine: {machine}."]
    names = list(rows)
    if len(names) > 1:
        teacher = names[0]
        lines += ["", f"| drop no worse than the teacher's ({teacher}) + {MARGIN:g} | "
                  + " | ".join(label for label, _ in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for name in names[1:]:
            cells = []
            for _, key in METRICS:
                index, unit = (1, "%") if key in RELATIVE else (0, "")
                got, allowed = d[name][key][index], d[teacher][key][index] + MARGIN
                cells.append(f"{got:.2f}{unit} (allowed {allowed:.2f}{unit}): {'met' if got <= allowed else 'NOT met'}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", f"The check compares drops in points for TR@1, IR@1, BLEU-4 and VQA acc, and the drop as % of "
                  f"clean for CIDEr: a model meets it when its drop is at most the teacher's + {MARGIN:g}."]
    return "\n".join(lines)
