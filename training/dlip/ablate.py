"""The ``ablate`` command: short distillations over a grid of settings, each evaluated, in one table.

The grid (``configs/ablation_grid.json``) reproduces DLIP's analysis at our scale: representation vs attention vs
both; unimodal vs multimodal information; decoder distilled separately or jointly; the number of fusion layers;
student initialisation. Each row starts from the same base distillation config and changes only what it names:

- ``weights``: loss weights merged onto every stage's weights (``"distill": 0`` first zeroes every DLIP term);
- ``model``: fields merged onto the student preset (e.g. ``{"text": {"fusion_layers": 1}}``);
- ``preset`` / ``init``: another student size / initialisation;
- ``decoder_separate``: split each stage in two halves: encoders first (decoder terms off, decoder frozen), then the
  decoder alone (only decoder terms, only ``text_decoder`` trainable).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

from .config import LOSS_TERMS, TASK_TERMS, ModelConfig, TrainConfig, from_dict, model_preset, to_dict
from .eval.evaluate import EvalSettings, evaluate
from .run_folder import RunFolder, load_run
from .train.trainer import train

DECODER_TERMS = ("lm", "hidden_decoder", "attn_decoder", "cross_decoder", "out_lm", "vqa", "out_vqa")
ROW_KEYS = {"name", "weights", "model", "preset", "init", "decoder_separate"}


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
    if "init" in row:
        cfg.distill.init = row["init"]
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
    """Runs and evaluates every grid row under ``out/<row>``; writes ``out/ablation.json`` and ``out/ablation.md``.
    Rows already evaluated (a ``metrics.json`` in their folder) are reused, so an interrupted study resumes."""
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for row in grid:
        cfg = row_config(base, row)
        run = RunFolder(out / slug(row["name"]))
        if overwrite or not run.metrics_path.is_file():
            train(cfg, run.path, overwrite=True, progress=progress)
            loaded = load_run(run.path)
            metrics = evaluate(loaded.model, loaded.tokenizer, loaded.config, settings, progress=progress)
            run.metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
        metrics = run.read_metrics()
        results.append({"name": row["name"], "row": row, "headline": metrics["headline"],
                        "params": metrics["costs"]["params_total"], "stages": [to_dict(s) for s in cfg.stages]})
    (out / "ablation.json").write_text(json.dumps(results, indent=2))
    (out / "ablation.md").write_text(ablation_table(results))
    return out / "ablation.md"


def _settings_text(r: dict) -> str:
    row = r["row"]
    parts = []
    on = sorted({k for s in r["stages"] for k, v in s["weights"].items() if v > 0 and k not in TASK_TERMS})
    parts.append("DLIP terms: " + (", ".join(on) if on else "none"))
    for key in ("preset", "init", "model"):
        if key in row:
            parts.append(f"{key}: {json.dumps(row[key])}")
    if row.get("decoder_separate"):
        parts.append("decoder distilled separately")
    return "; ".join(parts)


def ablation_table(results: list[dict]) -> str:
    lines = ["| row | params | TR@1 | IR@1 | CIDEr | VQA acc | mean of four | settings |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        h = r["headline"]
        four = [h["retrieval_tr1"], h["retrieval_ir1"], h["caption_cider"], h["vqa_acc"]]
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.2f}M | " + " | ".join(f"{v:.1f}" for v in four) +
                     f" | {sum(four) / 4:.1f} | {_settings_text(r)} |")
    return "\n".join(lines) + "\n"
