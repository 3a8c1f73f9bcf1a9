"""The ablation command on the micro teacher: rows become configs, runs, evaluations and one table with sampling
errors; the shipped grid tests the paper's findings."""

import json
from pathlib import Path

import pytest
import torch

from dlip import ablate as ablate_module
from dlip.ablate import ablate, row_config
from dlip.config import INIT_PARTS, model_preset, train_config_from_dict
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


def test_rows_initialise_some_parts_from_the_teacher(shapes_dir, micro_run):
    base = _base(shapes_dir, micro_run)
    vision = row_config(base, {"name": "v", "init": "select", "init_parts": ["vision"]})
    assert vision.distill.init == "select" and vision.distill.init_parts == ["vision"]
    assert base.distill.init == "random" and base.distill.init_parts == list(INIT_PARTS)  # untouched
    random = row_config(vision, {"name": "r", "init": "random"})  # init alone covers every part
    assert random.distill.init == "random" and random.distill.init_parts == list(INIT_PARTS)
    with pytest.raises(ValueError, match="only init 'teacher' or 'select'"):
        row_config(base, {"name": "bad", "init_parts": ["text"]})  # the base's init is random
    with pytest.raises(ValueError, match="unknown key 'init_part'"):
        row_config(base, {"name": "typo", "init_part": ["text"]})


def test_the_shipped_grid_tests_the_papers_findings():
    base = train_config_from_dict(json.loads((CONFIGS / "shapes_distill.json").read_text()))
    grid = json.loads((CONFIGS / "ablation_grid.json").read_text())
    rows = {r["name"]: row_config(base, r) for r in grid}
    names = list(rows)
    assert names[0] == "no distillation terms (init: weight selection)"
    dlip = rows["DLIP: weight selection, every part (main recipe)"]
    assert dlip.distill.init == "select" and dlip.distill.init_parts == list(INIT_PARTS)
    assert all(w == 0 for s in rows[names[0]].stages for k, w in s.weights.items() if k not in ("itc", "itm", "lm",
                                                                                                  "vqa"))
    assert rows["init: random (every part)"].distill.init == "random"
    assert rows["init: weight selection, image encoder only"].distill.init_parts == ["vision"]
    assert model_preset(dlip.preset).text.num_fusion_layers == 2
    assert rows["1 fusion layer"].model.text.num_fusion_layers == 1
    assert len(rows["decoder distilled separately"].stages) == 2 * len(dlip.stages)
    on = lambda cfg: {k for s in cfg.stages for k, v in s.weights.items() if v > 0}  # noqa: E731
    assert on(rows["representation only"]) - {"itc", "itm", "lm", "vqa"} == {
        "hidden_vision", "hidden_text", "hidden_fusion", "hidden_decoder"}
    assert {k for k in on(rows["attention only"]) if k.startswith(("hidden", "out"))} == set()
    # every row but the random one starts from the main recipe's weight selection
    assert {n for n, cfg in rows.items() if cfg.distill.init != "select"} == {"init: random (every part)"}


def test_ablate_writes_one_table_with_sampling_errors_and_resumes(shapes_dir, micro_run, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    grid = [{"name": "no distillation (control)", "weights": {"distill": 0}},
            {"name": "decoder distilled separately", "decoder_separate": True}]
    base = _base(shapes_dir, micro_run)
    settings = EvalSettings(k=2, num_beams=1)
    table = ablate(base, grid, tmp_path, settings, progress=False)
    text = table.read_text()
    lines = text.splitlines()
    assert lines[0] == ("| row | params | TR@1 (+-se) | IR@1 (+-se) | exact set (+-se) | VQA acc (+-se) | "
                        "mean of four (+-se) | CIDEr (+-se) | settings |")
    assert lines[1] == "|---|---|" + "---|" * 7
    assert len(lines) == 6 and lines[4] == ""  # header, rule, two rows, then the caption
    assert "| no distillation (control) |" in text and "DLIP terms: none" in text
    assert "decoder distilled separately" in lines[3]
    rows = json.loads((tmp_path / "ablation.json").read_text())
    assert [r["name"] for r in rows] == [g["name"] for g in grid]
    h, se = rows[0]["headline"], rows[0]["sampling_error"]
    assert f"| {h['retrieval_tr1']:.1f} (+-{se['retrieval_tr1']:.1f}) |" in lines[2]
    assert f"| {h['caption_exact_set']:.1f} (+-{se['caption_exact_set']:.1f}) | {h['vqa_acc']:.1f} " in lines[2]
    assert f"| {h['caption_cider']:.1f} (+-{se['caption_cider']:.1f}) | DLIP terms: none |" in lines[2]
    items = rows[0]["test_items"]
    assert "Each row: 4 training steps (2 distill + 2 vqa) from the same teacher" in lines[5]
    assert "captions beam 1 (exact set, CIDEr)" in lines[5] and "`dlip/eval/caption_correctness.py`" in lines[5]
    assert "The mean of four: TR@1, IR@1, exact set, VQA acc (CIDEr is shown, not in the mean)" in lines[5]
    assert f"scored on the whole test split ({items['images']:,} images" in lines[5]
    log = (tmp_path / "decoder-distilled-separately" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["stage"] for line in log][:2] == ["distill-encoders", "distill-decoder"]

    # the same grid and settings again: nothing is trained or evaluated
    def refuse(*args, **kwargs):
        raise AssertionError("should have been reused")

    monkeypatch.setattr(ablate_module, "train", refuse)
    monkeypatch.setattr(ablate_module, "evaluate", refuse)
    assert ablate(base, grid, tmp_path, settings, progress=False).read_text() == text
    # other evaluation settings: every row is scored again, none trained again
    evaluated = []
    real_evaluate = __import__("dlip.eval.evaluate", fromlist=["evaluate"]).evaluate
    monkeypatch.setattr(ablate_module, "evaluate", lambda *a, **k: evaluated.append(1) or real_evaluate(*a, **k))
    part = ablate(base, grid, tmp_path, EvalSettings(k=2, num_beams=1, limit_images=3, limit_questions=3),
                  progress=False).read_text()
    assert len(evaluated) == 2 and "part of the test split only: the first 3 images and 3 questions" in part
    # a row scored before captions were graded (no exact set) is scored again, the other row is not
    limited = EvalSettings(k=2, num_beams=1, limit_images=3, limit_questions=3)
    metrics_path = tmp_path / "no-distillation-control" / "metrics.json"
    old = json.loads(metrics_path.read_text())
    del old["sampling_error"]["caption_exact_set"]
    metrics_path.write_text(json.dumps(old))
    ablate(base, grid, tmp_path, limited, progress=False)
    assert len(evaluated) == 3 and "caption_exact_set" in json.loads(metrics_path.read_text())["sampling_error"]
    # a row whose config changed under the same name is trained again, then scored again (its metrics are older)
    trained = []
    monkeypatch.setattr(ablate_module, "train", lambda cfg, path, **k: trained.append(cfg.distill.init))
    ablate(base, [{"name": "no distillation (control)", "weights": {"distill": 0}, "init": "select"}], tmp_path,
           EvalSettings(k=2, num_beams=1, limit_images=3, limit_questions=3), progress=False)
    assert trained == ["select"] and len(evaluated) == 4


def test_the_mean_of_four_is_over_tr1_ir1_exact_set_and_vqa():
    from dlip.ablate import ablation_table, mean_of_four

    head = {"retrieval_tr1": 40.0, "retrieval_ir1": 30.0, "caption_exact_set": 70.0, "vqa_acc": 60.0,
            "caption_cider": 900.0}  # CIDEr far off the others: the mean would show it if it were in
    se = {"retrieval_tr1": 3.0, "retrieval_ir1": 4.0, "caption_exact_set": 0.0, "vqa_acc": 0.0, "caption_cider": 9.0}
    assert mean_of_four(head, se) == (50.0, 5.0 / 4)
    ungraded = {k: v for k, v in head.items() if k != "caption_exact_set"}
    assert mean_of_four(ungraded, se) is None
    rows = [{"name": name, "row": {"name": name}, "headline": h, "sampling_error": se, "params": 2_000_000,
             "stages": [{"weights": {"itc": 1.0}}]} for name, h in (("graded", head), ("no scenes", ungraded))]
    lines = ablation_table(rows).splitlines()
    assert lines[2] == ("| graded | 2.00M | 40.0 (+-3.0) | 30.0 (+-4.0) | 70.0 (+-0.0) | 60.0 (+-0.0) | 50.0 (+-1.2) | "
                        "900.0 (+-9.0) | DLIP terms: none |")
    assert lines[3].startswith("| no scenes | 2.00M | 40.0 (+-3.0) | 30.0 (+-4.0) | - | 60.0 (+-0.0) | - | 900.0")


def test_terms_report_tables_evaluated_runs_and_refuses_unevaluated_ones(tmp_path):
    from dlip.cli import main

    def run(name, weights, tr1, exact):
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text(json.dumps({"preset": "student-128", "distill": {"init": "select"},
                                                      "stages": [{"steps": 1200, "weights": weights}]}))
        head = {"retrieval_tr1": tr1, "retrieval_ir1": 40.0, "caption_exact_set": exact, "vqa_acc": 70.0,
                "caption_cider": 300.0}
        (path / "metrics.json").write_text(json.dumps({
            "headline": head, "sampling_error": {k: 1.0 for k in head},
            "test_items": {"images": 1000}, "costs": {"params_total": 1_450_000}}))
        return path

    control = run("control", {"itc": 1, "lm": 1, "out_lm": 0}, 60.0, 70.0)
    student = run("student", {"itc": 1, "lm": 1, "out_lm": 1}, 64.0, 74.0)
    out = tmp_path / "R.md"
    assert main(["terms-report", "--run", f"control={control}", "--run", f"outputs={student}", "--out", str(out)]) == 0
    text = out.read_text()
    assert "<!-- terms:begin -->" in text and "training steps: control: 1,200, outputs: 1,200" in text
    assert "| control | 1.45M | 60.0 (+-1.0) | 40.0 (+-1.0) | 70.0 (+-1.0) | 70.0 (+-1.0) | 60.0 (+-0.5) |" in text
    assert "| outputs | 1.45M | 64.0 (+-1.0) | 40.0 (+-1.0) | 74.0 (+-1.0) | 70.0 (+-1.0) | 62.0 (+-0.5) |" in text
    assert "DLIP terms: none;" in text and "DLIP terms: out_lm;" in text
    (student / "metrics.json").unlink()
    assert main(["terms-report", "--run", f"s={student}", "--out", str(out)]) != 0


def test_the_family_configs_keep_the_task_terms_and_one_family_of_dlip_terms():
    tasks = {"itc", "itm", "lm", "vqa"}
    full = train_config_from_dict(json.loads((CONFIGS / "shapes_distill_v2.json").read_text()))
    every = {k for s in full.stages for k, v in s.weights.items() if v > 0} - tasks
    families = {}
    for name in ("out", "attn"):
        cfg = train_config_from_dict(json.loads((CONFIGS / f"shapes_distill_v2_{name}.json").read_text()))
        on = {k for s in cfg.stages for k, v in s.weights.items() if v > 0}
        assert tasks <= on and cfg.stages[0].steps == full.stages[0].steps and cfg.preset == full.preset
        families[name] = on - tasks
    assert families["out"] == {k for k in every if k.startswith("out_")}
    assert families["attn"] == {k for k in every if k.startswith(("attn_", "cross_"))}
