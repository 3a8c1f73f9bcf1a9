"""Parity of ``load_hf_blip`` with transformers' own BLIP classes, on tiny randomly initialised models saved with
``save_pretrained``: same inputs, outputs within 1e-5 (ITC similarity, ITM logits, decoder logits and LM loss,
question states, hidden states and attention maps)."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    BlipConfig,
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipForQuestionAnswering,
)

from dlip.hf import HFTeacher, is_hf_blip_dir, load_hf_blip  # noqa: E402
from dlip.losses import lm_loss  # noqa: E402

TOL = 1e-5
VOCAB, BOS, SEP, PAD = 99, 97, 3, 0
B, L = 3, 7


def tiny_config(**text_overrides) -> BlipConfig:
    text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, vocab_size=VOCAB,
                max_position_embeddings=40, bos_token_id=BOS, sep_token_id=SEP, pad_token_id=PAD, eos_token_id=2)
    text.update(text_overrides)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    return BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=16)


@torch.no_grad()
def randomize_(model: torch.nn.Module) -> None:
    """Every tensor random and distinct: HF initialises the vision tower near zero (initializer_range 1e-10), biases
    to 0 and LayerNorms to 1, which would hide a swapped or skipped weight. Tied weights stay tied (shared tensors)."""
    for name, p in model.named_parameters():
        is_norm_weight = "norm" in name.lower() and name.endswith("weight")
        p.copy_(1.0 + 0.1 * torch.randn_like(p) if is_norm_weight else 0.2 * torch.randn_like(p))


def save_hf(cls, tmp_path, name: str, **text_overrides):
    torch.manual_seed(0)
    hf = cls(tiny_config(**text_overrides)).eval()
    randomize_(hf)
    out = tmp_path / name
    hf.save_pretrained(out)
    return hf, out


def inputs(seed: int = 1):
    """Pixels (B, 3, 32, 32), ids (B, L) with a [CLS]-like first token, a right-padded mask (row 1 has 2 pads)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(B, 3, 32, 32, generator=g)
    ids = torch.randint(4, VOCAB - 2, (B, L), generator=g)
    ids[:, 0] = 1
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, -2:] = 0
    ids[1, -2:] = PAD
    return pixels, ids, mask


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def assert_close_seq(ours, theirs, what: str) -> None:
    assert len(ours) == len(theirs), f"{what}: {len(ours)} vs {len(theirs)} entries"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert max_diff(a, b) <= TOL, f"{what}[{i}] differs by {max_diff(a, b)}"


@pytest.fixture(autouse=True)
def _threads():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@torch.no_grad()
def test_retrieval_itc_and_itm_match_hf(tmp_path):
    hf, path = save_hf(BlipForImageTextRetrieval, tmp_path, "itm")
    assert is_hf_blip_dir(path)
    teacher = load_hf_blip(path)
    assert isinstance(teacher, HFTeacher)
    assert teacher.architecture == "BlipForImageTextRetrieval"
    assert teacher.tasks == ("itc", "itm")
    assert teacher.missing == ("text_decoder", "temp")
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())
    m, cfg = teacher.model, teacher.config
    assert (cfg.vision.image_size, cfg.vision.patch_size, cfg.vision.hidden_size, cfg.embed_dim) == (32, 8, 32, 16)
    assert (cfg.text.vocab_size, cfg.text.max_position_embeddings, cfg.text.intermediate_size) == (VOCAB, 40, 37)

    pixels, ids, mask = inputs()
    itc = m.itc(pixels, ids, mask)
    cosine = itc.sim_i2t * m.clamped_temp()  # HF returns the raw cosine similarity
    ref = hf(input_ids=ids, pixel_values=pixels, attention_mask=mask, use_itm_head=False).itm_score
    assert max_diff(cosine, ref) <= TOL

    fused = m.fuse(ids, mask, itc.vision.last_hidden)
    ref = hf(input_ids=ids, pixel_values=pixels, attention_mask=mask, use_itm_head=True).itm_score
    assert max_diff(m.itm_logits(fused.last_hidden), ref) <= TOL
    assert ref.abs().max() > 1e-3  # the comparison is not between two near-zero tensors


@torch.no_grad()
def test_captioning_logits_and_loss_match_hf(tmp_path):
    hf, path = save_hf(BlipForConditionalGeneration, tmp_path, "cap", label_smoothing=0.1)
    teacher = load_hf_blip(path)
    assert teacher.tasks == ("lm",)
    assert set(teacher.missing) == {"text_encoder", "vision_proj", "text_proj", "itm_head", "temp"}
    assert (teacher.bos_token_id, teacher.sep_token_id, teacher.pad_token_id) == (BOS, SEP, PAD)
    m = teacher.model
    # tied LM head: save_pretrained wrote only the word embeddings and predictions.bias
    assert torch.equal(m.text_decoder.lm_head.decoder.weight, hf.text_decoder.bert.embeddings.word_embeddings.weight)

    pixels, ids, mask = inputs()
    ids[:, 0] = BOS
    labels = ids.masked_fill(mask == 0, -100)
    ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask, labels=labels)
    out = m.decode(ids, mask, m.encode_image(pixels).last_hidden)
    assert max_diff(out.logits, ref.logits) <= TOL
    loss = lm_loss(out.logits, ids, mask, teacher.config.label_smoothing)
    assert teacher.config.label_smoothing == 0.1
    assert abs(loss.item() - ref.loss.item()) <= TOL


@torch.no_grad()
def test_vqa_question_states_and_answer_decoder_match_hf(tmp_path):
    hf, path = save_hf(BlipForQuestionAnswering, tmp_path, "vqa")
    teacher = load_hf_blip(path)
    assert teacher.tasks == ("vqa",)
    m = teacher.model
    pixels, q_ids, q_mask = inputs(1)
    _, a_ids, a_mask = inputs(2)
    a_ids[:, 0] = BOS

    image = hf.vision_model(pixel_values=pixels).last_hidden_state
    ours_image = m.encode_image(pixels).last_hidden
    assert max_diff(ours_image, image) <= TOL
    ones = torch.ones(image.shape[:2], dtype=torch.long)
    ref_q = hf.text_encoder(input_ids=q_ids, attention_mask=q_mask, encoder_hidden_states=image,
                            encoder_attention_mask=ones).last_hidden_state
    ours_q = m.fuse(q_ids, q_mask, ours_image).last_hidden
    assert max_diff(ours_q, ref_q) <= TOL

    ref_dec = hf.text_decoder(input_ids=a_ids, attention_mask=a_mask, encoder_hidden_states=ref_q,
                              encoder_attention_mask=q_mask, labels=a_ids, reduction="mean")
    # HF's cross-attention ignores encoder_attention_mask (see dlip.hf.blip): encoder_mask=None reproduces it ...
    ours_dec = m.decode(a_ids, a_mask, ours_q, None)
    assert max_diff(ours_dec.logits, ref_dec.logits) <= TOL
    # ... while masking the padded question tokens (BLIP's behaviour) changes the padded row, and only that row
    masked = m.decode(a_ids, a_mask, ours_q, q_mask).logits
    assert max_diff(masked[1], ref_dec.logits[1]) > 1e-4, "HF now masks padded question tokens: update dlip.hf.blip"
    assert max_diff(masked[[0, 2]], ref_dec.logits[[0, 2]]) <= TOL
    # the full HF forward: labels double as decoder inputs; every label position counts (no -100 here)
    ref_loss = hf(input_ids=q_ids, pixel_values=pixels, attention_mask=q_mask, labels=a_ids,
                  decoder_attention_mask=a_mask).loss
    loss = lm_loss(ours_dec.logits, a_ids, torch.ones_like(a_mask), teacher.config.label_smoothing)
    assert abs(loss.item() - ref_loss.item()) <= TOL
    assert abs(loss.item() - ref_dec.loss.item()) <= TOL


@torch.no_grad()
def test_hidden_states_and_attentions_match_hf(tmp_path):
    hf, path = save_hf(BlipForQuestionAnswering, tmp_path, "vqa")
    m = load_hf_blip(path).model
    pixels, ids, mask = inputs(3)
    ids[:, 0] = BOS

    ref_v = hf.vision_model(pixel_values=pixels, output_hidden_states=True, output_attentions=True)
    ours_v = m.encode_image(pixels, output_hidden_states=True, output_attentions=True)
    # HF: input of every layer + the last layer's output before post_layernorm; ours end with the normalised output
    assert_close_seq(ours_v.hidden_states[:-1], ref_v.hidden_states[:-1], "vision hidden")
    assert max_diff(ours_v.hidden_states[-1], ref_v.last_hidden_state) <= TOL
    assert_close_seq(ours_v.attentions, ref_v.attentions, "vision attn")
    assert len(ours_v.attentions) == 2 and ours_v.attentions[0].shape == (B, 2, 17, 17)
    assert ours_v.attentions[0].amax() > 3 / 17  # far from uniform: the maps carry information

    image = ref_v.last_hidden_state
    ones = torch.ones(image.shape[:2], dtype=torch.long)
    ref_t = hf.text_encoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=image,
                            encoder_attention_mask=ones, output_hidden_states=True, output_attentions=True)
    ours_t = m.fuse(ids, mask, ours_v.last_hidden, output_hidden_states=True, output_attentions=True)
    assert_close_seq(ours_t.hidden_states, ref_t.hidden_states, "text hidden")
    assert_close_seq(ours_t.self_attentions, ref_t.attentions, "text self-attn")
    assert_close_seq(ours_t.cross_attentions, ref_t.cross_attentions, "text cross-attn")
    assert len(ours_t.cross_attentions) == 2 and ours_t.cross_attentions[0].shape == (B, 2, L, 17)

    ref_d = hf.text_decoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=image,
                            output_hidden_states=True, output_attentions=True)
    ours_d = m.decode(ids, mask, ours_v.last_hidden, output_hidden_states=True, output_attentions=True)
    assert_close_seq(ours_d.hidden_states, ref_d.hidden_states, "decoder hidden")
    assert_close_seq(ours_d.self_attentions, ref_d.attentions, "decoder self-attn")
    assert_close_seq(ours_d.cross_attentions, ref_d.cross_attentions, "decoder cross-attn")
    assert ours_d.self_attentions[0][0, 0].triu(1).abs().max() == 0  # causal


def test_errors_name_the_key_or_file(tmp_path):
    from safetensors.torch import load_file, save_file

    assert not is_hf_blip_dir(tmp_path)
    with pytest.raises(ValueError, match="config.json"):
        load_hf_blip(tmp_path)

    _, path = save_hf(BlipForImageTextRetrieval, tmp_path, "itm")
    weights = path / "model.safetensors"
    state = load_file(str(weights))

    extra = dict(state, **{"text_encoder.pooler.dense.weight": torch.zeros(32, 32)})
    save_file(extra, str(weights))
    with pytest.raises(ValueError, match="text_encoder.pooler.dense.weight"):
        load_hf_blip(path)

    partial = {k: v for k, v in state.items() if k != "itm_head.bias"}
    save_file(partial, str(weights))
    with pytest.raises(ValueError, match="itm_head.bias"):
        load_hf_blip(path)

    wrong = dict(state, **{"vision_proj.weight": torch.zeros(8, 32)})
    save_file(wrong, str(weights))
    with pytest.raises(ValueError, match="vision_proj.weight"):
        load_hf_blip(path)

    weights.unlink()
    with pytest.raises(ValueError, match="model.safetensors"):
        load_hf_blip(path)

    raw = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(dict(raw, model_type="bert")))
    assert not is_hf_blip_dir(path)
    with pytest.raises(ValueError, match="model_type"):
        load_hf_blip(path)


@torch.no_grad()
def test_pytorch_bin_with_untied_head_keys_loads(tmp_path):
    """Older checkpoints are .bin files that also hold the tie targets (``cls.predictions.decoder.*``)."""
    hf, path = save_hf(BlipForConditionalGeneration, tmp_path, "cap")
    from safetensors.torch import load_file

    state = load_file(str(path / "model.safetensors"))
    state["text_decoder.cls.predictions.decoder.weight"] = state["text_decoder.bert.embeddings.word_embeddings.weight"]
    state["text_decoder.cls.predictions.decoder.bias"] = state["text_decoder.cls.predictions.bias"]
    state["text_decoder.bert.embeddings.position_ids"] = torch.arange(40)[None]
    torch.save(state, path / "pytorch_model.bin")
    (path / "model.safetensors").unlink()
    m = load_hf_blip(path).model
    pixels, ids, mask = inputs()
    ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits
    assert max_diff(m.decode(ids, mask, m.encode_image(pixels).last_hidden).logits, ref) <= TOL
