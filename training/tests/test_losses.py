"""Objectives on hand-made tensors."""

import math

import torch
import torch.nn.functional as F

from dlip.losses import itc_loss, itc_targets, itm_loss, lm_loss, sample_hard_negatives


def test_itc_targets_spread_over_captions_of_same_image():
    ids = torch.tensor([0, 0, 1])
    t = itc_targets(ids, ids)
    assert torch.allclose(t, torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))


def test_itc_of_identical_pairs_is_near_zero_and_grows_when_mismatched():
    feats = F.normalize(torch.eye(4), dim=-1)  # four orthogonal "identical pair" features
    sim = feats @ feats.t() / 0.01  # sharp temperature
    targets = itc_targets(torch.arange(4), torch.arange(4))
    aligned = itc_loss(sim, sim.t(), targets, targets.t())
    assert aligned.item() < 1e-6
    shuffled = sim[:, torch.tensor([1, 0, 3, 2])]  # each image's best text is now the wrong one
    assert itc_loss(shuffled, shuffled.t(), targets, targets.t()).item() > 10


def test_itc_uniform_similarities_give_log_batch():
    sim = torch.zeros(5, 5)
    targets = itc_targets(torch.arange(5), torch.arange(5))
    assert math.isclose(itc_loss(sim, sim, targets, targets).item(), math.log(5), rel_tol=1e-6)


def test_hard_negatives_never_pick_a_positive():
    torch.manual_seed(0)
    image_ids = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5])
    for _ in range(50):
        # strongly favour the positives: mining must still avoid them
        sim = torch.randn(8, 8) + 20 * (image_ids[:, None] == image_ids[None, :]).float()
        neg_text, neg_image = sample_hard_negatives(sim, sim.t(), image_ids)
        assert not bool((image_ids[neg_text] == image_ids).any())
        assert not bool((image_ids[neg_image] == image_ids).any())


def test_hard_negatives_follow_similarity():
    image_ids = torch.arange(4)
    sim = torch.full((4, 4), -30.0)
    sim[0, 2] = 30.0  # image 0's hardest negative is text 2
    sim.fill_diagonal_(50.0)
    neg_text, _ = sample_hard_negatives(sim, sim.t(), image_ids)
    assert neg_text[0].item() == 2


def test_itm_loss_is_cross_entropy():
    logits = torch.tensor([[0.0, 10.0], [10.0, 0.0]])
    assert itm_loss(logits, torch.tensor([1, 0])).item() < 1e-3
    assert itm_loss(logits, torch.tensor([0, 1])).item() > 9


def test_lm_loss_shifts_and_masks():
    vocab = 5
    ids = torch.tensor([[1, 2, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    logits = torch.full((1, 4, vocab), -20.0)
    logits[0, 0, 2] = 20.0  # position 0 predicts token 2 (correct)
    logits[0, 1, 3] = 20.0  # position 1 predicts token 3 (correct)
    logits[0, 2, 4] = 20.0  # position 2 would predict the padding target: must be ignored
    assert lm_loss(logits, ids, mask, label_smoothing=0.0).item() < 1e-6
    logits[0, 1] = torch.tensor([20.0, -20, -20, -20, -20])  # now wrong at a counted position
    assert lm_loss(logits, ids, mask, label_smoothing=0.0).item() > 10
