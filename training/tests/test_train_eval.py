"""End-to-end smoke tests on CPU: a micro pre-train + VQA run on 16 Shapes images, its folder, and its evaluation."""

import csv
import json
import math

import pytest

from dlip.eval.evaluate import EvalSettings, evaluate, evaluate_vqa, write_metrics
from dlip.infer.torch_backend import TorchBackend
from dlip.run_folder import load_run


def _records(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_run_folder_has_config_log_checkpoint_and_plot(micro_run):
    cfg = json.loads((micro_run / "config.json").read_text())
    assert cfg["model"]["vision"]["hidden_size"] == 32  # the resolved micro preset
    assert cfg["model"]["text"]["vocab_size"] > 7  # resolved from the trained tokenizer
    assert (micro_run / "tokenizer.json").is_file()
    assert (micro_run / "checkpoints" / "last.pt").is_file()
    assert (micro_run / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(micro_run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(_records(micro_run)) == 34  # log_every 1: 30 pre-train + 4 VQA steps
    assert {"lr", "itc_loss", "itm_loss", "lm_loss"} <= set(rows[0])


def test_pretraining_loss_goes_down(micro_run):
    records = [r for r in _records(micro_run) if r["stage"] == "pretrain"]
    total = [r["itc_loss"] + r["itm_loss"] + r["lm_loss"] for r in records]
    assert all(math.isfinite(t) for t in total)
    first, last = sum(total[:5]) / 5, sum(total[-5:]) / 5
    assert last < 0.85 * first, (first, last)


def test_vqa_stage_trains_vqa_loss(micro_run):
    vqa = [r for r in _records(micro_run) if r["stage"] == "vqa"]
    assert len(vqa) == 4 and all(math.isfinite(r["vqa_loss"]) for r in vqa)


@pytest.fixture(scope="module")
def micro_metrics(micro_run):
    loaded = load_run(micro_run)
    metrics = evaluate(loaded.model, loaded.tokenizer, loaded.config, EvalSettings(k=4, num_beams=2),
                       progress=False)
    write_metrics(metrics, micro_run, "micro")
    return metrics


def test_eval_reports_every_protocol_and_baseline(micro_metrics, micro_run):
    m = micro_metrics
    for ranking in ("itc", "itm"):
        r = m["retrieval"][ranking]
        assert set(r) >= {"txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10"}
        assert all(0 <= r[k] <= 100 for k in ("txt_r1", "img_r1"))
        assert r["txt_r1"] <= r["txt_r5"] <= r["txt_r10"]
    assert set(m["caption"]) == {"greedy", "beam2"}
    assert m["caption"]["greedy"]["cider"] >= 0
    assert 0 <= m["vqa"]["acc"] <= 100 and "acc_rank" in m["vqa"]
    b = m["baselines"]
    assert b["random_retrieval"]["img_r1"] < 50
    assert b["most_frequent_caption"]["caption"]
    assert 0 <= b["question_prior"]["acc"] <= 100
    costs = m["costs"]
    assert costs["params_total"] == sum(p.numel() for p in load_run(micro_run).model.parameters())
    assert costs["modules"]["vision"]["gflops"] > 0
    assert set(m["headline"]) == {"retrieval_tr1", "retrieval_ir1", "caption_bleu4", "caption_cider",
                                  "caption_exact_set", "vqa_acc"}
    written = json.loads((micro_run / "metrics.json").read_text())
    assert written["headline"] == pytest.approx(m["headline"])
    md = (micro_run / "metrics.md").read_text()
    assert "| ITC top-4 + ITM re-rank |" in md


def test_eval_grades_captions_against_the_scene_graphs(micro_metrics, micro_run):
    """Shapes data: every decoding's captions graded against scenes_test.jsonl, the beam's exact-set rate in the
    headline, the table in metrics.md."""
    from dlip.eval.caption_correctness import RATES, caption_correctness
    from dlip.eval.evaluate import shapes_scenes

    m = micro_metrics
    for name in ("greedy", "beam2"):
        c = m["caption"][name]["correctness"]
        assert set(c) == {key for key, _ in RATES} | {"sampling_error", "counts"}
        assert c["counts"]["captions"] == m["test_items"]["images"]
    beam = m["caption"]["beam2"]
    assert m["headline"]["caption_exact_set"] == beam["correctness"]["exact_set"]
    assert m["sampling_error"]["caption_exact_set"] == beam["correctness"]["sampling_error"]["exact_set"]
    # 8 test images, so the 10 examples are every caption: graded again against the scenes in file order, they
    # give the same numbers (the evaluation paired each caption with its own image's scene)
    cfg = load_run(micro_run).config
    names = [json.loads(line)["image"] for line in cfg.data.path("scenes_test.jsonl").read_text().splitlines()]
    assert len(beam["examples"]) == len(names) == 8
    scenes, why = shapes_scenes(cfg.data, names)
    assert why == ""
    assert caption_correctness(beam["examples"], [s.objects for s in scenes]) == beam["correctness"]
    md = (micro_run / "metrics.md").read_text()
    assert "## Caption correctness" in md and "| exact_set: " in md


def test_eval_skips_caption_correctness_without_scene_graphs(tmp_path):
    from dlip.config import DataConfig
    from dlip.eval.evaluate import shapes_scenes

    assert shapes_scenes(DataConfig(image_root=str(tmp_path)), ["a.png"])[0] is None
    (tmp_path / "scenes_test.jsonl").write_text("")
    scenes, why = shapes_scenes(DataConfig(image_root=str(tmp_path)), ["a.png"])
    assert scenes is None and "no scene for 1 test images" in why
    coco = DataConfig(image_root=str(tmp_path), test_captions="annotations/coco_karpathy_test.json")
    assert "not Shapes data" in shapes_scenes(coco, ["a.png"])[1]


def test_eval_reports_the_sampling_error_of_every_headline_metric(micro_metrics, micro_run):
    from dlip.eval.sampling_error import binomial_standard_error

    m = micro_metrics
    se = m["sampling_error"]
    assert set(se) == set(m["headline"]) | {"retrieval_tr5", "retrieval_ir5"}
    n = m["test_items"]
    assert n["texts"] >= n["images"] > 0 and n["questions"] > 0
    assert se["retrieval_tr1"] == pytest.approx(binomial_standard_error(m["headline"]["retrieval_tr1"], n["images"]))
    assert se["retrieval_ir5"] == pytest.approx(binomial_standard_error(m["retrieval"]["itm"]["img_r5"], n["texts"]))
    assert all(v >= 0 and math.isfinite(v) for v in se.values())
    beam = m["caption"]["beam2"]["sampling_error"]
    assert se["caption_cider"] == beam["cider"] and se["caption_bleu4"] == beam["bleu_4"]
    assert se["vqa_acc"] == m["vqa"]["sampling_error"]["acc"] and "acc_rank" in m["vqa"]["sampling_error"]
    assert json.loads((micro_run / "metrics.json").read_text())["sampling_error"] == pytest.approx(se)
    md = (micro_run / "metrics.md").read_text()
    tr1 = m["retrieval"]["itm"]["txt_r1"]
    assert f"| ITC top-4 + ITM re-rank | {tr1:.2f} (+-{se['retrieval_tr1']:.2f}) |" in md
    assert f"| generated | {m['vqa']['acc']:.2f} (+-{se['vqa_acc']:.2f}) |" in md
    assert "binomial, sqrt(p(1-p)/n)" in md and f"{n['questions']:,} questions" in md


def test_itm_rerank_only_touches_top_k(micro_run):
    """With k = all candidates, ITM re-ranking scores every pair; with k=1 the ITC top-1 stays first."""
    import torch

    from dlip.infer import tasks
    from dlip.infer.torch_backend import TorchBackend

    loaded = load_run(micro_run)
    backend = TorchBackend(loaded.model, loaded.tokenizer)
    images = torch.randn(3, 3, 32, 32).numpy()
    embeds, feats = tasks.encode_images(backend, images)
    ids, mask, tfeats = tasks.encode_texts(backend, ["a red circle", "two blue squares", "a star"], 35)
    s = tasks.retrieval_scores(backend, embeds, feats, ids, mask, tfeats, k=1)
    assert ((s["itm_i2t"] > -100).sum(axis=1) == 1).all()
    assert (s["itm_i2t"].argmax(1) == s["itc_i2t"].argmax(1)).all()
    s3 = tasks.retrieval_scores(backend, embeds, feats, ids, mask, tfeats, k=3)
    assert (s3["itm_i2t"] > -100).all()


def test_report_block_is_filled_from_metrics(micro_metrics, micro_run, tmp_path):
    from dlip.eval.report import BEGIN, END, write_report

    out = tmp_path / "REPORT.md"
    out.write_text(f"# Report\n\nprose stays\n\n{BEGIN}\nold numbers\n{END}\n\nmore prose\n")
    write_report({"micro": micro_run}, out)
    text = out.read_text()
    assert "old numbers" not in text and "prose stays" in text and "more prose" in text
    h = micro_metrics["headline"]
    assert "| micro | " in text and f"{h['vqa_acc']:.1f}" in text
    assert f"| {h['caption_exact_set']:.1f} | {h['vqa_acc']:.1f} |" in text  # the exact set column, then VQA
    # the four blind-baseline bars, exact set, then one bar per VQA question type of the test split
    types = micro_metrics["vqa"]["by_type"]
    assert text.count(" (met) |") + text.count(" (NOT met) |") == 5 + len(types) and len(types) >= 3
    assert all(f"| VQA accuracy, {t} questions >= 75 | 75.00 | {v:.2f} (" in text for t, v in types.items())


def test_init_from_continues_a_run(micro_run, tmp_path):
    import torch

    from dlip.config import StageConfig
    from dlip.train.trainer import train

    start = load_run(micro_run)
    cfg = start.config
    cfg.init_from = str(micro_run)
    cfg.stages = [StageConfig(name="vqa-more", steps=1, batch_size=4, lr=1e-12, min_lr=1e-12, warmup_steps=1,
                              weights={"itc": 0, "itm": 0, "lm": 0, "vqa": 1})]
    run = train(cfg, tmp_path / "more", progress=False)
    after = load_run(run)
    assert after.tokenizer.vocab_size == start.tokenizer.vocab_size
    for (name, a), b in zip(start.model.state_dict().items(), after.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-8), name  # lr 1e-12: the starting run's weights
    assert json.loads((run / "config.json").read_text())["init_from"] == str(micro_run)


def test_a_run_whose_answer_decoder_reads_the_image_trains_reloads_and_answers(tmp_path, shapes_dir, micro_config):
    import dataclasses

    import torch

    from dlip.config import model_preset, to_dict, train_config_from_dict
    from dlip.eval.evaluate import blind_baselines, evaluate_vqa
    from dlip.infer import tasks
    from dlip.infer.search import greedy_decode
    from dlip.infer.torch_backend import TorchBackend
    from dlip.objectives import with_first_token
    from dlip.train.trainer import preprocess_for, train

    torch.set_num_threads(1)
    model = dataclasses.replace(model_preset("micro"), vqa_decoder_reads_image=True)
    raw = dict(micro_config, model=to_dict(model), data=dict(micro_config["data"], image_root=str(shapes_dir)))
    cfg = train_config_from_dict(raw)
    cfg.stages = cfg.stages[1:]  # the VQA stage alone
    run = train(cfg, tmp_path / "run", progress=False)
    loaded = load_run(run)
    assert loaded.model.cfg.vqa_decoder_reads_image  # kept in the run's config
    vqa = [r for r in _records(run) if r["stage"] == "vqa"]
    assert vqa and all(math.isfinite(r["vqa_loss"]) for r in vqa)
    backend = TorchBackend(loaded.model, loaded.tokenizer, preprocess_for(loaded.model.cfg))
    out = evaluate_vqa(backend, loaded.config.data, EvalSettings(), progress=False)
    prior = blind_baselines(loaded.config.data, EvalSettings(), backend.preprocess)["question_prior"]
    assert 0 <= out["acc"] <= 100 and "acc" in prior
    # answers are generated from the question states followed by the image tokens
    m, tk = loaded.model, loaded.tokenizer
    with torch.no_grad():
        images = m.encode_image(torch.randn(2, 3, 32, 32)).last_hidden
        questions = ["what color is the circle?", "how many objects are there?"]
        q_ids, q_mask = tk(questions, 35)
        q = m.fuse(with_first_token(q_ids, tk.special.enc), q_mask, images).last_hidden
        ctx = torch.cat([q, images], 1)
        ctx_mask = torch.cat([q_mask, torch.ones(images.shape[:2], dtype=torch.long)], 1)
        expected = tk.batch_decode(greedy_decode(backend, ctx, ctx_mask.numpy(), tk.special.dec, tk.special.sep, 10))
        assert tasks.answer_questions(backend, images, questions, 35, 10) == expected


def test_vqa_ranking_can_be_left_out_and_the_generated_answers_stay_the_same(micro_run, micro_metrics):
    loaded = load_run(micro_run)
    settings = EvalSettings(k=4, num_beams=2, vqa_rank=False)
    vqa = evaluate_vqa(TorchBackend(loaded.model, loaded.tokenizer), loaded.config.data, settings, progress=False)
    assert "acc_rank" not in vqa and "acc_rank" not in vqa["sampling_error"]
    assert vqa["acc"] == micro_metrics["vqa"]["acc"]
