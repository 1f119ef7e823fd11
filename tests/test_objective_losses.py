"""The objectives' pure tensor losses: hand-computed values on 2x3 examples, and properties on
random tensors (finite, scalar, differentiable, blind to padding and to the order of passages),
in the style of Lightning IR's loss tests. No model is involved."""

from __future__ import annotations

import math

import pytest
import torch

from gumbel_rerank.objectives.adist import adist_loss
from gumbel_rerank.objectives.bce import bce_loss
from gumbel_rerank.objectives.common import kl_to_student
from gumbel_rerank.objectives.emdr2 import emdr2_sequence_loss, emdr2_token_loss
from gumbel_rerank.objectives.kd import kd_kl_loss, margin_mse_loss
from gumbel_rerank.objectives.lce import lce_loss
from gumbel_rerank.objectives.loop import loop_loss
from gumbel_rerank.objectives.pdist import pdist_loss

LN2, LN3 = math.log(2.0), math.log(3.0)
ALL = torch.ones(2, 3, dtype=torch.bool)


# -- hand-computed 2x3 examples -------------------------------------------------------------
def test_kl_distillation_by_hand():
    """Row 1: target softmax [1/2, 1/4, 1/4] against a uniform student; row 2 the reverse."""
    target = torch.tensor([[LN2, 0.0, 0.0], [0.0, 0.0, 0.0]])
    scores = torch.tensor([[0.0, 0.0, 0.0], [LN2, 0.0, 0.0]])
    row1 = 0.5 * math.log(0.5 / (1 / 3)) + 2 * 0.25 * math.log(0.25 / (1 / 3))
    row2 = (1 / 3) * math.log((1 / 3) / 0.5) + 2 * (1 / 3) * math.log((1 / 3) / 0.25)
    expected = (row1 + row2) / 2  # 0.05776...
    for loss in (pdist_loss, loop_loss, adist_loss, kd_kl_loss):
        assert float(loss(scores, target, ALL, 1.0, 1.0)) == pytest.approx(expected, abs=1e-6)
    # temperatures divide before the softmax: target/0.5 = 2*target, student/2 = scores/2
    doubled = kl_to_student(target, scores, ALL, 0.5, 2.0)
    reference = kl_to_student(2 * target, scores / 2, ALL, 1.0, 1.0)
    assert float(doubled) == pytest.approx(float(reference), abs=1e-7)


def test_emdr2_sequence_by_hand():
    scores = torch.tensor([[0.0, 0.0, 0.0], [LN2, 0.0, 0.0]])  # p_R: uniform; [1/2, 1/4, 1/4]
    seq = torch.log(torch.tensor([[0.5, 0.25, 0.25], [1.0, 0.5, 0.5]]))
    # row 1: -log(1/3 * 1) = ln 3; row 2: -log(1/2 + 1/8 + 1/8) = -ln 0.75
    expected = (LN3 - math.log(0.75)) / 2
    assert float(emdr2_sequence_loss(scores, seq, ALL)) == pytest.approx(expected, abs=1e-6)


def test_emdr2_token_level_by_hand():
    scores = torch.tensor([[0.0, 0.0, 5.0]])
    valid = torch.tensor([[True, True, False]])  # passage 3 is padding: its score is ignored
    tokens = torch.log(torch.tensor([[[1.0, 0.5, 0.9], [0.5, 0.5, 0.9], [0.1, 0.1, 0.1]]]))
    token_valid = torch.tensor([[True, True, False]])  # the third token is padding
    # token 1: 1/2*1 + 1/2*1/2 = 3/4; token 2: 1/2*1/2 + 1/2*1/2 = 1/2
    expected = -(math.log(0.75) + math.log(0.5)) / 2
    got = emdr2_token_loss(scores, tokens, token_valid, valid)
    assert float(got) == pytest.approx(expected, abs=1e-6)


def test_bce_by_hand():
    scores = torch.tensor([[0.0, LN3, -LN3], [2.0, 0.0, 7.0]])
    labels = torch.tensor([[1, 1, 0], [0, 1, 1]])
    valid = torch.tensor([[True, True, True], [False, True, False]])
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4; row 2 keeps only (0, y=1)
    expected = (-math.log(0.5) - math.log(0.75) - math.log(0.75) - math.log(0.5)) / 4
    assert float(bce_loss(scores, labels, valid)) == pytest.approx(expected, abs=1e-6)
    weighted = bce_loss(scores, labels, valid, pos_weight=2.0)
    expected_w = (-2 * math.log(0.5) - 2 * math.log(0.75) - math.log(0.75) - 2 * math.log(0.5)) / 4
    assert float(weighted) == pytest.approx(expected_w, abs=1e-6)


def test_lce_by_hand():
    scores = torch.tensor([[LN2, 0.0, 0.0], [0.0, LN3, 0.0]])
    positive = torch.tensor([0, 2])
    group = torch.tensor([[True, True, True], [False, True, True]])
    # row 1: -log(2 / 4); row 2: -log(1 / (3 + 1))
    expected = (LN2 + math.log(4.0)) / 2
    assert float(lce_loss(scores, positive, group)) == pytest.approx(expected, abs=1e-6)
    no_positive = lce_loss(scores, torch.tensor([-1, 2]), group)
    assert float(no_positive) == pytest.approx(math.log(4.0), abs=1e-6)  # row 1 left out


def test_margin_mse_by_hand():
    scores = torch.tensor([[1.0, 0.0, -1.0], [3.0, 1.0, 0.0]])
    teacher = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    positive = torch.tensor([[True, False, False], [False, False, False]])  # row 2: no pair
    negative = torch.tensor([[False, True, True], [True, True, True]])
    # pairs (0,1): (1-0)-(2-0) = -1; (0,2): (1+1)-(2-0) = 0  ->  mean of squares 1/2
    assert float(margin_mse_loss(scores, teacher, positive, negative)) == pytest.approx(0.5, abs=1e-7)


# -- random tensors ---------------------------------------------------------------------------
B, N, T = 4, 6, 5


@pytest.fixture
def tensors():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(B, N, generator=gen, requires_grad=True)
    target = torch.randn(B, N, generator=gen)
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[1, 4:] = False  # a question with fewer candidates
    gold = torch.zeros(B, N, dtype=torch.bool)
    gold[:, 0] = True
    gold[2, 3] = True
    tokens = -torch.rand(B, N, T, generator=gen) * 3
    token_valid = torch.ones(B, T, dtype=torch.bool)
    token_valid[0, 3:] = False
    return scores, target, valid, gold, tokens, token_valid


def all_losses(scores, target, valid, gold, tokens, token_valid):
    positive = torch.where(gold.any(1), gold.float().argmax(1), torch.full((B,), -1))
    return {
        "pdist": pdist_loss(scores, target, valid, 0.5, 0.7),
        "loop": loop_loss(scores, target, valid, 0.5, 0.7),
        "adist": adist_loss(scores, target, valid, 0.5, 0.7),
        "emdr2": emdr2_sequence_loss(scores, tokens.sum(2), valid, 0.7),
        "emdr2_token": emdr2_token_loss(scores, tokens, token_valid, valid, 0.7),
        "bce": bce_loss(scores, gold, valid),
        "lce": lce_loss(scores, positive, valid),
        "margin_mse": margin_mse_loss(scores, target, gold & valid, ~gold & valid),
        "kd_kl": kd_kl_loss(scores, target, valid, 1.0, 1.0),
    }


def test_every_loss_is_a_finite_differentiable_scalar(tensors):
    for name, loss in all_losses(*tensors).items():
        assert loss.dim() == 0 and torch.isfinite(loss), name
        (grad,) = torch.autograd.grad(loss, tensors[0])
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name
        assert (grad[~tensors[2]] == 0).all(), f"{name}: gradient on padding"


def test_no_loss_sees_padding_scores(tensors):
    scores, target, valid, *rest = tensors
    changed = scores.detach().clone()
    changed[~valid] = 1e3
    before = all_losses(scores.detach(), target, valid, *rest)
    after = all_losses(changed, target, valid, *rest)
    for name in before:
        assert float(before[name]) == pytest.approx(float(after[name]), abs=1e-5), name


def test_losses_do_not_depend_on_the_order_of_passages(tensors):
    scores, target, valid, gold, tokens, token_valid = tensors
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    before = all_losses(scores.detach(), target, valid, gold, tokens, token_valid)
    after = all_losses(
        scores.detach()[:, perm], target[:, perm], valid[:, perm], gold[:, perm], tokens[:, perm], token_valid
    )
    for name in before:
        assert float(before[name]) == pytest.approx(float(after[name]), abs=1e-5), name


def test_distillation_is_zero_when_the_student_matches_the_target(tensors):
    scores, target, valid, *_ = tensors
    assert float(kl_to_student(target, target.clone(), valid, 0.3, 0.3)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_to_student(target, target * 2, valid, 0.3, 0.6)) == pytest.approx(0.0, abs=1e-6)


def test_a_batch_without_signal_gives_a_zero_loss_that_backpropagates():
    scores = torch.zeros(2, 3, requires_grad=True)
    one_each = torch.tensor([[True, False, False], [False, True, False]])  # no ranking signal
    for loss in (
        kl_to_student(scores.detach(), scores, one_each, 1.0, 1.0),
        lce_loss(scores, torch.tensor([-1, -1]), one_each),
        margin_mse_loss(scores, scores.detach(), one_each, torch.zeros_like(one_each)),
    ):
        assert float(loss.detach()) == 0.0
        loss.backward()  # a graph is still there: training does not stop on such a batch


@pytest.mark.filterwarnings("ignore:reduction. .mean. divides")
def test_kl_entry_reduction_is_atlas_kldivloss():
    """Atlas: torch.nn.KLDivLoss()(log_softmax(w/tau_s), softmax(g/tau_g)), mean over B x n."""
    torch.manual_seed(0)
    target, scores = torch.randn(4, 5), torch.randn(4, 5)
    valid = torch.ones(4, 5, dtype=torch.bool)
    atlas = torch.nn.KLDivLoss()(torch.log_softmax(scores / 0.5, -1), torch.softmax(target / 0.1, -1))
    ours = kl_to_student(target, scores, valid, 0.1, 0.5, reduction="entry")
    torch.testing.assert_close(ours, atlas)
    torch.testing.assert_close(kl_to_student(target, scores, valid, 0.1, 0.5) / 5, ours)
    with pytest.raises(ValueError, match="reduction"):
        kl_to_student(target, scores, valid, 1.0, 1.0, reduction="batchmean")


def test_emdr2_token_level_batch_average_is_atlas_logprob():
    """Atlas's logprob: -sum over every real answer token of the batch / their number."""
    torch.manual_seed(1)
    scores = torch.randn(2, 3)
    tokens = torch.randn(2, 3, 4).log_softmax(-1)
    token_valid = torch.tensor([[True, True, True, True], [True, False, False, False]])
    marginal = torch.logsumexp(torch.log_softmax(scores, -1)[:, :, None] + tokens, dim=1)  # (B, T)
    atlas = -(marginal * token_valid).sum() / token_valid.sum()
    got = emdr2_token_loss(scores, tokens, token_valid, torch.ones(2, 3, dtype=torch.bool), token_average="batch")
    torch.testing.assert_close(got, atlas)
    per_question = -((marginal * token_valid).sum(1) / token_valid.sum(1)).mean()
    torch.testing.assert_close(emdr2_token_loss(scores, tokens, token_valid, torch.ones(2, 3, dtype=torch.bool)), per_question)
