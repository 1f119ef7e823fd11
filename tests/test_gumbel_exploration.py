"""G-Rerank's exploration options (standardised scores, kappa/tau annealing, an entropy term)
and the exploration diagnostics the trainer logs (which gold passages the samples reached)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from tiny_world import build_world, reader_reranker_batch

from gumbel_rerank.cli import main
from gumbel_rerank.config import ConfigError
from gumbel_rerank.masks import MaskConfig, example_gumbel_noise, relaxed_topk_log_mask
from gumbel_rerank.objectives.base import StepContext
from gumbel_rerank.objectives.gumbel import (
    GumbelSettings,
    mask_entropy,
    sample_winners,
    standardize_scores,
)
from gumbel_rerank.objectives.registry import build_objective
from gumbel_rerank.training.train_reranker import exploration_metrics


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def parts(world):
    return reader_reranker_batch(world)


def test_standardised_scores_make_the_mask_blind_to_shift_and_scale():
    scores = torch.tensor([[1.0, 3.0, 2.0, 9.0], [0.0, 0.5, -1.0, 7.0]])
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    z = standardize_scores(scores, valid)
    real = z[0, :3]
    assert float(real.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(real.pow(2).mean().sqrt()) == pytest.approx(1.0, abs=1e-5)
    assert float(z[0, 3]) == 9.0  # padding untouched (never selected)
    torch.testing.assert_close(standardize_scores(5 * scores - 3, valid)[valid], z[valid], atol=1e-5, rtol=0)
    noise = example_gumbel_noise(0, 0, [0, 1], [3, 4], 2, 4)
    cfg = MaskConfig(k=2, tau=0.5)
    a = relaxed_topk_log_mask(standardize_scores(scores, valid), valid, cfg, noise=noise)
    b = relaxed_topk_log_mask(standardize_scores(100 * scores + 7, valid), valid, cfg, noise=noise)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_kappa_and_tau_anneal_linearly_then_stay():
    settings = GumbelSettings(MaskConfig(k=2, kappa=1.0, tau=0.5), kappa_end=0.25, tau_end=1.0, anneal_steps=10)
    assert (settings.mask_at(0).kappa, settings.mask_at(0).tau) == (1.0, 0.5)
    assert settings.mask_at(4).kappa == pytest.approx(0.7) and settings.mask_at(4).tau == pytest.approx(0.7)
    assert (settings.mask_at(10).kappa, settings.mask_at(50).tau) == (0.25, 1.0)
    assert GumbelSettings().mask_at(7) == MaskConfig()  # no schedule: the mask as configured
    with pytest.raises(ConfigError, match="anneal_steps"):
        GumbelSettings(kappa_end=0.5)


def test_the_entropy_term_is_subtracted_from_the_loss(parts):
    reader, reranker, batch = parts
    ctx = StepContext(step=3, seed=1)
    plain, _ = build_objective("gumbel", {"mask": {"k": 2}}, reader=reader).loss(reranker, batch, ctx)
    bonus = build_objective("gumbel", {"mask": {"k": 2}, "entropy_weight": 0.5}, reader=reader)
    with_term, _ = bonus.loss(reranker, batch, ctx)
    scores, valid = reranker.score(batch.questions, batch.passages)
    noise = example_gumbel_noise(1, 3, batch.positions, valid.sum(1).tolist(), 2, scores.shape[1])
    log_mask = relaxed_topk_log_mask(scores, valid, MaskConfig(k=2), noise=noise)
    torch.testing.assert_close(with_term, plain - 0.5 * mask_entropy(log_mask, valid))
    assert float(mask_entropy(torch.tensor([[0.0, -1e4, -1e4]]), torch.ones(1, 3, dtype=torch.bool))) == pytest.approx(0.0)


def test_sample_winners_are_the_passages_each_sample_picks():
    scores = torch.tensor([[0.0, 5.0, 1.0]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    noise = torch.tensor([[[0.0, 0.0, 0.0]], [[9.0, 0.0, 0.0]]])  # (k=2, B=1, n=3)
    assert sample_winners(scores, valid, MaskConfig(k=2), noise).tolist() == [[1, 0]]
    assert sample_winners(scores, valid, MaskConfig(k=2, mode="deterministic"), None).tolist() == [[1, 2]]


def test_exploration_metrics_count_gold_passages_the_samples_reached(parts):
    reader, reranker, batch = parts
    objective = build_objective("gumbel", {"mask": {"k": 2}}, reader=reader)
    objective.loss(reranker, batch, StepContext(step=0, seed=0, log=True))
    metrics = exploration_metrics(objective, batch)
    picked = torch.zeros_like(batch.gold)
    for row, chosen in enumerate(objective.last_selection.tolist()):
        picked[row, [c for c in chosen if c >= 0]] = True
    direct = batch.gold & batch.has_answer
    assert metrics["sampled_gold_direct"] == pytest.approx(float((picked & direct).sum() / direct.sum()))
    indirect = batch.gold & ~direct
    if indirect.any():
        assert metrics["sampled_gold_indirect"] == pytest.approx(float((picked & indirect).sum() / indirect.sum()))
    else:
        assert math.isnan(metrics["sampled_gold_indirect"])


def test_the_metrics_log_carries_exploration(world, tmp_path):
    out = tmp_path / "run"
    extra = {"optim.max_steps": 2, "objective.settings.standardize": "true", "objective.settings.kappa_end": 0.5,
             "objective.settings.anneal_steps": 2}
    assert main(["train", *world.overrides(out, **extra)]) == 0
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if "loss" in r]
    for key in ("sampled_gold_direct", "score_spread", "mask_entropy", "effective_k"):
        assert all(key in r for r in train), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_standardising_a_one_passage_or_tied_row_keeps_every_gradient_finite(dtype):
    """A question with one valid candidate or with tied scores has zero spread; sqrt at 0 gave
    an infinite derivative and 0 x inf = NaN reached every parameter (fixed: eps inside)."""
    scores = torch.tensor([[0.7, 0.0, 0.0], [1.5, 1.5, 1.5], [0.2, -0.4, 1.0]], dtype=dtype, requires_grad=True)
    valid = torch.tensor([[True, False, False], [True, True, True], [True, True, True]])
    z = standardize_scores(scores, valid)
    assert torch.isfinite(z).all() and float(z[0, 0].detach()) == 0.0 and (z[1] == 0).all()
    noise = example_gumbel_noise(0, 0, [0, 1, 2], [1, 3, 3], 2, 3)
    log_mask = relaxed_topk_log_mask(z, valid, MaskConfig(k=2), noise=noise)
    (log_mask * torch.tensor([[1.0, 2.0, 3.0]] * 3)).sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_questions_whose_candidates_all_fit_in_k_leave_the_loss_mean(parts):
    """Rows with no more valid candidates than k keep everything (constant mask, no gradient);
    they are left out of the mean, so the other rows' gradient is not diluted."""
    reader, reranker, batch = parts
    batch = dataclasses.replace(batch, passages=[list(p) for p in batch.passages])
    batch.passages[1] = batch.passages[1][:3]  # three candidates: all kept at k = 3
    ctx = StepContext(step=0, seed=0)
    objective = build_objective("gumbel", {"mask": {"k": 3}}, reader=reader)
    loss, _ = objective.loss(reranker, batch, ctx)
    scores, valid = reranker.score(batch.questions, batch.passages)
    n = scores.shape[1]
    noise = example_gumbel_noise(0, 0, batch.positions, valid.sum(1).tolist(), 3, n)
    log_mask = relaxed_topk_log_mask(scores, valid, MaskConfig(k=3), noise=noise)
    states = reader.encode(reader.tokenize_passages(batch.questions, batch.passages, n_passages=n))
    per_row = reader.lm_loss(states, reader.tokenize_targets(batch.targets), log_mask)
    selects = valid.sum(1) > 3
    assert selects.any() and not selects.all(), "the fixture needs both kinds of rows"
    torch.testing.assert_close(loss, per_row[selects].mean())


def test_role_metrics_describe_each_passage_role_from_the_logged_step(parts):
    """Per role: mean raw and standardised score, how often sampled, in the hard top k, and the
    mean gradient of the loss w.r.t. its score and log mask entry (caught during backward)."""
    from gumbel_rerank.training.train_reranker import role_metrics

    reader, reranker, batch = parts
    n = len(batch.passages[0])
    roles = ["bridge", "answer", "distractor:linked_attribute", "distractor:entity_link", "distractor:other"]
    batch = dataclasses.replace(batch, passage_roles=[roles[:n] for _ in range(len(batch))])
    objective = build_objective("gumbel", {"mask": {"k": 2}, "standardize": True}, reader=reader)
    reranker.zero_grad()
    loss, _ = objective.loss(reranker, batch, StepContext(step=0, seed=0, log=True))
    loss.backward()
    metrics = role_metrics(objective, batch)
    kept = objective.last_passages
    scores, valid = reranker.score(batch.questions, batch.passages)
    torch.testing.assert_close(kept["score"], scores.detach())
    assert metrics["role/bridge/score"] == pytest.approx(float(kept["score"][:, 0].mean()))
    assert metrics["role/wrong_chain/z"] == pytest.approx(float(standardize_scores(scores, valid)[:, 2].mean().detach()), abs=1e-5)
    picked = [[0 in row] for row in objective.last_selection.tolist()]
    assert metrics["role/bridge/sampled"] == pytest.approx(sum(p[0] for p in picked) / len(picked))
    assert set(kept) >= {"grad_score", "grad_log_mask"}
    assert metrics["role/answer/grad_score"] == pytest.approx(float(kept["grad_score"][:, 1].mean()))
    assert metrics["role/rest/in_topk"] == pytest.approx(float((kept["z"][:, 4:] >= kept["z"].topk(2).values[:, 1:]).float().mean()))
    assert math.isnan(metrics["role/trap/score"])  # no passage has that role
    assert torch.isfinite(kept["grad_score"]).all() and kept["grad_score"].abs().sum() > 0
