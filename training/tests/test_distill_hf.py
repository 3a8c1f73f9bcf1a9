"""A Hugging Face BLIP checkpoint directory (weights + tokenizer, as save_pretrained writes them) as the teacher of a
distillation run: the student adopts the teacher's tokenizer and trains with every DLIP term."""

import json
import math
from pathlib import Path

import pytest
import torch

from dlip.config import train_config_from_dict
from dlip.data.tokenizer import TextTokenizer
from dlip.train.trainer import train

transformers = pytest.importorskip("transformers")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
WORDS = ["a", "an", "the", "of", "and", "is", "there", "what", "color", "shape", "how", "many", "are", "where", "red",
         "green", "blue", "yellow", "purple", "orange", "gray", "black", "circle", "square", "triangle", "diamond",
         "star", "small", "large", "left", "right", "top", "bottom", "center", "yes", "no", "##s", "two", "three"]


@pytest.fixture(scope="module")
def hf_teacher_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "blip-vqa"
    src = out.parent / "vocab"
    src.mkdir()
    (src / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = transformers.BertTokenizerFast.from_pretrained(str(src))
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=len(tok),
                max_position_embeddings=40, bos_token_id=tok.bos_token_id, sep_token_id=tok.sep_token_id,
                pad_token_id=0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    torch.manual_seed(0)
    model = transformers.BlipForQuestionAnswering(
        transformers.BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=16))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_distill_from_a_hugging_face_blip_directory(hf_teacher_dir, shapes_dir, tmp_path):
    raw = json.loads((CONFIGS / "micro_distill.json").read_text())
    raw["data"]["image_root"] = str(shapes_dir)
    raw["distill"]["teacher"] = str(hf_teacher_dir)
    cfg = train_config_from_dict(raw)
    for stage in cfg.stages:
        stage.steps = 2
    torch.set_num_threads(1)
    run = train(cfg, tmp_path / "student", progress=False)
    student_tok = TextTokenizer.from_file(run / "tokenizer.json")
    teacher_tok = TextTokenizer.from_pretrained_dir(hf_teacher_dir)
    assert student_tok.special == teacher_tok.special and student_tok.vocab_size == teacher_tok.vocab_size
    assert student_tok(["a red circle"], 10)[0].tolist() == teacher_tok(["a red circle"], 10)[0].tolist()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"hidden_decoder_loss", "cross_fusion_loss", "out_lm_loss"} <= set(records[0])
    assert all(math.isfinite(v) for r in records for k, v in r.items() if k.endswith("_loss"))
