"""The robustness table: each model's headline metrics on the clean test split and on the perturbed one (``python -m
dlip data perturb``, issue 23's hard split: ``--preset hard``), both from ``dlip eval-bundle --out X.json``, with
their standard errors where the JSON records them, the drops, and two checks: issue 23's absolute one (every model,
the teacher included, drops at most ``DROP_BOUND`` points of caption exact set and of VQA accuracy) and the older
relative one (no model after the first, the teacher, drops more than the teacher's drop + ``MARGIN`` points)."""

from __future__ import annotations

import math
from pathlib import Path

from ..jsonfile import read_json

METRICS = (("TR@1", "retrieval_tr1"), ("IR@1", "retrieval_ir1"), ("BLEU-4", "caption_bleu4"),
           ("CIDEr", "caption_cider"), ("VQA acc", "vqa_acc"))  # every eval-bundle headline (also the int8 table's)
EXACT_SET = ("exact set", "caption_exact_set")  # Shapes only: graded against the scene graphs
TABLE = METRICS[:4] + (EXACT_SET,) + METRICS[4:]  # the robustness table's columns
RELATIVE = ("caption_cider",)  # checked on the drop as % of clean: CIDEr x100 runs to ~150-200, not a percentage
MARGIN = 3.0  # a model may drop this many points (CIDEr: % of clean) more than the teacher
DROP_BOUND = 3.0  # issue 23 target 3: on the hard split each model drops at most this many points of ...
BOUNDED = (EXACT_SET, ("VQA acc", "vqa_acc"))  # ... caption exact set and of VQA accuracy
_FLOAT_SLACK = 1e-9  # 91.2 - 88.2 is 3.0000000000000036 in floats: a drop shown as 3.00 meets a bound of 3
_SAME_ACROSS_ROWS = ("k", "num_beams", "limit_images", "limit_questions")  # the protocol every row must share
_IGNORED_SETTINGS = ("batch_size",)  # does not change any number


def read_eval_metrics(path: str | Path) -> dict:
    """An ``eval-bundle --out`` JSON, checked to hold every headline metric of ``METRICS``."""
    metrics = read_json(path, "eval-bundle metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("headline"), dict):
        raise ValueError(f"{path}: no 'headline' object (expected the JSON of `dlip eval-bundle ... --out`)")
    missing = [key for _, key in METRICS if key not in metrics["headline"]]
    if missing:
        raise ValueError(f"{path}: headline lacks {', '.join(missing)} (evaluated without captions or VQA?)")
    return metrics


def read_robustness_metrics(path: str | Path) -> dict:
    """An ``eval-bundle --out`` JSON, checked to hold every column of the robustness table (``TABLE``)."""
    metrics = read_eval_metrics(path)
    if EXACT_SET[1] not in metrics["headline"]:
        raise ValueError(f"{path}: headline lacks {EXACT_SET[1]} (an evaluation from before caption correctness "
                         f"was graded, or of data without scene graphs): re-run `dlip eval-bundle ... --out {path}` "
                         f"on the Shapes split")
    return metrics


def standard_error(metrics: dict, key: str) -> float | None:
    """The standard error of headline ``key`` recorded by ``eval-bundle`` (top-level ``sampling_error``), or None."""
    return (metrics.get("sampling_error") or {}).get(key)


def drop_standard_error(clean: dict, perturbed: dict, key: str) -> float | None:
    """sqrt(se_clean^2 + se_perturbed^2): the standard error of the drop if the two scores were independent (they are
    not: the same scenes re-rendered); None unless both JSONs record one."""
    a, b = standard_error(clean, key), standard_error(perturbed, key)
    return None if a is None or b is None else math.hypot(a, b)


def drops(clean: dict, perturbed: dict) -> dict[str, tuple[float, float]]:
    """Per table key: (clean - perturbed in points, that drop as % of clean); positive = worse when perturbed."""
    out = {}
    for _, key in TABLE:
        c, p = clean["headline"][key], perturbed["headline"][key]
        out[key] = (c - p, 100 * (c - p) / c if c else float("nan"))
    return out


def _with_error(value: float, se: float | None) -> str:
    """The value as "12.34 (+-0.56)", or "12.34" without a standard error (as ``dlip.eval.evaluate.with_error``)."""
    return f"{value:.2f}" if se is None else f"{value:.2f} (+-{se:.2f})"


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


def _drop_table(rows: dict[str, tuple[dict, dict]], d: dict) -> list[str]:
    """Every row: each metric clean, perturbed and the drop (CIDEr also as % of clean), with standard errors."""
    head, rule = ["model"], ["---"]
    for label, key in TABLE:
        cols = [f"{label} clean", f"{label} perturbed", f"{label} drop"]
        cols += [f"{label} drop (% of clean)"] if key in RELATIVE else []
        head += cols
        rule += ["---"] * len(cols)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(rule) + "|"]
    for name, (clean, perturbed) in rows.items():
        cells = [name]
        for _, key in TABLE:
            points, pct = d[name][key]
            cells += [_with_error(clean["headline"][key], standard_error(clean, key)),
                      _with_error(perturbed["headline"][key], standard_error(perturbed, key)),
                      _with_error(points, drop_standard_error(clean, perturbed, key))]
            cells += [f"{pct:.1f}%"] if key in RELATIVE else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _bound_table(rows: dict[str, tuple[dict, dict]], d: dict) -> list[str]:
    """Issue 23's check, every row: the drop of each ``BOUNDED`` metric at most ``DROP_BOUND`` points."""
    lines = ["| issue 23: drop <= " + f"{DROP_BOUND:g} points | "
             + " | ".join(f"{label} drop <= {DROP_BOUND:g}" for label, _ in BOUNDED) + " |",
             "|---|" + "---|" * len(BOUNDED)]
    for name, (clean, perturbed) in rows.items():
        cells = []
        for _, key in BOUNDED:
            got = d[name][key][0]
            cells.append(f"{_with_error(got, drop_standard_error(clean, perturbed, key))}: "
                         f"{'met' if got <= DROP_BOUND + _FLOAT_SLACK else 'NOT met'}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _teacher_table(names: list[str], d: dict) -> list[str]:
    """The older check, every row after the first: its drop at most the teacher's (the first row's) + ``MARGIN``."""
    teacher = names[0]
    lines = [f"| drop no worse than the teacher's ({teacher}) + {MARGIN:g} | "
             + " | ".join(label for label, _ in TABLE) + " |", "|---|" + "---|" * len(TABLE)]
    for name in names[1:]:
        cells = []
        for _, key in TABLE:
            index, unit = (1, "%") if key in RELATIVE else (0, "")
            got, allowed = d[name][key][index], d[teacher][key][index] + MARGIN
            met = got <= allowed + _FLOAT_SLACK
            cells.append(f"{got:.2f}{unit} (allowed {allowed:.2f}{unit}): {'met' if met else 'NOT met'}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def robustness_markdown(rows: dict[str, tuple[dict, dict]], machine: str) -> str:
    """The drop table (every row), issue 23's check (every row: exact set and VQA accuracy drop at most
    ``DROP_BOUND`` points) and the check against the teacher (every row after the first against the first)."""
    if not rows:
        raise ValueError("the robustness table needs at least one row")
    check_comparable(rows)
    d = {name: drops(clean, perturbed) for name, (clean, perturbed) in rows.items()}
    settings = next(iter(rows.values()))[0].get("settings", {})
    lines = _drop_table(rows, d)
    lines += ["", "Drop: clean minus perturbed, in points (positive: worse on the perturbed images); CIDEr is x100, "
              "so its drop is also given as % of the clean score. Exact set: % of test images whose beam-search "
              "caption names exactly the scene's set of (colour, shape) pairs, graded against its scene graph "
              "(`dlip/eval/caption_correctness.py`). (+-x): one standard error over the test items, where the "
              "eval-bundle JSON records it; a drop's is sqrt(se_clean^2 + se_perturbed^2), which treats the clean "
              "and perturbed scores as independent although they are the same scenes re-rendered (paired). Both "
              f"splits scored by `dlip eval-bundle` with ITC top-{settings.get('k')} + ITM re-ranking, "
              f"beam-{settings.get('num_beams')} captions, generated VQA answers, "
              f"{settings.get('limit_images') or 'all'} test images and {settings.get('limit_questions') or 'all'} "
              "questions; perturbed split from `dlip data perturb` (its data card has the command, seed and "
              f"ranges). Machine: {machine}."]
    lines += [""] + _bound_table(rows, d)
    lines += ["", f"Issue 23 (target 3): on the hard split (`dlip data perturb --preset hard`) teacher and student "
              f"drop at most {DROP_BOUND:g} points of caption exact set and of VQA accuracy; a model meets it when "
              "its measured drop is at most that (the standard error is shown, not used)."]
    names = list(rows)
    if len(names) > 1:
        lines += [""] + _teacher_table(names, d)
        lines += ["", f"The check against the teacher compares drops in points for TR@1, IR@1, BLEU-4, exact set and "
                  f"VQA acc, and the drop as % of clean for CIDEr: a model meets it when its drop is at most the "
                  f"teacher's + {MARGIN:g}."]
    return "\n".join(lines)
