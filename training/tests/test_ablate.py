"""The ablation command on the micro teacher: rows become configs, runs, evaluations and one table."""

import json
from pathlib import Path

import torch

from dlip.config import train_config_from_dict
from dlip.ablate import ablate, row_config
from dlip.eval.evaluate import EvalSettings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _base(shapes_dir, micro_run):
    raw = json.loads((CONFIGS / "micro_distill.json").read_text())
    raw["data"]["image_root"] = str(shapes_dir)
    raw["distill"]["teacher"] = str(micro_run)
    cfg = train_config_from_dict(raw)
    for stage, steps in zip(cfg.stages, (2, 2)):
        stage.steps = steps
    return cfg


def test_rows_change_only_what_they_name(shapes_dir, micro_run):
    base = _base(shapes_dir, micro_run)
    control = row_config(base, {"name": "c", "weights": {"distill": 0}})
    assert all(v == 0 for s in control.stages for k, v in s.weights.items() if k not in ("itc", "itm", "lm", "vqa"))
    assert control.stages[0].weights["itc"] == base.stages[0].weights["itc"]
    rep = row_config(base, {"name": "r", "weights": {"distill": 0, "hidden_text": 1}})
    assert {k for k, v in rep.stages[0].weights.items() if v > 0} == {"itc", "itm", "lm", "hidden_text"}
    sep = row_config(base, {"name": "s", "decoder_separate": True})
    assert [s.name for s in sep.stages] == ["distill-encoders", "distill-decoder", "vqa-encoders", "vqa-decoder"]
    assert sep.stages[0].frozen == ["text_decoder"] and sep.stages[0].weights["lm"] == 0
    assert sep.stages[1].trainable == ["text_decoder"] and sep.stages[1].weights["itc"] == 0
    fusion = row_config(base, {"name": "f", "preset": "micro-student", "model": {"text": {"fusion_layers": 0}}})
    assert fusion.model.text.fusion_layers == 0 and fusion.model.text.num_layers == 1
    assert base.model is None and base.stages[0].weights["hidden_text"] == 1  # the base is untouched


def test_ablate_writes_one_table(shapes_dir, micro_run, tmp_path):
    torch.set_num_threads(1)
    grid = [{"name": "no distillation (control)", "weights": {"distill": 0}},
            {"name": "decoder distilled separately", "decoder_separate": True}]
    table = ablate(_base(shapes_dir, micro_run), grid, tmp_path, EvalSettings(k=2, num_beams=1), progress=False)
    text = table.read_text()
    assert text.count("\n") == 4  # header, rule, two rows
    assert "| no distillation (control) |" in text and "DLIP terms: none" in text
    assert "decoder distilled separately" in text.splitlines()[3]
    rows = json.loads((tmp_path / "ablation.json").read_text())
    assert [r["name"] for r in rows] == [g["name"] for g in grid]
    log = (tmp_path / "decoder-distilled-separately" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["stage"] for line in log][:2] == ["distill-encoders", "distill-decoder"]
