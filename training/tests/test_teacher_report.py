"""The teacher table of ``dlip report``: the exact-set column and the bars, issue 23's included (exact set, every VQA
question type, TR@1 / IR@1 against the previous teacher's numbers given on the command line)."""

import json

import pytest

from dlip.eval.report import results_markdown


def _metrics(tr1, ir1, exact, by_type):
    head = {"retrieval_tr1": tr1, "retrieval_ir1": ir1, "caption_bleu4": 40.0, "caption_cider": 190.0,
            "vqa_acc": sum(by_type.values()) / len(by_type)}
    if exact is not None:
        head["caption_exact_set"] = exact
    return {"headline": head, "settings": {"k": 16, "num_beams": 3, "max_caption_tokens": 30},
            "retrieval": {"itc": {"txt_r1": tr1 - 2, "img_r1": ir1 - 1}},
            "vqa": {"acc": head["vqa_acc"], "by_type": by_type},
            "costs": {"params_total": 12_000_000, "image_caption_gflops": 1.5},
            "baselines": {"random_retrieval": {"txt_r1": 0.1, "img_r1": 0.02},
                          "most_frequent_caption": {"caption": "two circles", "bleu_4": 1.0, "cider": 6.0},
                          "question_prior": {"acc": 29.0}}}


def _run(tmp_path, name, metrics):
    run = tmp_path / name
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "log.jsonl").write_text(json.dumps({"stage": "train", "wall_time_s": 600.0}) + "\n")
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


@pytest.fixture
def runs(tmp_path):
    return {"new teacher": _run(tmp_path, "new", _metrics(35.0, 24.0, 88.5, {"color": 95.0, "shape": 80.0,
                                                                            "relation": 74.5})),
            # evaluated before captions were graded, and without relation questions
            "old teacher": _run(tmp_path, "old", _metrics(33.0, 22.9, None, {"color": 90.0, "shape": 31.0}))}


def test_exact_set_column_and_issue_23_bars(runs):
    text = results_markdown(runs)
    assert "| BLEU-4 | CIDEr | exact set | VQA acc | training wall time |" in text
    assert "| 40.0 | 190.0 | 88.5 | 83.2 | 10.0 min |" in text  # the new teacher's row
    assert "| 40.0 | 190.0 | - | 60.5 | 10.0 min |" in text  # no exact set in the old teacher's metrics.json
    assert "| caption exact set >= 85 | 85.00 | 88.50 (met) | not measured |" in text
    # one row per question type found in any run, in the data card's order
    assert "| VQA accuracy, color questions >= 75 | 75.00 | 95.00 (met) | 90.00 (met) |" in text
    assert "| VQA accuracy, shape questions >= 75 | 75.00 | 80.00 (met) | 31.00 (NOT met) |" in text
    assert "| VQA accuracy, relation questions >= 75 | 75.00 | 74.50 (NOT met) | not measured |" in text
    assert text.index("color questions") < text.index("shape questions") < text.index("relation questions")
    assert "| CIDEr >= 2x the most frequent caption | 12.00 |" in text  # the existing bars stay
    assert "previous teacher" not in text  # no reference given: no rows for it
    # the footer says what is measured: beam 3 and where the exact set is defined
    assert "captions: beam search 3, at most 30 tokens (BLEU-4, CIDEr and exact set)" in text
    assert "`dlip/eval/caption_correctness.py`" in text


def test_reference_bars_come_from_the_command_line(runs, tmp_path):
    from dlip.cli import main

    text = results_markdown(runs, reference_tr1=33.0, reference_ir1=24.5)
    assert "| TR@1 >= the previous teacher's | 33.00 | 35.00 (met) | 33.00 (met) |" in text
    assert "| IR@1 >= the previous teacher's | 24.50 | 24.00 (NOT met) | 22.90 (NOT met) |" in text
    assert "The previous teacher's numbers (TR@1 33, IR@1 24.5): given on the command line" in text
    only_tr1 = results_markdown(runs, reference_tr1=33.0)
    assert "TR@1 >= the previous teacher's" in only_tr1 and "IR@1 >= the previous teacher's" not in only_tr1

    out = tmp_path / "REPORT.md"
    args = [a for name, run in runs.items() for a in ("--run", f"{name}={run}")]
    assert main(["report", *args, "--reference-tr1", "33.0", "--reference-ir1", "24.5", "--out", str(out)]) == 0
    assert "| IR@1 >= the previous teacher's | 24.50 | 24.00 (NOT met) |" in out.read_text()

    # or read from the previous teacher's metrics.json instead of typed
    assert main(["report", *args, "--reference-run", str(runs["old teacher"]), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| TR@1 >= the previous teacher's | 33.00 | 35.00 (met) | 33.00 (met) |" in text
    assert "| IR@1 >= the previous teacher's | 22.90 | 24.00 (met) | 22.90 (met) |" in text
    assert f"(TR@1 33, IR@1 22.9): from {runs['old teacher']}/metrics.json" in text
    assert main(["report", *args, "--reference-run", str(runs["old teacher"]), "--reference-tr1", "1",
                 "--out", str(out)]) == 2
