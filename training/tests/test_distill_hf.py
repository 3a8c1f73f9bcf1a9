"""Hugging Face BLIP checkpoints (save_pretrained directories built by transformers, random weights, tiny sizes) as the
teachers of a distillation: each term comes from the checkpoint that holds the parts it reads, a term none holds is
refused before the first step, and the student distilled from two checkpoints exports and runs in onnxruntime."""

import json
import math
from pathlib import Path

import pytest
import torch

from dlip.cli import main
from dlip.config import DataConfig, DistillConfig, model_preset
from dlip.data.batches import CaptionCollate, VQACollate
from dlip.data.tokenizer import TextTokenizer
from dlip.distill import terms
from dlip.distill.step import DistillStep
from dlip.distill.teachers import TERM_NEEDS, assign_terms, load_teachers
from dlip.model.med import BlipMED
from dlip.objectives import pretrain_forward, vqa_forward
from dlip.run_folder import load_run
from dlip.train.batches import caption_dataset, vqa_dataset
from dlip.train.trainer import preprocess_for

pytest.importorskip("transformers")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL_TERMS = tuple(TERM_NEEDS)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    """One tiny random-weight checkpoint of each HF BLIP class, sharing one tokenizer (BERT layout, [DEC], no [ENC])."""
    from dlip.hf.stand_in import write_stand_in

    root = tmp_path_factory.mktemp("hf")
    return {kind: write_stand_in(root / kind, kind, "tiny", seed=i)
            for i, kind in enumerate(("retrieval", "captioning", "vqa"))}


def _distill_config(tmp_path, shapes_dir, weights: dict[str, float], steps: int = 2) -> Path:
    """micro_distill.json with one stage of ``steps`` steps and these weights."""
    raw = json.loads((CONFIGS / "micro_distill.json").read_text())
    raw["data"]["image_root"] = str(shapes_dir)
    raw["stages"] = [dict(raw["stages"][0], steps=steps, weights=weights)]
    path = tmp_path / "distill.json"
    path.write_text(json.dumps(raw))
    return path


def test_each_term_comes_from_the_first_checkpoint_that_holds_its_parts(hf_dirs, shapes_dir):
    teachers = load_teachers([hf_dirs["retrieval"], hf_dirs["captioning"], hf_dirs["vqa"]])
    assert [t.kind for t in teachers] == ["BlipForImageTextRetrieval", "BlipForConditionalGeneration",
                                          "BlipForQuestionAnswering"]
    sources = assign_terms(teachers, {k: 1.0 for k in ("itm", "lm", "vqa", *ALL_TERMS)})
    assert set(sources) == set(ALL_TERMS)  # the task terms read no teacher
    for term in ("hidden_vision", "hidden_text", "hidden_fusion", "attn_fusion", "cross_fusion", "out_itc",
                 "out_itm"):
        assert sources[term] == 0, term
    for term in ("hidden_decoder", "attn_decoder", "cross_decoder", "out_lm"):
        assert sources[term] == 1, term  # the captioning decoder reads image tokens; the VQA one question states
    assert sources["out_vqa"] == 2

    # the step computes each term from that teacher: out_lm against the captioning model's logits, out_vqa against
    # the VQA model's
    tok = teachers[0].tokenizer
    student_cfg = model_preset("micro-student-narrow").with_vocab(tok.vocab_size, tok.special.pad)
    torch.manual_seed(0)
    student = BlipMED(student_cfg)
    data = DataConfig(image_root=str(shapes_dir))
    pre = preprocess_for(student_cfg)
    captions = CaptionCollate(tok, 20)([caption_dataset(data, pre)[i] for i in range(0, 20, 5)])
    questions = VQACollate(tok, 20, 8)([vqa_dataset(data, pre)[i] for i in range(4)])
    weights = {"out_lm": 1.0, "out_vqa": 1.0, "out_itm": 1.0, "lm": 1.0}
    step = DistillStep(student, [t.model for t in teachers], tok.special, weights, DistillConfig(),
                       sources=assign_terms(teachers, weights)).eval()
    with torch.no_grad():
        losses = step(captions, questions)
        s = pretrain_forward(student, captions, tok.special, {"itm": 1.0, "lm": 1.0})
        t_cap = pretrain_forward(teachers[1].model, captions, tok.special, {"lm": 1.0}, unimodal=False,
                                 similarity=False)  # it has no text encoder
        mask = captions.attention_mask
        next_mask = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
        expected_lm = terms.logit_distill_loss(s.decoder.logits, t_cap.decoder.logits, next_mask, 1.0)
        *_, s_dec = vqa_forward(student, questions, tok.special)
        *_, t_dec = vqa_forward(teachers[2].model, questions, tok.special)
        next_a = torch.cat([questions.answer_mask[:, 1:], torch.zeros_like(questions.answer_mask[:, :1])], dim=1)
        expected_vqa = terms.logit_distill_loss(s_dec.logits, t_dec.logits, next_a, 1.0)
    assert torch.allclose(losses["out_lm_loss"], expected_lm)
    assert torch.allclose(losses["out_vqa_loss"], expected_vqa)
    assert set(losses) == {"out_lm_loss", "out_vqa_loss", "out_itm_loss", "lm_loss"}
    # the random text stacks a checkpoint does not hold are dropped: no pass can read them
    assert teachers[1].model.text_encoder is None and teachers[0].model.text_decoder is None
    with pytest.raises(TypeError):
        pretrain_forward(teachers[1].model, captions, tok.special, {"lm": 1.0})


def test_a_term_no_checkpoint_holds_is_refused_before_the_first_step(hf_dirs, shapes_dir, tmp_path, capsys):
    """A captioning checkpoint has no text encoder and no ITM head: distilling ITM outputs from it is refused, naming
    the term and the parts, before a run folder is made. The student's own ITM loss (ground truth) needs no teacher."""
    config = _distill_config(tmp_path, shapes_dir, {"itm": 1.0, "lm": 1.0, "out_lm": 1.0, "out_itm": 1.0})
    out = tmp_path / "refused"
    status = main(["distill", "--teacher", str(hf_dirs["captioning"]), "--config", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "no teacher can provide 1 distillation term(s): " in err
    assert (f"'out_itm' needs the teacher parts vision, text_encoder, itm_head [{hf_dirs['captioning']} "
            f"(BlipForConditionalGeneration) lacks text_encoder, itm_head]") in err
    assert not out.exists()

    # a VQA checkpoint's decoder answers questions: caption-batch decoder terms are refused from it too
    config = _distill_config(tmp_path, shapes_dir, {"lm": 1.0, "hidden_decoder": 1.0, "out_itc": 1.0})
    status = main(["distill", "--teacher", str(hf_dirs["vqa"]), "--config", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and not out.exists()
    assert "2 distillation term(s)" in err and "(BlipForQuestionAnswering) lacks caption_decoder]" in err
    assert "(BlipForQuestionAnswering) lacks vision_proj, text_proj]" in err

    # with the retrieval checkpoint added, out_itm has a teacher; the task terms alone need none of its parts
    config = _distill_config(tmp_path, shapes_dir, {"itm": 1.0, "lm": 1.0, "out_lm": 1.0, "out_itm": 1.0}, steps=1)
    status = main(["distill", "--teacher", str(hf_dirs["captioning"]), "--teacher", str(hf_dirs["retrieval"]),
                   "--config", str(config), "--out", str(out)])
    assert status == 0
    assert {"out_itm_loss", "out_lm_loss"} <= set(json.loads((out / "log.jsonl").read_text().splitlines()[0]))


def test_distil_from_two_checkpoints_then_export_and_run_in_onnxruntime(hf_dirs, shapes_dir, tmp_path):
    from dlip.eval.bundle import compare_decoding
    from dlip.infer.ort_backend import OrtBackend
    from dlip.infer.torch_backend import TorchBackend

    weights = {k: 1.0 for k in ("itc", "itm", "lm", *ALL_TERMS) if k != "out_vqa"}  # no VQA checkpoint given
    config = _distill_config(tmp_path, shapes_dir, weights, steps=3)
    run = tmp_path / "student"
    torch.set_num_threads(1)
    assert main(["distill", "--teacher", str(hf_dirs["retrieval"]), "--teacher", str(hf_dirs["captioning"]),
                 "--config", str(config), "--init", "select", "--out", str(run)]) == 0

    loaded = load_run(run)
    assert loaded.config.distill.teacher == [str(hf_dirs["retrieval"]), str(hf_dirs["captioning"])]
    # the run's tokenizer is the checkpoints' with [ENC] added: the same ids, and the embeddings have its size
    teacher_tok = TextTokenizer.from_pretrained_dir(hf_dirs["captioning"])
    assert loaded.tokenizer.vocab_size == teacher_tok.vocab_size == loaded.model.cfg.text.vocab_size
    assert loaded.tokenizer.special == teacher_tok.special
    assert loaded.tokenizer.tokenizer.id_to_token(loaded.tokenizer.special.enc) == "[ENC]"
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {f"{k}_loss" for k in weights} <= set(records[-1])
    assert all(math.isfinite(v) for r in records for k, v in r.items() if k.endswith("_loss"))

    # export with the documented command, then the bundle's greedy captions and answers equal the run's own
    bundle = tmp_path / "bundle"
    assert main(["export", str(run), "--out", str(bundle)]) == 0
    ort = OrtBackend(bundle)
    assert ort.tokenizer.special == loaded.tokenizer.special
    result = compare_decoding(TorchBackend(loaded.model, loaded.tokenizer), ort, loaded.config.data, limit=3,
                              progress=False)
    assert result["images"] == 3 and result["captions_identical"] == 3, result
    assert result["answers_identical"] == result["questions"] == 3, result


def test_select_init_takes_each_part_from_the_first_checkpoint_that_holds_it(hf_dirs):
    """Captioning then retrieval: vision and decoder from the captioning checkpoint (first), the text encoder, ITC
    projections and ITM head from the retrieval one (the captioning checkpoint lacks them); nothing random is copied."""
    from dlip.distill.models import init_student_from

    cap, ret = load_teachers([hf_dirs["captioning"], hf_dirs["retrieval"]])
    tok = cap.tokenizer
    student = BlipMED(model_preset("micro-student-narrow").with_vocab(tok.vocab_size, tok.special.pad))
    copied = set(init_student_from(student, [cap, ret], "select"))

    def lead(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t[tuple(slice(0, n) for n in like.shape)]

    pairs = {"visual_encoder.patch_embed.weight": cap, "text_decoder.word_embed.weight": cap,
             "text_encoder.word_embed.weight": ret, "vision_proj.weight": ret, "text_proj.weight": ret,
             "itm_head.weight": ret}
    s_state = student.state_dict()
    for name, teacher in pairs.items():
        assert name in copied, name
        assert torch.equal(s_state[name], lead(teacher.model.state_dict()[name], s_state[name])), name
        other = (ret if teacher is cap else cap).model.state_dict()
        assert name not in other or not torch.equal(s_state[name], lead(other[name], s_state[name])), name
    assert "text_decoder.word_embed.weight" not in ret.model.state_dict()  # dropped: the checkpoint lacks it
    assert "temp" not in copied  # no HF class holds BLIP's ITC temperature


def test_teachers_must_share_a_tokenizer_and_the_teacher_list_is_checked(hf_dirs, micro_run):
    with pytest.raises(ValueError, match="have different tokenizers"):
        load_teachers([hf_dirs["captioning"], micro_run])  # our micro run trained its own WordPiece
    with pytest.raises(ValueError, match="lists a directory twice"):
        DistillConfig(teacher=[str(hf_dirs["vqa"]), str(hf_dirs["vqa"])])
    with pytest.raises(ValueError, match="non-empty list of directories"):
        DistillConfig(teacher=[])
    assert DistillConfig(teacher="run").teachers == ["run"] and DistillConfig().teachers == []
    assert DistillConfig(teacher=["a", "b"]).teachers == ["a", "b"]
