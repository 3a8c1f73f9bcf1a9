"""The MED model: shapes, hidden states and attention maps on request, cache-equivalence (decoding: test_search)."""

import pytest
import torch

from dlip.config import model_preset
from dlip.model.med import BlipMED


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = model_preset("micro").with_vocab(50, 0)
    return BlipMED(cfg).eval()


def _text(b=3, length=6, vocab=50):
    ids = torch.randint(7, vocab, (b, length))
    ids[:, 0] = 2
    mask = torch.ones(b, length, dtype=torch.long)
    mask[0, -2:] = 0
    return ids, mask


def test_outputs_and_requested_internals(model):
    cfg = model.cfg
    images = torch.randn(3, 3, cfg.vision.image_size, cfg.vision.image_size)
    ids, mask = _text()
    v = model.encode_image(images, output_hidden_states=True, output_attentions=True)
    n = cfg.vision.num_patches + 1
    assert v.last_hidden.shape == (3, n, cfg.vision.hidden_size)
    assert len(v.hidden_states) == cfg.vision.num_layers + 1 and len(v.attentions) == cfg.vision.num_layers
    assert v.attentions[0].shape == (3, cfg.vision.num_heads, n, n)
    assert torch.allclose(v.attentions[0].sum(-1), torch.ones(()))  # rows are distributions

    fused = model.fuse(ids, mask, v.last_hidden, output_hidden_states=True, output_attentions=True)
    assert len(fused.self_attentions) == cfg.text.num_layers
    assert len(fused.cross_attentions) == cfg.text.num_fusion_layers
    assert fused.cross_attentions[0].shape == (3, cfg.text.num_heads, 6, n)
    # padded keys get no attention
    assert fused.self_attentions[0][0, :, :, -2:].abs().max() < 1e-6
    assert model.itm_logits(fused.last_hidden).shape == (3, 2)

    uni = model.encode_text(ids, mask, output_attentions=True)
    assert uni.cross_attentions == ()  # unimodal mode skips cross-attention
    assert uni.hidden_states is None  # not requested


def test_fast_and_explicit_attention_agree(model):
    images = torch.randn(2, 3, model.cfg.vision.image_size, model.cfg.vision.image_size)
    ids, mask = _text(2)
    v1 = model.encode_image(images).last_hidden
    v2 = model.encode_image(images, output_attentions=True).last_hidden
    assert torch.allclose(v1, v2, atol=1e-5)
    d1 = model.decode(ids, mask, v1).logits
    d2 = model.decode(ids, mask, v1, output_attentions=True).logits
    assert torch.allclose(d1, d2, atol=1e-5)


def test_decoder_is_causal(model):
    images = torch.randn(1, 3, model.cfg.vision.image_size, model.cfg.vision.image_size)
    embeds = model.encode_image(images).last_hidden
    ids, mask = _text(1)
    mask[:] = 1
    ids2 = ids.clone()
    ids2[0, -1] = (ids[0, -1] + 1) % 50
    a, b = model.decode(ids, mask, embeds).logits, model.decode(ids2, mask, embeds).logits
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-6)  # changing the last token changes no earlier output


def test_cached_decoding_matches_full_forward(model):
    images = torch.randn(2, 3, model.cfg.vision.image_size, model.cfg.vision.image_size)
    embeds = model.encode_image(images).last_hidden
    ids, _ = _text(2, 7)
    mask = torch.ones_like(ids)
    full = model.decode(ids, mask, embeds).logits
    past, steps = None, []
    for t in range(ids.shape[1]):
        out = model.decode(ids[:, t:t + 1], mask[:, :t + 1], embeds, past_key_values=past, use_cache=True)
        past = out.past_key_values
        steps.append(out.logits)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_sincos_position_init_encodes_row_and_column():
    from dlip.config import VisionConfig
    from dlip.model.vit import VisionTransformer, sincos_2d

    table = sincos_2d(4, 32)  # (16, 32): patch r * 4 + c
    assert table.shape == (16, 32)
    assert torch.equal(table[1, :16], table[0, :16]) and not torch.equal(table[1, 16:], table[0, 16:])  # same row
    assert torch.equal(table[4, 16:], table[0, 16:]) and not torch.equal(table[4, :16], table[0, :16])  # same column
    vit = VisionTransformer(VisionConfig(image_size=32, patch_size=8, hidden_size=32, num_heads=2,
                                         pos_embed_init="sincos"))
    assert torch.equal(vit.pos_embed[0, 1:].detach(), table) and vit.pos_embed.requires_grad
    with pytest.raises(ValueError, match="pos_embed_init"):
        VisionConfig(pos_embed_init="learned")


def test_conv_stem_gives_the_patch_grid_and_uses_batch_statistics_only_in_training():
    from dlip.config import VisionConfig
    from dlip.model.vit import VisionTransformer

    torch.manual_seed(0)
    cfg = VisionConfig(image_size=32, patch_size=8, hidden_size=32, num_heads=2, num_layers=1, stem="conv")
    vit = VisionTransformer(cfg)
    convs = [m for m in vit.patch_embed if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.out_channels) for c in convs] == [
        ((3, 3), (2, 2), 8), ((3, 3), (2, 2), 16), ((3, 3), (2, 2), 32), ((1, 1), (1, 1), 32)]  # log2(8) = 3 halvings
    images = torch.randn(4, 3, 32, 32)
    assert vit(images).last_hidden.shape == (4, 1 + 16, 32)  # the same 4x4 grid a linear patch embedding gives
    vit.train()
    first = vit(images[:1]).last_hidden
    assert not torch.allclose(first, vit(images).last_hidden[:1], atol=1e-5)  # batch statistics in training
    vit.eval()
    with torch.no_grad():
        alone = vit(images[:1]).last_hidden
        assert torch.allclose(alone, vit(images).last_hidden[:1], atol=1e-5)  # running statistics: per image
    for bad, match in ((dict(stem="pixel"), "stem"), (dict(stem="conv", patch_size=6, image_size=36), "power of 2")):
        with pytest.raises(ValueError, match=match):
            VisionConfig(**bad)


def test_output_pos_embed_adds_the_sincos_table_to_the_patch_tokens_only():
    import dataclasses

    from dlip.config import VisionConfig
    from dlip.model.vit import VisionTransformer, sincos_2d

    cfg = VisionConfig(image_size=32, patch_size=8, hidden_size=32, num_heads=2, num_layers=1)
    torch.manual_seed(0)
    plain = VisionTransformer(cfg).eval()
    with_pos = VisionTransformer(dataclasses.replace(cfg, output_pos_embed=True)).eval()
    assert "output_pos" not in with_pos.state_dict()  # rebuilt from the config: old checkpoints load strictly
    with_pos.load_state_dict(plain.state_dict(), strict=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = plain(images).last_hidden, with_pos(images, output_hidden_states=True)
    assert torch.equal(b.last_hidden[:, 0], a[:, 0])  # [CLS] (ITC's image feature) unchanged
    assert torch.allclose(b.last_hidden[:, 1:] - a[:, 1:], sincos_2d(4, 32).expand(2, -1, -1), atol=1e-6)
    assert torch.equal(b.hidden_states[-1], b.last_hidden)  # the last hidden state is what the text side reads
    with pytest.raises(ValueError, match="divisible by 4"):
        VisionTransformer(VisionConfig(image_size=32, patch_size=8, hidden_size=30, num_heads=2,
                                       output_pos_embed=True))


def test_vqa_answer_decoder_can_read_the_image_tokens_too():
    import dataclasses

    from dlip.data.batches import VQABatch
    from dlip.data.tokenizer import SpecialTokens
    from dlip.objectives import vqa_forward

    torch.manual_seed(0)
    base = model_preset("micro").with_vocab(50, 0)
    assert not base.vqa_decoder_reads_image  # BLIP: the question states only
    plain = BlipMED(base).eval()
    reads = BlipMED(dataclasses.replace(base, vqa_decoder_reads_image=True)).eval()
    reads.load_state_dict(plain.state_dict())  # the option adds no weights
    images = plain.encode_image(torch.randn(2, 3, 32, 32)).last_hidden  # (2, N, D)
    states, mask = torch.randn(2, 5, images.shape[-1]), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    same_states, same_mask = plain.answer_context(states, mask, images)
    assert same_states is states and same_mask is mask
    ctx, ctx_mask = reads.answer_context(states, mask, images)
    assert torch.equal(ctx, torch.cat([states, images], dim=1))
    assert torch.equal(ctx_mask[:, :5], mask) and ctx_mask[:, 5:].eq(1).all()
    assert ctx_mask.shape[1] == 5 + images.shape[1]
    # same weights: the option changes what the answer decoder reads, hence the VQA loss and the logits
    special = SpecialTokens(pad=0, unk=1, cls=2, sep=3, mask=4, enc=5, dec=6)
    pixels = torch.randn(2, 3, 32, 32)
    q_ids, q_mask = torch.randint(7, 50, (2, 5)), torch.ones(2, 5, dtype=torch.long)
    a_ids, a_mask = torch.tensor([[2, 9, 3], [2, 11, 3]]), torch.ones(2, 3, dtype=torch.long)
    batch = VQABatch(pixels, q_ids, q_mask, a_ids, a_mask, torch.ones(2), torch.ones(2, dtype=torch.long))
    with torch.no_grad():
        loss_plain = vqa_forward(plain, batch, special)[0]["vqa_loss"]
        loss_reads, _, question, decoder = vqa_forward(reads, batch, special)
        assert torch.isfinite(loss_reads["vqa_loss"]) and not torch.isclose(loss_reads["vqa_loss"], loss_plain)
        img = reads.encode_image(pixels).last_hidden
        ctx, ctx_mask = reads.answer_context(question.last_hidden, q_mask, img)
        dec_ids = a_ids.clone()
        dec_ids[:, 0] = special.dec
        assert torch.allclose(decoder.logits, reads.decode(dec_ids, a_mask, ctx, ctx_mask).logits, atol=1e-6)
