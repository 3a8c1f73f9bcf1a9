"""WordPiece training, TextTokenizer encoding/decoding, save/load, and reading a Hugging Face BLIP tokenizer dir."""

from __future__ import annotations

import json

import pytest
import torch

from dlip.data.errors import DataError
from dlip.data.tokenizer import SPECIAL_TOKENS, SpecialTokens, TextTokenizer, train_wordpiece

CORPUS = [
    "a red circle left of a blue square",
    "a blue square right of a red circle",
    "a green triangle above a small yellow circle",
    "two red circles and one big green square",
    "what color is the triangle",
    "how many circles are there",
] * 5


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer(train_wordpiece(CORPUS, vocab_size=200))


def test_special_ids_fixed(tok):
    assert tok.special == SpecialTokens(pad=0, unk=1, cls=2, sep=3, mask=4, enc=5, dec=6)
    assert [tok.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(7))
    assert 7 < tok.vocab_size <= 200


def test_round_trip_lowercases_and_normalises_whitespace(tok):
    for text in ["A Red  circle", "  how many\tcircles are there ", "a SMALL yellow triangle above a blue square"]:
        ids, _ = tok([text], max_length=32)
        assert tok.decode(ids[0]) == " ".join(text.lower().split())
    assert tok.batch_decode(tok(["a red circle", "two squares"], max_length=32)[0]) == ["a red circle", "two squares"]


def test_cls_sep_placement_and_padding_to_longest(tok):
    ids, mask = tok(["a red circle", "a"], max_length=32)
    assert ids.dtype == torch.long and mask.dtype == torch.long
    n = int(mask[0].sum())
    assert ids.shape == (2, n)  # padded to the longest in the batch, not to max_length
    assert ids[0, 0] == tok.special.cls and ids[0, n - 1] == tok.special.sep
    assert ids[1].tolist() == [2, tok.tokenizer.token_to_id("a"), 3] + [0] * (n - 3)
    assert mask[1].tolist() == [1, 1, 1] + [0] * (n - 3)
    assert tok.decode(ids[1], skip_special_tokens=False).startswith("[CLS] a [SEP]")


def test_truncation_keeps_sep_last(tok):
    text = "a red circle left of a blue square and a green triangle"
    full, _ = tok([text], max_length=64)
    ids, mask = tok([text, "a"], max_length=5)
    assert ids.shape == (2, 5) and full.shape[1] > 5
    assert ids[0].tolist() == full[0, :4].tolist() + [tok.special.sep]
    assert mask[0].tolist() == [1] * 5
    with pytest.raises(ValueError, match="max_length"):
        tok(["a"], max_length=1)
    with pytest.raises(TypeError, match="list of strings"):
        tok("a red circle", max_length=8)


def test_unknown_characters_map_to_unk(tok):
    ids, _ = tok(["a ☃ circle"], max_length=16)
    assert tok.special.unk in ids[0].tolist()


def test_save_load_identical_ids(tok, tmp_path):
    path = tmp_path / "bundle" / "tokenizer.json"
    tok.save(path)
    loaded = TextTokenizer.from_file(path)
    texts = ["A blue square RIGHT of a red circle", "how many triangles?"]
    for a, b in zip(tok(texts, max_length=12), loaded(texts, max_length=12)):
        assert torch.equal(a, b)
    assert loaded.special == tok.special and loaded.vocab_size == tok.vocab_size
    saved = json.loads(path.read_text())  # the server needs every step inside the file
    assert saved["normalizer"]["type"] == "BertNormalizer" and saved["normalizer"]["lowercase"] is True
    assert saved["pre_tokenizer"]["type"] == "BertPreTokenizer"
    assert saved["post_processor"]["type"] == "TemplateProcessing"
    assert saved["decoder"]["type"] == "WordPiece"


def test_from_file_errors(tmp_path):
    with pytest.raises(DataError, match=r"no such tokenizer file: .*missing\.json"):
        TextTokenizer.from_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(DataError, match=r"bad\.json: not a valid tokenizer\.json"):
        TextTokenizer.from_file(bad)


def test_from_pretrained_dir_reads_blip_special_ids(tmp_path):
    transformers = pytest.importorskip("transformers")
    # A BERT vocab in which [ENC]/[DEC] are not at BLIP-trained positions: the ids must come from the files.
    vocab = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "blue", "##s"]
    src = tmp_path / "vocab_src"
    src.mkdir()
    (src / "vocab.txt").write_text("\n".join(vocab) + "\n")
    bert = transformers.BertTokenizerFast.from_pretrained(str(src))
    bert.add_special_tokens({"bos_token": "[DEC]"})
    bert.add_special_tokens({"additional_special_tokens": ["[ENC]"]})  # BLIP's own init order: [DEC] then [ENC]
    ckpt = tmp_path / "blip_ckpt"
    bert.save_pretrained(str(ckpt))

    tok = TextTokenizer.from_pretrained_dir(ckpt)
    assert tok.special == SpecialTokens(pad=0, unk=2, cls=3, sep=4, mask=5, enc=12, dec=11)
    assert tok.special.dec == bert.bos_token_id and tok.special.enc == bert.convert_tokens_to_ids("[ENC]")
    ids, mask = tok(["A red circles"], max_length=16)
    assert ids[0].tolist() == bert("A red circles")["input_ids"] == [3, 6, 7, 8, 10, 4]
    assert tok.decode(ids[0]) == "a red circles"

    with pytest.raises(DataError, match="no such checkpoint directory"):
        TextTokenizer.from_pretrained_dir(tmp_path / "nowhere")


def _bert_dir(tmp_path, name, add_dec=True):
    transformers = pytest.importorskip("transformers")
    src = tmp_path / f"{name}_vocab"
    src.mkdir()
    (src / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red"]) + "\n")
    bert = transformers.BertTokenizerFast.from_pretrained(str(src))
    if add_dec:
        bert.add_special_tokens({"bos_token": "[DEC]"})
    bert.save_pretrained(str(tmp_path / name))
    return tmp_path / name


def test_from_pretrained_dir_old_style_token_map_and_missing_enc(tmp_path):
    ckpt = _bert_dir(tmp_path, "hf_no_enc")
    # transformers 4 wrote AddedToken dicts into special_tokens_map.json; [ENC] absent as in some HF BLIP checkpoints
    (ckpt / "special_tokens_map.json").write_text(json.dumps({"bos_token": {"content": "[DEC]", "lstrip": False}}))
    tok = TextTokenizer.from_pretrained_dir(ckpt)
    assert tok.special == SpecialTokens(pad=0, unk=1, cls=2, sep=3, mask=4, enc=8, dec=7)
    assert tok.vocab_size == 9 and tok.tokenizer.id_to_token(8) == "[ENC]"

    ckpt = _bert_dir(tmp_path, "hf_no_dec", add_dec=False)
    with pytest.raises(DataError, match=r"hf_no_dec: special token \[DEC\] \(dec\) is not in the vocabulary"):
        TextTokenizer.from_pretrained_dir(ckpt)


def test_from_pretrained_dir_adds_enc_to_a_blip_processor_tokenizer(tmp_path):
    """A BLIP checkpoint as transformers saves it: BlipProcessor over a BERT tokenizer with [DEC] added as bos (as
    Salesforce/blip-* do: BERT's 30522 tokens + [DEC] at id 30522 = 30523), no [ENC], and a text embedding of 30524
    rows. [ENC] must become a real token: the vocabulary, the saved tokenizer and the model's embedding agree."""
    transformers = pytest.importorskip("transformers")
    from dlip.hf.blip import load_hf_blip

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "blue", "##s"]
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab" / "vocab.txt").write_text("\n".join(words) + "\n")
    bert = transformers.BertTokenizer.from_pretrained(str(tmp_path / "vocab"))
    bert.add_special_tokens({"bos_token": "[DEC]"})
    ckpt = tmp_path / "blip-captioning"
    transformers.BlipProcessor(transformers.BlipImageProcessorPil(size={"height": 32, "width": 32}),
                               bert).save_pretrained(ckpt)
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=len(bert) + 1, bos_token_id=bert.bos_token_id, sep_token_id=bert.sep_token_id)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=16)
    transformers.BlipForConditionalGeneration(
        transformers.BlipConfig(vision_config=vision, text_config=text)).save_pretrained(ckpt)
    added = [t["content"] for t in json.loads((ckpt / "tokenizer.json").read_text())["added_tokens"]]
    assert added[-1] == "[DEC]" and "[ENC]" not in added

    tok = TextTokenizer.from_pretrained_dir(ckpt)
    assert tok.special == SpecialTokens(pad=0, unk=1, cls=2, sep=3, mask=4, enc=11, dec=10)
    model = load_hf_blip(ckpt).model
    assert tok.vocab_size == len(bert) + 1 == model.cfg.text.vocab_size
    assert model.text_encoder.word_embed.weight.shape[0] == tok.vocab_size
    ids, _ = tok(["A red circles"], max_length=16)
    assert ids[0].tolist() == bert("A red circles")["input_ids"]  # [ENC] changes no other id
    assert tok.decode([tok.special.enc, *ids[0].tolist()]) == "a red circles"  # [ENC] is special: dropped

    tok.save(tmp_path / "run" / "tokenizer.json")  # what a run folder keeps; from_file finds every special by name
    again = TextTokenizer.from_file(tmp_path / "run" / "tokenizer.json")
    assert again.special == tok.special and again.vocab_size == tok.vocab_size
    assert again(["a red circle"], 8)[0].tolist() == tok(["a red circle"], 8)[0].tolist()
