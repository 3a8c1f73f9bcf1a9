"""The distillation table: percentages of the teacher, the issue's targets, and the block it fills."""

import json

import pytest

from dlip.eval.report import distill_markdown, percent_of_teacher, write_block


def _metrics(tr1, ir1, cider, vqa, params):
    return {"headline": {"retrieval_tr1": tr1, "retrieval_ir1": ir1, "caption_bleu4": 30.0, "caption_cider": cider,
                         "vqa_acc": vqa},
            "costs": {"params_total": params, "image_caption_gflops": params / 1e7},
            "baselines": {"random_retrieval": {"txt_r1": 0.1, "img_r1": 0.09},
                          "most_frequent_caption": {"caption": "two circles", "bleu_4": 0.0, "cider": 6.0},
                          "question_prior": {"acc": 29.0}}}


def _latency(seconds):
    return {task: {1: seconds, 32: 10 * seconds} for task in ("image_encode", "caption_greedy", "vqa")}


@pytest.fixture
def runs(tmp_path):
    rows = {"teacher": _metrics(20.0, 10.0, 200.0, 60.0, 10_000_000),
            "student": _metrics(19.6, 9.8, 196.0, 59.0, 1_500_000),  # 98% of TR@1 / IR@1 / CIDEr, 98.3% of VQA
            "control": _metrics(15.0, 8.0, 150.0, 50.0, 1_500_000)}
    out = {}
    for name, m in rows.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(m))
        out[name] = tmp_path / name
    return out


def test_percent_of_teacher():
    t = _metrics(20.0, 10.0, 200.0, 60.0, 1)["headline"]
    s = _metrics(10.0, 10.0, 100.0, 60.0, 1)["headline"]
    p = percent_of_teacher(s, t)
    assert p["TR@1"] == 50 and p["IR@1"] == 100 and p["CIDEr"] == 50 and p["VQA acc"] == 100 and p["mean"] == 75


def test_targets_met_and_missed(runs):
    text = distill_markdown(runs, {"teacher": _latency(0.05), "student": _latency(0.01), "control": _latency(0.01)})
    assert "| TR@1, % of the teacher | >= 97 | 98.0 (control: 75.0) | met |" in text
    assert "| parameters, % of the teacher | <= 20 | 15.0 | met |" in text
    assert "encode + greedy caption, batch 1 (ONNX Runtime CPU) | >= 4x | 5.00x | met |" in text
    assert "| student > control |" in text and text.rstrip().endswith("| met |")
    assert "| teacher | 10.00M |" in text and "| 50.0 | 500.0 |" in text  # encode b1 and b32 in ms
    slow = distill_markdown(runs, {"teacher": _latency(0.03), "student": _latency(0.01), "control": _latency(0.01)})
    assert "| 3.00x | NOT met |" in slow


def test_needs_three_rows_and_fills_only_its_block(runs, tmp_path):
    with pytest.raises(ValueError, match="exactly three"):
        distill_markdown({"teacher": runs["teacher"]}, {})
    out = tmp_path / "REPORT.md"
    out.write_text("intro\n<!-- results:begin -->\nteacher table\n<!-- results:end -->\n"
                   "<!-- distill:begin -->\nold\n<!-- distill:end -->\nend\n")
    write_block(out, "distill", "new table")
    text = out.read_text()
    assert "teacher table" in text and "new table" in text and "old" not in text and text.endswith("end\n")
    with pytest.raises(ValueError, match="ablation:begin"):
        write_block(out, "ablation", "x")
