"""DLIP distillation wiring: a micro student learns from the micro teacher; zero weights skip their terms; the
teacher stays frozen; students start from teacher layers."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dlip.config import INIT_PARTS, DistillConfig, model_preset, train_config_from_dict
from dlip.distill import step as step_module
from dlip.distill.models import init_student, part_of
from dlip.distill.teachers import load_teacher
from dlip.distill.step import DistillStep
from dlip.model.med import BlipMED
from dlip.run_folder import load_run
from dlip.data.batches import CaptionCollate, VQACollate
from dlip.train.batches import caption_dataset, vqa_dataset
from dlip.train.trainer import preprocess_for, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def distill_raw(shapes_dir, micro_run):
    raw = json.loads((CONFIGS / "micro_distill.json").read_text())
    raw["data"]["image_root"] = str(shapes_dir)
    raw["distill"]["teacher"] = str(micro_run)
    return raw


@pytest.fixture(scope="module")
def student_run(distill_raw, tmp_path_factory):
    torch.set_num_threads(1)
    return train(train_config_from_dict(distill_raw), tmp_path_factory.mktemp("distill") / "student", progress=False)


def _batch(micro_run):
    loaded = load_run(micro_run)
    ds = caption_dataset(loaded.config.data, preprocess_for(loaded.config.model))
    return CaptionCollate(loaded.tokenizer, 35)([ds[i] for i in range(0, 40, 5)]), loaded


def test_micro_distillation_lowers_distillation_losses(student_run):
    records = [json.loads(line) for line in (student_run / "log.jsonl").read_text().splitlines()]
    distill = [r for r in records if r["stage"] == "distill"]
    for term in ("hidden_vision_loss", "hidden_text_loss", "hidden_fusion_loss", "hidden_decoder_loss"):
        first = sum(r[term] for r in distill[:3]) / 3
        last = sum(r[term] for r in distill[-3:]) / 3
        assert last < first, (term, first, last)
    vqa = [r for r in records if r["stage"] == "vqa"]
    assert all("out_vqa_loss" in r and "vqa_loss" in r for r in vqa)


def test_student_run_loads_as_a_model_and_is_smaller(student_run, micro_run):
    student, teacher = load_run(student_run), load_run(micro_run)
    assert student.config.model.vision.hidden_size == 16
    n_s = sum(p.numel() for p in student.model.parameters())
    n_t = sum(p.numel() for p in teacher.model.parameters())
    assert n_s < n_t
    # the student shares the teacher's tokenizer
    assert student.tokenizer.vocab_size == teacher.tokenizer.vocab_size
    assert student.config.distill.teacher == str(micro_run)


def test_a_student_tokenizer_of_its_own_is_refused_before_anything_is_written(distill_raw, micro_run, tmp_path):
    """The distillation terms compare student and teacher on the same token ids, so the student must use the
    teacher's tokenizer: a configured data.tokenizer is a user error, not an internal assertion."""
    raw = json.loads(json.dumps(distill_raw))
    raw["data"]["tokenizer"] = str(micro_run / "tokenizer.json")
    with pytest.raises(ValueError, match=r"data\.tokenizer .* with distill"):
        train(train_config_from_dict(raw), tmp_path / "student", progress=False)
    assert not (tmp_path / "student").exists()


def test_zero_weight_terms_are_not_computed(micro_run, monkeypatch):
    batch, loaded = _batch(micro_run)
    teacher = loaded.model
    student = BlipMED(model_preset("micro-student-narrow").with_vocab(loaded.tokenizer.vocab_size, 0))
    calls = {"attn": 0, "hidden": 0, "teacher": 0}

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(step_module.terms, "attention_distill_loss",
                        count("attn", step_module.terms.attention_distill_loss))
    monkeypatch.setattr(step_module.terms, "hidden_distill_loss",
                        count("hidden", step_module.terms.hidden_distill_loss))
    teacher_encode = teacher.encode_image
    monkeypatch.setattr(teacher, "encode_image", count("teacher", teacher_encode))
    seen_kwargs = []
    student_encode = student.encode_image
    monkeypatch.setattr(student, "encode_image",
                        lambda *a, **k: (seen_kwargs.append(a[1:] + tuple(k.values())), student_encode(*a, **k))[1])

    weights = {"itc": 1.0, "itm": 1.0, "lm": 1.0, "hidden_vision": 1.0, "attn_vision": 0.0, "out_itc": 0.0}
    losses = DistillStep(student, teacher, loaded.tokenizer.special, weights, DistillConfig())(batch, None)
    assert "hidden_vision_loss" in losses and "attn_vision_loss" not in losses and "out_itc_loss" not in losses
    assert calls == {"attn": 0, "hidden": 1, "teacher": 1}
    assert seen_kwargs[-1] == (True, False)  # hidden states requested, attention maps never

    only_tasks = {"itc": 1.0, "itm": 1.0, "lm": 1.0, "hidden_text": 0.0}
    losses = DistillStep(student, teacher, loaded.tokenizer.special, only_tasks, DistillConfig())(batch, None)
    assert set(losses) == {"itc_loss", "itm_loss", "lm_loss"}
    assert calls["teacher"] == 1  # the control never runs the teacher


def test_teacher_is_frozen(micro_run):
    batch, loaded = _batch(micro_run)
    teacher = loaded.model
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = BlipMED(model_preset("micro-student").with_vocab(loaded.tokenizer.vocab_size, 0))
    weights = {k: 1.0 for k in ("itc", "itm", "lm", "hidden_vision", "hidden_fusion", "attn_text", "cross_fusion",
                                "out_itc", "out_itm", "out_lm")}
    step = DistillStep(student, teacher, loaded.tokenizer.special, weights, DistillConfig())
    step.train()
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    assert all(not name.startswith("teacher") for name, _ in step.named_parameters())
    losses = step(batch, None)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_student_from_teacher_layers(micro_run):
    loaded_teacher = load_teacher(micro_run)
    teacher, tokenizer = loaded_teacher.model, loaded_teacher.tokenizer
    student = BlipMED(model_preset("micro-student").with_vocab(tokenizer.vocab_size, 0))
    copied = init_student(student, teacher, "teacher")
    # 1 of 2 layers: every_kth keeps the teacher's last layer
    assert torch.equal(student.visual_encoder.blocks[0].fc1.weight, teacher.visual_encoder.blocks[1].fc1.weight)
    assert torch.equal(student.text_decoder.layers[0].self_attn.query.weight,
                       teacher.text_decoder.layers[1].self_attn.query.weight)
    assert torch.equal(student.text_encoder.word_embed.weight, teacher.text_encoder.word_embed.weight)
    assert "itm_head.weight" in copied
    narrow = BlipMED(model_preset("micro-student-narrow").with_vocab(tokenizer.vocab_size, 0))
    with pytest.raises(ValueError, match="no student layer parameter matches"):
        init_student(narrow, teacher, "teacher")


def test_weight_selection_starts_a_narrower_student_from_the_leading_slices_of_the_teacher(micro_run):
    loaded_teacher = load_teacher(micro_run)
    teacher, tokenizer = loaded_teacher.model, loaded_teacher.tokenizer
    narrow = BlipMED(model_preset("micro-student-narrow").with_vocab(tokenizer.vocab_size, 0))
    fresh = {k: v.clone() for k, v in narrow.state_dict().items()}
    copied = set(init_student(narrow, teacher, "select"))
    t_fc1 = teacher.visual_encoder.blocks[1].fc1.weight  # 1 of 2 layers: the teacher's last
    s_fc1 = narrow.visual_encoder.blocks[0].fc1.weight
    assert s_fc1.shape[0] < t_fc1.shape[0] and s_fc1.shape[1] < t_fc1.shape[1]
    assert torch.equal(s_fc1, t_fc1[:s_fc1.shape[0], :s_fc1.shape[1]])
    # the same leading channels everywhere: word embeddings, norms, the cross-attention's image side
    w = narrow.text_encoder.word_embed.weight
    assert torch.equal(w, teacher.text_encoder.word_embed.weight[:, :w.shape[1]])
    key = narrow.text_encoder.layers[0].cross_attn.key.weight
    assert torch.equal(key, teacher.text_encoder.layers[1].cross_attn.key.weight[:key.shape[0], :key.shape[1]])
    # every tensor with a teacher counterpart was selected; the rest kept its fresh values
    assert len(copied) > 0.9 * len(fresh)
    for name, value in narrow.state_dict().items():
        if name not in copied:
            assert torch.equal(value, fresh[name]), name


def test_init_parts_limit_which_parts_start_from_the_teacher(micro_run):
    loaded_teacher = load_teacher(micro_run)
    teacher, tokenizer = loaded_teacher.model, loaded_teacher.tokenizer

    def narrow():
        torch.manual_seed(0)
        return BlipMED(model_preset("micro-student-narrow").with_vocab(tokenizer.vocab_size, 0))

    everything = set(init_student(narrow(), teacher, "select"))
    by_part = {}
    for part in INIT_PARTS:
        student = narrow()
        fresh = {k: v.clone() for k, v in student.state_dict().items()}
        by_part[part] = set(init_student(student, teacher, "select", [part]))
        assert by_part[part] and all(part_of(name) == part for name in by_part[part]), part
        for name, value in student.state_dict().items():
            if name not in by_part[part]:
                assert torch.equal(value, fresh[name]), name  # every other part keeps its fresh weights
    assert by_part["vision"] >= {"visual_encoder.blocks.0.fc1.weight", "vision_proj.weight"}
    assert {"itm_head.weight", "text_proj.weight", "text_encoder.word_embed.weight"} <= by_part["text"]
    # the three parts together copy what "every part" copies, less the tensors of no part (the ITC temperature)
    outside = everything - set().union(*by_part.values())
    assert outside == {"temp"} and all(part_of(name) is None for name in outside)
    text_side = narrow()
    copied = set(init_student(text_side, teacher, "select", ["text", "decoder"]))
    assert copied == by_part["text"] | by_part["decoder"]
    s_fc1, t_fc1 = text_side.text_decoder.layers[0].fc1.weight, teacher.text_decoder.layers[1].fc1.weight
    assert torch.equal(s_fc1, t_fc1[:s_fc1.shape[0], :s_fc1.shape[1]])


def test_init_parts_are_checked():
    assert DistillConfig().init_parts == ["vision", "text", "decoder"]
    assert DistillConfig(init="select", init_parts=["vision"]).init_parts == ["vision"]
    with pytest.raises(ValueError, match="only init 'teacher' or 'select'"):
        DistillConfig(init="random", init_parts=["vision"])
    with pytest.raises(ValueError, match="unknown part 'fusion'"):
        DistillConfig(init="select", init_parts=["fusion"])
    with pytest.raises(ValueError, match="non-empty list"):
        DistillConfig(init="teacher", init_parts=[])
    with pytest.raises(ValueError, match="twice"):
        DistillConfig(init="teacher", init_parts=["text", "text"])
    student = BlipMED(model_preset("micro-student"))
    with pytest.raises(ValueError, match="only init 'teacher' or 'select'"):
        init_student(student, student, "random", ["text"])


def test_a_run_starts_only_the_named_parts_from_the_teacher(distill_raw, micro_run):
    from dlip.train.distributed import DistInfo
    from dlip.train.trainer import build_models

    raw = {**distill_raw, "distill": {**distill_raw["distill"], "init": "select", "init_parts": ["vision"]}}
    cfg = train_config_from_dict(raw)
    models = build_models(cfg, DistInfo(0, 1, 0, torch.device("cpu"), True))
    teacher = models.teacher
    s_fc1, t_fc1 = models.model.visual_encoder.blocks[0].fc1.weight, teacher.visual_encoder.blocks[1].fc1.weight
    assert torch.equal(s_fc1, t_fc1[:s_fc1.shape[0], :s_fc1.shape[1]])
    s_dec, t_dec = models.model.text_decoder.layers[0].fc1.weight, teacher.text_decoder.layers[1].fc1.weight
    assert not torch.equal(s_dec, t_dec[:s_dec.shape[0], :s_dec.shape[1]])


def test_a_teacher_whose_answer_decoder_reads_position_aware_image_tokens_distills(micro_run):
    """The teacher-conv-pos-reads kind of teacher (conv stem, output positions, answer decoder reading the image)
    drives every DLIP term of a BLIP-shaped student: its answer decoder reads a longer context than the student's, so
    only the answer logits are compared, and they align token by token."""
    batch, loaded = _batch(micro_run)
    base = loaded.config.model
    torch.manual_seed(0)
    teacher = BlipMED(dataclasses.replace(
        base, vision=dataclasses.replace(base.vision, stem="conv", output_pos_embed=True),
        vqa_decoder_reads_image=True)).eval()
    student = BlipMED(model_preset("micro-student").with_vocab(loaded.tokenizer.vocab_size, 0))
    ds = vqa_dataset(loaded.config.data, preprocess_for(loaded.config.model))
    vqa = VQACollate(loaded.tokenizer, 20, 8)([ds[i] for i in range(8)])
    weights = {k: 1.0 for k in ("itc", "itm", "lm", "vqa", "hidden_vision", "hidden_text", "hidden_fusion",
                                "hidden_decoder", "attn_vision", "attn_text", "attn_fusion", "attn_decoder",
                                "cross_fusion", "cross_decoder", "out_itc", "out_itm", "out_lm", "out_vqa")}
    step = DistillStep(student, teacher, loaded.tokenizer.special, weights, DistillConfig())
    step.train()
    losses = step(batch, vqa)
    assert set(losses) == {f"{k}_loss" for k in weights}
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert losses["out_vqa_loss"] > 0
    losses["out_vqa_loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.text_decoder.parameters())
