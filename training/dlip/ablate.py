"""The ``ablate`` command: distillations over a grid of settings, each scored on the test split, in one table.

The grid (``configs/ablation_grid.json``) tests DLIP's findings at our scale: student initialisation (which parts
start from the teacher), the number of fusion layers, the decoder distilled separately or jointly, representation vs
attention. Each row starts from the same base distillation config and changes only what it names:

- ``weights``: loss weights merged onto every stage's weights (``"distill": 0`` first zeroes every DLIP term);
- ``model``: fields merged onto the student preset (e.g. ``{"text": {"fusion_layers": 1}}``);
- ``preset``: another student size;
- ``init`` / ``init_parts``: the student initialisation (``distill.init``) and, for "teacher" / "select", the parts
  it covers (``distill.init_parts``: "vision", "text", "decoder"); a row that sets ``init`` alone covers every part;
- ``decoder_separate``: split each stage in two halves: encoders first (decoder terms off, decoder frozen), then the
  decoder alone (only decoder terms, only ``text_decoder`` trainable).

Every metric is shown with its sampling error (one standard error over the test items, ``dlip.eval.sampling_error``),
so a difference between two rows smaller than about twice their errors is not evidence of anything.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from pathlib import Path

from .config import INIT_PARTS, LOSS_TERMS, TASK_TERMS, ModelConfig, TrainConfig, from_dict, model_preset, to_dict
from .eval.evaluate import EvalSettings, evaluate
from .eval.report import EXACT_SET_NOTE, FOUR, machine
from .run_folder import RunFolder, load_run
from .train.trainer import train

DECODER_TERMS = ("lm", "hidden_decoder", "attn_decoder", "cross_decoder", "out_lm", "vqa", "out_vqa")
ROW_KEYS = {"name", "weights", "model", "preset", "init", "init_parts", "decoder_separate"}
ROW_FILE = "ablation_row.json"  # in each row's run folder: the row and config it was trained with


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def row_config(base: TrainConfig, row: dict) -> TrainConfig:
    """The base distillation config with one grid row's changes applied."""
    unknown = sorted(set(row) - ROW_KEYS)
    if unknown:
        raise ValueError(f"ablation row {row.get('name', '?')!r}: unknown key '{unknown[0]}'")
    cfg = copy.deepcopy(base)
    if "preset" in row:
        cfg.preset = row["preset"]
    if "model" in row:
        merged = _merge(to_dict(model_preset(cfg.preset)), row["model"])
        cfg.model = from_dict(ModelConfig, merged, where=f"ablation row {row['name']}.model")
    if "init" in row or "init_parts" in row:
        parts = row.get("init_parts", list(INIT_PARTS) if "init" in row else cfg.distill.init_parts)
        cfg.distill = dataclasses.replace(cfg.distill, init=row.get("init", cfg.distill.init),
                                          init_parts=list(parts))  # validated again
    weights = dict(row.get("weights", {}))
    zero_all = weights.pop("distill", None) == 0
    for stage in cfg.stages:
        if zero_all:
            stage.weights = {k: (v if k in TASK_TERMS else 0.0) for k, v in stage.weights.items()}
        unknown = sorted(set(weights) - set(LOSS_TERMS))
        if unknown:
            raise ValueError(f"ablation row {row['name']!r}: unknown loss weight '{unknown[0]}'")
        stage.weights.update(weights)
    if row.get("decoder_separate"):
        cfg.stages = [half for stage in cfg.stages for half in _split_decoder(stage)]
    return cfg


def _split_decoder(stage):
    enc = dataclasses.replace(stage, name=f"{stage.name}-encoders", steps=stage.steps // 2,
                              weights={k: (0.0 if k in DECODER_TERMS else v) for k, v in stage.weights.items()},
                              frozen=["text_decoder"])
    dec = dataclasses.replace(stage, name=f"{stage.name}-decoder", steps=stage.steps - stage.steps // 2,
                              weights={k: (v if k in DECODER_TERMS else 0.0) for k, v in stage.weights.items()},
                              trainable=["text_decoder"])
    return [s for s in (enc, dec) if s.steps > 0 and any(v > 0 for v in s.weights.values())]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def ablate(base: TrainConfig, grid: list[dict], out: Path, settings: EvalSettings, overwrite: bool = False,
           progress: bool = True) -> Path:
    """Runs and evaluates every grid row under ``out/<row>``; writes ``out/ablation.json`` and ``out/ablation.md``
    (the table and its caption). A row's run is reused when its folder holds a run of the same row and config (an
    interrupted study resumes), and its evaluation when that was made with ``settings`` and has sampling errors."""
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for row in grid:
        cfg = row_config(base, row)
        run = RunFolder(out / slug(row["name"]))
        stamp = json.loads(json.dumps({"row": row, "config": to_dict(cfg)}))  # as it reads back from the file
        stamp_path = run.path / ROW_FILE
        if overwrite or not stamp_path.is_file() or json.loads(stamp_path.read_text()) != stamp:
            train(cfg, run.path, overwrite=True, progress=progress)
            stamp_path.write_text(json.dumps(stamp, indent=2))
        if not _evaluated_with(run, settings):
            loaded = load_run(run.path)
            metrics = evaluate(loaded.model, loaded.tokenizer, loaded.config, settings, progress=progress)
            run.metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
        results.append(table_row(row["name"], row, run.read_metrics(), [to_dict(s) for s in cfg.stages]))
    (out / "ablation.json").write_text(json.dumps(results, indent=2))
    (out / "ablation.md").write_text(ablation_table(results) + "\n" + ablation_caption(base, settings, results))
    return out / "ablation.md"


def table_row(name: str, row: dict, metrics: dict, stages: list[dict]) -> dict:
    """One row of the ablation table: a run's label, settings, evaluation (metrics.json) and stages (as dicts)."""
    return {"name": name, "row": row, "headline": metrics["headline"], "sampling_error": metrics["sampling_error"],
            "test_items": metrics["test_items"], "params": metrics["costs"]["params_total"], "stages": stages}


def _evaluated_with(run: RunFolder, settings: EvalSettings) -> bool:
    """Whether ``run`` has a metrics.json newer than its training, made with ``settings``, with sampling errors and
    graded captions (the exact set of the four; not required where the data has no scene graphs to grade against)."""
    if not run.metrics_path.is_file() or run.metrics_path.stat().st_mtime < (run.path / ROW_FILE).stat().st_mtime:
        return False
    metrics = run.read_metrics()
    graded = "caption_exact_set" in metrics.get("sampling_error", {}) or any(
        "correctness_skipped" in c for c in metrics.get("caption", {}).values())
    return ("sampling_error" in metrics and graded
            and metrics.get("settings") == json.loads(json.dumps(settings.__dict__)))


def _settings_text(r: dict) -> str:
    row = r["row"]
    parts = []
    on = sorted({k for s in r["stages"] for k, v in s["weights"].items() if v > 0 and k not in TASK_TERMS})
    parts.append("DLIP terms: " + (", ".join(on) if on else "none"))
    for key in ("preset", "init", "init_parts", "model"):
        if key in row:
            parts.append(f"{key}: {json.dumps(row[key])}")
    if row.get("decoder_separate"):
        parts.append("decoder distilled separately")
    return "; ".join(parts)


def mean_of_four(headline: dict, sampling_error: dict) -> tuple[float, float] | None:
    """The mean of the four headline metrics (``FOUR``: TR@1, IR@1, exact set, VQA acc) and its standard error,
    ``sqrt(sum of se^2) / 4``: the four treated as independent (they are scored on the same images, so this is an
    approximation); None where a run lacks one of them (exact set on data without scene graphs)."""
    if any(key not in headline or key not in sampling_error for _, key in FOUR):
        return None
    values = [headline[key] for _, key in FOUR]
    return sum(values) / len(FOUR), math.sqrt(sum(sampling_error[key] ** 2 for _, key in FOUR)) / len(FOUR)


def _value(headline: dict, sampling_error: dict, key: str) -> str:
    return f"{headline[key]:.1f} (+-{sampling_error[key]:.1f})" if key in headline else "-"


def ablation_table(results: list[dict]) -> str:
    """One row per grid row: parameters, each of the four metrics "x (+-se)", their mean, CIDEr (not one of the
    four), the row's settings."""
    columns = [f"{label} (+-se)" for label, _ in FOUR] + ["mean of four (+-se)", "CIDEr (+-se)"]
    lines = ["| row | params | " + " | ".join(columns) + " | settings |", "|---|---|" + "---|" * (len(columns) + 1)]
    for r in results:
        h, se = r["headline"], r["sampling_error"]
        cells = [_value(h, se, key) for _, key in FOUR]
        mean = mean_of_four(h, se)
        cells.append("-" if mean is None else f"{mean[0]:.1f} (+-{mean[1]:.1f})")
        cells.append(_value(h, se, "caption_cider"))
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.2f}M | " + " | ".join(cells) + f" | {_settings_text(r)} |")
    return "\n".join(lines) + "\n"


def ablation_caption(base: TrainConfig, settings: EvalSettings, results: list[dict]) -> str:
    """The line under the table: steps per row, which test items were scored, what +-se means, the machine."""
    total = sum(s.steps for s in base.stages)
    steps = f"{total:,} training steps"
    if len(base.stages) > 1:
        steps += " (" + " + ".join(f"{s.steps:,} {s.name}" for s in base.stages) + ")"
    items = results[0]["test_items"] if results else {}
    counted = ", ".join(f"{n:,} {what}" for what, n in items.items())
    whole = settings.limit_images is None and settings.limit_questions is None
    split = (f"scored on the whole test split ({counted})" if whole else
             f"scored on part of the test split only: the first {settings.limit_images or 'all'} images and "
             f"{settings.limit_questions or 'all'} questions ({counted})")
    return (f"Each row: {steps} from the same teacher, {split}; retrieval ITC top-"
            f"{settings.k} + ITM, captions beam {settings.num_beams} (exact set, CIDEr); {EXACT_SET_NOTE}. The mean "
            f"of four: " + ", ".join(label for label, _ in FOUR) + " (CIDEr is shown, not in the mean). +-se: one "
            f"standard error over the test items (recall: binomial over the queries; exact set, CIDEr and VQA: over "
            f"the per-image / per-question scores; the mean of four: sqrt(sum of se^2) / 4). Machine: {machine()}.\n")


def runs_results(runs: list[tuple[str, Path]]) -> list[dict]:
    """The table rows of distillation runs already trained and evaluated (``dlip eval``), one per (name, run
    folder): what ``ablate`` collects for its grid rows, read from each run's config.json and metrics.json."""
    results = []
    for name, path in runs:
        run = RunFolder(Path(path))
        metrics = run.read_metrics()  # says how to make it when it is missing
        if "sampling_error" not in metrics:
            raise ValueError(f"{path}: its evaluation has no sampling errors (re-run dlip eval {path})")
        config = run.read_config()
        row = {"preset": config.get("preset")}
        if config.get("distill"):
            row["init"] = config["distill"].get("init")
        results.append(table_row(name, row, metrics, config["stages"]))
    return results


def runs_caption(results: list[dict]) -> str:
    """The line under a table of full runs: each row's steps, the test items, what +-se means, the machine."""
    steps = ", ".join(f"{r['name']}: {sum(s['steps'] for s in r['stages']):,}" for r in results)
    items = results[0]["test_items"] if results else {}
    counted = ", ".join(f"{n:,} {what}" for what, n in items.items())
    return (f"Each row: one distillation run from the same teacher (training steps: {steps}), scored by `dlip eval` "
            f"({counted}); retrieval ITC top-k + ITM, captions beam search (exact set, CIDEr); {EXACT_SET_NOTE}. The "
            f"mean of four: " + ", ".join(label for label, _ in FOUR) + " (CIDEr is shown, not in the mean). +-se: "
            f"one standard error over the test items (the mean of four: sqrt(sum of se^2) / 4). Machine: "
            f"{machine()}.\n")
