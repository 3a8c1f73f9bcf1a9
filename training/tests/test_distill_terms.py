"""Distillation terms and layer mappings on hand-made tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from dlip.distill import (HiddenProjector, attention_distill_loss, attention_kl, every_kth_teacher_layers,
                          hidden_distill_loss, itc_distill_loss, itm_distill_loss, logit_distill_loss,
                          resolve_layer_map)


def _attn(*shape, seed=0):
    """Random attention probabilities of the given shape (..., Lk)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).softmax(dim=-1)


# ---------------------------------------------------------------- layer maps

def test_uniform_map_follows_tinybert():
    assert resolve_layer_map("uniform", 2, 4) == [(1, 2), (2, 4)]
    assert resolve_layer_map("uniform", 4, 12) == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert resolve_layer_map("uniform", 3, 4) == [(1, 1), (2, 3), (3, 4)]  # 4/3 -> 1, 8/3 -> 3
    assert resolve_layer_map("uniform", 3, 3) == [(1, 1), (2, 2), (3, 3)]
    # a deeper student never maps to the embeddings (layer 0)
    assert resolve_layer_map("uniform", 6, 2) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)]


def test_last_k_map_pairs_the_top_layers():
    assert resolve_layer_map("last-2", 2, 6) == [(1, 5), (2, 6)]
    assert resolve_layer_map("last", 2, 6) == [(1, 5), (2, 6)]  # k defaults to min(n_s, n_t)
    assert resolve_layer_map("last-1", 4, 12) == [(4, 12)]
    assert resolve_layer_map("last", 6, 3) == [(4, 1), (5, 2), (6, 3)]


def test_explicit_map_and_embeddings():
    assert resolve_layer_map([[1, 2], [2, 4]], 2, 4) == [(1, 2), (2, 4)]
    assert resolve_layer_map(((2, 3),), 2, 4) == [(2, 3)]
    assert resolve_layer_map("uniform", 2, 4, include_embeddings=True) == [(0, 0), (1, 2), (2, 4)]
    assert resolve_layer_map([[1, 1]], 2, 4, include_embeddings=True) == [(0, 0), (1, 1)]


@pytest.mark.parametrize("spec, match", [
    ([[3, 1]], r"\[3, 1\] out of range"),
    ([[1, 5]], r"\[1, 5\] out of range"),
    ([[0, 0]], r"\[0, 0\] out of range"),
    ([[1.0, 2]], r"\[1.0, 2\]: layer numbers must be ints"),
    ([[True, 1]], "must be ints"),
    ([[1, 2, 3]], r"\[1, 2, 3\] is not a"),
    ([7], "7 is not a"),
    ([], "empty"),
    ("last-3", "'last-3'"),
    ("last-0", "'last-0'"),
    ("last-x", "'last-x'"),
    ("bogus", "'bogus'"),
    (3, "3 must be"),
])
def test_bad_layer_maps_are_named(spec, match):
    with pytest.raises(ValueError, match=match):
        resolve_layer_map(spec, 2, 4)


def test_bad_layer_counts_are_rejected():
    with pytest.raises(ValueError, match="n_student"):
        resolve_layer_map("uniform", 0, 4)
    with pytest.raises(ValueError, match="n_teacher"):
        every_kth_teacher_layers(2, -1)


def test_every_kth_teacher_layers_keeps_the_last():
    assert every_kth_teacher_layers(2, 4) == [1, 3]
    assert every_kth_teacher_layers(3, 12) == [3, 7, 11]
    assert every_kth_teacher_layers(6, 12) == [1, 3, 5, 7, 9, 11]
    assert every_kth_teacher_layers(4, 4) == [0, 1, 2, 3]
    assert every_kth_teacher_layers(1, 5) == [4]
    for n_s in range(1, 9):
        layers = every_kth_teacher_layers(n_s, 8)
        assert layers[-1] == 7 and len(set(layers)) == n_s and layers == sorted(layers)
    with pytest.raises(ValueError, match="5 student layers from 4"):
        every_kth_teacher_layers(5, 4)


# ---------------------------------------------------------------- representation

def test_projector_is_identity_for_equal_widths_and_linear_otherwise():
    proj = HiddenProjector({"vision": (8, 8), "text": (4, 6)})
    x = torch.randn(2, 3, 8)
    assert proj("vision", x) is x
    assert proj("text", torch.randn(2, 3, 4)).shape == (2, 3, 6)
    assert [n for n, _ in proj.named_parameters()] == ["maps.text.weight", "maps.text.bias"]
    with pytest.raises(ValueError, match="'fused'"):
        proj["fused"]
    with pytest.raises(ValueError, match="'a.b'"):
        HiddenProjector({"a.b": (2, 3)})


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_hidden_loss_is_zero_for_a_perfect_copy(kind):
    hidden = tuple(torch.randn(2, 5, 8) for _ in range(5))
    student = (hidden[0], hidden[2], hidden[4])  # a 2-layer student copying teacher layers 2 and 4
    pairs = resolve_layer_map("uniform", 2, 4, include_embeddings=True)
    identity = HiddenProjector({"t": (8, 8)})["t"]
    assert hidden_distill_loss(student, hidden, pairs, identity, kind).item() == pytest.approx(0.0, abs=1e-6)
    assert hidden_distill_loss(student, hidden, [(1, 1), (2, 4)], None, kind).item() > 1e-3


def test_hidden_loss_hand_values():
    zeros, ones = (torch.zeros(1, 2, 4),) * 2, (torch.ones(1, 2, 4),) * 2
    assert hidden_distill_loss(zeros, ones, [(1, 1)], kind="mse").item() == pytest.approx(1.0)
    a = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (1, 2, 2)
    b = torch.tensor([[[0.0, 3.0], [0.0, 5.0]]])  # orthogonal, then parallel
    assert hidden_distill_loss((a, a), (b, b), [(1, 1)], kind="cosine").item() == pytest.approx(0.5)


def test_hidden_loss_goes_through_the_projection():
    torch.manual_seed(0)
    proj = HiddenProjector({"text": (4, 6)})
    student = tuple(torch.randn(2, 3, 4, requires_grad=True) for _ in range(3))
    with torch.no_grad():
        teacher = tuple(proj("text", h) for h in student)  # the student is a perfect copy through the projection
    assert hidden_distill_loss(student, teacher, [(1, 1), (2, 2)], proj["text"]).item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        proj["text"].weight.add_(0.1)
    loss = hidden_distill_loss(student, teacher, [(1, 1), (2, 2)], proj["text"])
    assert loss.item() > 1e-4
    loss.backward()
    assert proj["text"].weight.grad is not None and proj["text"].weight.grad.abs().sum() > 0
    assert student[1].grad.abs().sum() > 0 and student[0].grad is None  # only mapped layers get gradient
    with pytest.raises(ValueError, match="projector missing"):
        hidden_distill_loss(student, teacher, [(1, 1)], None)


def test_hidden_loss_mask_excludes_padding():
    teacher = (torch.zeros(2, 4, 3),)
    student = torch.zeros(2, 4, 3)
    student[:, 3] = 5.0  # differs only at the last (padded) position
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]])
    assert hidden_distill_loss((student,), teacher, [(0, 0)], mask=mask).item() == 0.0
    assert hidden_distill_loss((student,), teacher, [(0, 0)]).item() == pytest.approx(25.0 / 4)
    with pytest.raises(ValueError, match="out of range"):
        hidden_distill_loss((student,), teacher, [(1, 0)])
    with pytest.raises(ValueError, match="kind 'l1'"):
        hidden_distill_loss((student,), teacher, [(0, 0)], kind="l1")


# ---------------------------------------------------------------- attention

def test_attention_kl_is_zero_for_identical_maps_and_grows_as_they_part():
    teacher = _attn(2, 4, 5, 6, seed=1)
    other = _attn(2, 4, 5, 6, seed=2)
    assert attention_kl(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-7)
    kls = [attention_kl((1 - a) * teacher + a * other, teacher).item() for a in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    assert kls[0] == pytest.approx(0.0, abs=1e-7)
    assert all(x < y for x, y in zip(kls, kls[1:])), kls


def test_attention_kl_hand_value_and_zero_probabilities():
    teacher = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)  # masked second key
    student = torch.tensor([0.5, 0.5]).view(1, 1, 1, 2)
    assert attention_kl(student, teacher).item() == pytest.approx(math.log(2))
    assert attention_kl(teacher.clone(), teacher).item() == 0.0  # 0 log 0 counts as 0
    # the student gives 0 where the teacher does not: clamped, finite, with a finite gradient
    student = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2).requires_grad_()
    loss = attention_kl(student, teacher)
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() > 10
    assert torch.isfinite(student.grad).all()


def test_attention_kl_query_mask():
    teacher = _attn(1, 2, 3, 4, seed=3)
    student = teacher.clone()
    student[:, :, 2] = _attn(1, 2, 4, seed=4)  # differs only at the last query
    assert attention_kl(student, teacher, torch.tensor([[1, 1, 0]])).item() == pytest.approx(0.0, abs=1e-7)
    full = attention_kl(student, teacher)
    assert full.item() > 0
    # the mean is over kept queries: with only the differing query kept, the loss is 3x the unmasked mean
    assert attention_kl(student, teacher, torch.tensor([[0, 0, 1]])).item() == pytest.approx(3 * full.item())


def test_attention_kl_groups_teacher_heads_4_to_2():
    teacher = _attn(2, 4, 3, 5, seed=5)  # heads A, B, C, D
    student = torch.stack([teacher[:, 0:2].mean(1), teacher[:, 2:4].mean(1)], dim=1)  # (A+B)/2, (C+D)/2
    assert attention_kl(student, teacher).item() == pytest.approx(0.0, abs=1e-7)
    assert attention_kl(student.flip(1), teacher).item() > 1e-3  # groups are consecutive heads, order matters
    # an interleaved grouping ((A+C)/2, (B+D)/2) is not what the term compares against
    interleaved = torch.stack([teacher[:, 0::2].mean(1), teacher[:, 1::2].mean(1)], dim=1)
    assert attention_kl(interleaved, teacher).item() > 1e-3


def test_attention_kl_averages_all_heads_when_counts_do_not_divide():
    teacher = _attn(1, 3, 2, 4, seed=6)
    # two different heads whose mean is the teacher's mean (A + B + C) / 3: (A + B) / 2 and (A + B) / 6 + 2C / 3
    a, b, c = teacher.unbind(1)
    student = torch.stack([(a + b) / 2, (a + b) / 6 + 2 * c / 3], dim=1)
    assert not torch.allclose(student[:, 0], student[:, 1])
    assert attention_kl(student, teacher).item() == pytest.approx(0.0, abs=1e-6)
    other = _attn(1, 2, 4, seed=7)
    assert attention_kl(torch.stack([other, other], dim=1), teacher).item() > 1e-3
    with pytest.raises(ValueError, match="outside the head dimension"):
        attention_kl(_attn(1, 2, 3, 4), _attn(1, 2, 3, 5))


def test_attention_distill_loss_uses_mapped_layers():
    teacher = tuple(_attn(2, 4, 3, 3, seed=10 + k) for k in range(4))
    # a 2-head student copying the grouped heads of teacher layers 2 and 4
    student = tuple(torch.stack([t[:, 0:2].mean(1), t[:, 2:4].mean(1)], dim=1) for t in (teacher[1], teacher[3]))
    pairs = resolve_layer_map("uniform", 2, 4, include_embeddings=True)  # (0, 0) is skipped
    assert attention_distill_loss(student, teacher, pairs).item() == pytest.approx(0.0, abs=1e-7)
    wrong = [(1, 1), (2, 3)]
    expected = (attention_kl(student[0], teacher[0]) + attention_kl(student[1], teacher[2])) / 2
    assert attention_distill_loss(student, teacher, wrong).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="out of range"):
        attention_distill_loss(student, teacher, [(3, 4)])
    with pytest.raises(ValueError, match="besides"):
        attention_distill_loss(student, teacher, [(0, 0)])


# ---------------------------------------------------------------- outputs

def test_itc_distill_is_zero_for_a_copy_and_is_ce_minus_teacher_entropy():
    torch.manual_seed(0)
    teacher = torch.randn(4, 4) * 3
    assert itc_distill_loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.randn(4, 4, requires_grad=True)
    loss = itc_distill_loss(student, teacher)

    def ce_minus_entropy(s, t):
        p_t = t.softmax(1)
        return (-(p_t * s.log_softmax(1)).sum(1) + (p_t * p_t.log()).sum(1)).mean()

    expected = (ce_minus_entropy(student, teacher) + ce_minus_entropy(student.t(), teacher.t())) / 2
    assert loss.item() > 0 and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # same gradient as the paper's cross-entropy form
    (grad,) = torch.autograd.grad(loss, student)
    ce = -(teacher.softmax(1) * student.log_softmax(1)).sum(1).mean()
    ce = (ce - (teacher.t().softmax(1) * student.t().log_softmax(1)).sum(1).mean()) / 2
    (ce_grad,) = torch.autograd.grad(ce, student)
    assert torch.allclose(grad, ce_grad, atol=1e-6)


def test_itm_distill_hand_value_and_temperature():
    teacher = torch.tensor([[0.0, 0.0]])  # p = (0.5, 0.5)
    student = torch.tensor([[math.log(3.0), 0.0]])  # p = (0.75, 0.25)
    assert itm_distill_loss(student, teacher).item() == pytest.approx(0.5 * math.log(4 / 3))
    assert itm_distill_loss(teacher.clone(), teacher, temperature=2.0).item() == 0.0
    s, t = torch.randn(6, 2), torch.randn(6, 2)
    assert itm_distill_loss(s, t, 2.0).item() == pytest.approx(4 * itm_distill_loss(s / 2, t / 2).item(), rel=1e-5)
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        itm_distill_loss(s, t, temperature=0)


def test_logit_distill_masks_positions_and_scales_by_t_squared():
    torch.manual_seed(0)
    teacher = torch.randn(2, 3, 7)
    assert logit_distill_loss(teacher.clone(), teacher, temperature=3.0).item() == 0.0
    student = teacher.clone()
    student[0, 1] = torch.randn(7)  # one position differs
    per_pos = F.kl_div(student[0, 1].log_softmax(-1), teacher[0, 1].log_softmax(-1), log_target=True,
                       reduction="sum").item()
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert logit_distill_loss(student, teacher, mask).item() == pytest.approx(per_pos / 2, rel=1e-5)
    assert logit_distill_loss(student, teacher, torch.tensor([[1, 0, 1], [1, 1, 1]])).item() == 0.0
    t2 = logit_distill_loss(student, teacher, mask, temperature=2.0).item()
    assert t2 == pytest.approx(4 * logit_distill_loss(student / 2, teacher / 2, mask).item(), rel=1e-5)
    with pytest.raises(ValueError, match="student logits"):
        logit_distill_loss(student[:, :, :5], teacher)


# ---------------------------------------------------------------- on real model outputs

def test_terms_on_teacher_and_student_med_outputs():
    """A 4-layer / 4-head / width-32 teacher and a 2-layer / 2-head / width-16 student with one fusion layer."""
    import dataclasses

    from dlip.config import model_preset
    from dlip.model.med import BlipMED

    torch.manual_seed(0)
    base = model_preset("micro").with_vocab(50, 0)
    t_cfg = dataclasses.replace(base, text=dataclasses.replace(base.text, num_layers=4, num_heads=4))
    s_cfg = dataclasses.replace(base, text=dataclasses.replace(base.text, hidden_size=16, intermediate_size=32,
                                                               fusion_layers=1))
    teacher, student = BlipMED(t_cfg).eval().requires_grad_(False), BlipMED(s_cfg)
    images, ids = torch.randn(2, 3, 32, 32), torch.randint(7, 50, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        t_img = teacher.encode_image(images).last_hidden
        t_out = teacher.fuse(ids, mask, t_img, output_hidden_states=True, output_attentions=True)
    s_img = student.encode_image(images).last_hidden
    s_out = student.fuse(ids, mask, s_img, output_hidden_states=True, output_attentions=True)
    proj = HiddenProjector({"fused": (16, 32)})

    pairs = resolve_layer_map("uniform", 2, 4)
    cross_pairs = resolve_layer_map("last", s_cfg.text.num_fusion_layers, t_cfg.text.num_fusion_layers)
    assert cross_pairs == [(1, 4)]
    losses = [
        hidden_distill_loss(s_out.hidden_states, t_out.hidden_states, pairs, proj["fused"], mask=mask),
        attention_distill_loss(s_out.self_attentions, t_out.self_attentions, pairs, mask),
        attention_distill_loss(s_out.cross_attentions, t_out.cross_attentions, cross_pairs, mask),
    ]
    assert all(torch.isfinite(x) and x.item() > 0 for x in losses)
    sum(losses).backward()
    assert proj["fused"].weight.grad.abs().sum() > 0
    for stack in (student.text_encoder, student.visual_encoder):  # cross-attention KL reaches the image encoder
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stack.parameters())
    assert all(p.grad is None for p in teacher.parameters())
