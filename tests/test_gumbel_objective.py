"""The G-Rerank objective: one loss per Gumbel mask draw, averaged; diagnostics logged."""

from __future__ import annotations

import pytest
import torch
from tiny_world import build_world

from gumbel_rerank.data.questions import load_questions
from gumbel_rerank.masks import MaskConfig, example_gumbel_noise, relaxed_topk_log_mask
from gumbel_rerank.objectives.base import StepContext
from gumbel_rerank.objectives.gumbel import GumbelRerankLoss
from gumbel_rerank.reader.fid import FiDReader, FiDReaderConfig
from gumbel_rerank.rerankers.model import Reranker
from gumbel_rerank.training.collate import make_collate


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("world"))
    reader = FiDReader.from_pretrained(world.reader, config=FiDReaderConfig(text_maxlength=24))
    reranker = Reranker.from_pretrained(world.reranker)
    batch = make_collate(load_questions(world.train), None)([(i, i) for i in range(4)])
    return reader, reranker, batch


def test_loss_is_the_reader_nll_under_the_keyed_mask(parts):
    reader, reranker, batch = parts
    mask = MaskConfig(k=2, tau=0.5)
    loss, metrics = GumbelRerankLoss(reader, mask).loss(reranker, batch, StepContext(step=3, seed=7, log=True))
    scores, valid = reranker.score(batch.questions, batch.passages)
    noise = example_gumbel_noise(7, 3, batch.positions, valid.sum(1).tolist(), 2, scores.shape[1])
    log_mask = relaxed_topk_log_mask(scores, valid, mask, noise=noise)
    states = reader.encode(reader.tokenize_passages(batch.questions, batch.passages))
    expected = reader.lm_loss(states, reader.tokenize_targets(batch.targets), log_mask).mean()
    torch.testing.assert_close(loss, expected)
    for key in ("loss_soft", "loss_hard", "mask_entropy", "effective_k", "score_spread"):
        assert key in metrics
    assert 1.0 <= metrics["effective_k"] <= 2.0 + 1e-6


def test_several_mask_samples_average_independent_draws(parts):
    reader, reranker, batch = parts
    mask = MaskConfig(k=2, tau=0.5)
    ctx = StepContext(step=5, seed=1)
    two, _ = GumbelRerankLoss(reader, mask, mask_samples=2).loss(reranker, batch, ctx)
    scores, valid = reranker.score(batch.questions, batch.passages)
    states = reader.encode(reader.tokenize_passages(batch.questions, batch.passages))
    labels = reader.tokenize_targets(batch.targets)
    losses = []
    for draw in range(2):
        noise = example_gumbel_noise(1, 5, batch.positions, valid.sum(1).tolist(), 2, scores.shape[1], draw=draw)
        losses.append(reader.lm_loss(states, labels, relaxed_topk_log_mask(scores, valid, mask, noise=noise)).mean())
    torch.testing.assert_close(two, torch.stack(losses).mean())
    assert not torch.allclose(losses[0], losses[1])  # the draws differ
    one, _ = GumbelRerankLoss(reader, mask).loss(reranker, batch, ctx)
    torch.testing.assert_close(one, losses[0])  # draw 0 is the single-sample loss
