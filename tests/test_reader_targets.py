"""The reader-derived targets are what their definitions say, checked against plain reader runs
on a tiny reader: LOOP's masked decoder passes = runs with the passage removed, PDist's and
EMDR2's per-passage likelihoods = single-passage runs, ADist's attention mass = the formula
applied to attention weights captured with ``output_attentions``. Plus the exact target cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_world import build_world
from transformers.modeling_outputs import BaseModelOutput

from gumbel_rerank.data import load_questions
from gumbel_rerank.objectives.base import StepContext
from gumbel_rerank.objectives.common import (
    leave_one_out_nll,
    per_passage_token_logprobs,
    read_batch,
)
from gumbel_rerank.objectives.registry import build_objective
from gumbel_rerank.reader.fid import FiDReader, FiDReaderConfig
from gumbel_rerank.reader.formatting import IGNORE_INDEX
from gumbel_rerank.rerankers import Reranker
from gumbel_rerank.training.collate import make_collate


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("world"))
    reader = FiDReader.from_pretrained(world.reader, config=FiDReaderConfig(text_maxlength=24))
    reranker = Reranker.from_pretrained(world.reranker)
    questions = load_questions(world.train)
    batch = make_collate(questions, None)([(i, i) for i in range(3)])
    batch.passages[1] = batch.passages[1][:3]  # a question with fewer candidates (padding)
    return reader, reranker, batch


def run_alone(reader, batch, keep: list[list[int]]):
    """Per question b, the reader on passages keep[b] only: (encoder states, labels)."""
    passages = [[batch.passages[b][i] for i in keep[b]] for b in range(len(batch))]
    tokens = reader.tokenize_passages(batch.questions, passages)
    return reader.encode(tokens), reader.tokenize_targets(batch.targets)


def test_loop_masked_passes_equal_runs_without_the_passage(parts):
    reader, _, batch = parts
    n = max(len(p) for p in batch.passages)
    states, labels = read_batch(reader, batch, n)
    masked = leave_one_out_nll(reader, states, labels, chunk_size=2)  # chunks cross the passages
    for b, passages in enumerate(batch.passages):
        for i in range(len(passages)):
            others = [j for j in range(len(passages)) if j != i]
            sub = type(batch)(**{**batch.__dict__})
            one = run_alone(reader, sub, [others if r == b else list(range(len(batch.passages[r]))) for r in range(len(batch))])
            explicit = reader.lm_loss(*one, torch.zeros(len(batch), one[0].n_passages))[b]
            torch.testing.assert_close(masked[b, i], explicit, atol=1e-5, rtol=1e-5)


def test_per_passage_likelihoods_equal_single_passage_runs(parts):
    reader, _, batch = parts
    n = max(len(p) for p in batch.passages)
    states, labels = read_batch(reader, batch, n)
    logp = per_passage_token_logprobs(reader, states, labels, chunk_size=4)  # (B, n, T)
    for b, passages in enumerate(batch.passages):
        for i in range(len(passages)):
            alone_states, alone_labels = run_alone(reader, batch, [[min(i, len(p) - 1)] for p in batch.passages])
            explicit = reader.token_logprobs(alone_states, alone_labels)[b]
            torch.testing.assert_close(logp[b, i], explicit, atol=1e-5, rtol=1e-5)
    # and the PDist / EMDR2 targets are their token means / sums
    pdist = build_objective("pdist", {}, reader=reader).reader_targets(batch, n)
    tokens = (labels != IGNORE_INDEX).sum(1, keepdim=True)
    torch.testing.assert_close(pdist, logp.sum(2) / tokens)


def test_attention_mass_equals_the_formula_on_captured_attention_weights(parts):
    reader, _, batch = parts
    n = max(len(p) for p in batch.passages)
    states, labels = read_batch(reader, batch, n)
    mass = reader.cross_attention_mass(states, labels)  # (B, n)
    b, _, length = states.token_mask.shape
    out = reader.model(
        encoder_outputs=BaseModelOutput(last_hidden_state=states.hidden),
        attention_mask=states.token_mask.reshape(b, n * length).long(),  # the plain 2-D mask
        decoder_input_ids=reader.model._shift_right(labels),
        output_attentions=True,
        use_cache=False,
    )
    expected = torch.zeros(b, n)
    for layer, attn in enumerate(out.cross_attentions):  # attn (B, H, T, n*L)
        module = reader.model.decoder.block[layer].layer[1].EncDecAttention
        heads, dkv = module.n_heads, module.key_value_proj_dim
        for q in range(b):
            for t in range(labels.shape[1]):
                if labels[q, t] == IGNORE_INDEX:
                    continue
                for j in range(n * length):
                    if not states.token_mask.reshape(b, -1)[q, j]:
                        continue
                    v = module.v.weight @ states.hidden[q, j]  # the value vector of token j
                    norms = v.view(heads, dkv).norm(dim=-1)
                    expected[q, j // length] += float((attn[q, :, t, j] * norms).mean())
    torch.testing.assert_close(mass, expected, atol=1e-4, rtol=1e-4)
    assert (mass[1, 3:] == 0).all()  # padding passages get nothing


@pytest.mark.parametrize("name", ["pdist", "loop", "adist", "emdr2"])
def test_cached_targets_give_the_same_loss_and_are_reused(parts, name):
    reader, reranker, batch = parts
    ctx = StepContext(step=0, seed=0)
    plain = build_objective(name, {}, reader=reader)
    cached = build_objective(name, {"cache_targets": True}, reader=reader)
    expected, _ = plain.loss(reranker, batch, ctx)
    first, _ = cached.loss(reranker, batch, ctx)
    again, _ = cached.loss(reranker, batch, ctx)
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(again, expected)
    assert cached.cache.misses == len(batch) and cached.cache.hits == len(batch)
    assert cached.describe()["cache_targets"] is True and cached.describe()["cached"]


def test_adist_targets_use_atlas_normaliser(parts):
    """Atlas's evalnormsum: the attention mass over 256 x decoder layers x answer tokens."""
    reader, _, batch = parts
    n = max(len(p) for p in batch.passages)
    states, labels = read_batch(reader, batch, n)
    mass = reader.cross_attention_mass(states, labels)
    tokens = (labels != IGNORE_INDEX).sum(dim=1, keepdim=True)
    layers = len(reader.model.decoder.block)
    atlas = build_objective("adist", {}, reader=reader).reader_targets(batch, n)
    torch.testing.assert_close(atlas, mass / (256 * layers * tokens))
    raw = build_objective("adist", {"normaliser": "none"}, reader=reader).reader_targets(batch, n)
    torch.testing.assert_close(raw, mass)


def test_with_atlas_normaliser_atlas_temperature_is_not_one_hot_on_the_demo_reader(tmp_path):
    """On the shipped chain reader, tau 0.01 on the raw mass gives a one-hot target (entropy 0);
    with Atlas's normaliser the target keeps most of its spread, as in Atlas."""
    from gumbel_rerank.demo.command import demo_spec
    from gumbel_rerank.demo.dataset import write_demo_data
    from gumbel_rerank.demo.reader_recipe import SHIPPED_READER
    from gumbel_rerank.objectives.distill import target_metrics

    paths = write_demo_data(dataclasses.replace(demo_spec(8), n_dev=8, n_test=0), tmp_path)
    settings = FiDReaderConfig(text_maxlength=32, answer_maxlength=6, answer_from="last_word")
    reader = FiDReader.from_pretrained(SHIPPED_READER, config=settings)
    batch = make_collate(load_questions(paths["dev"]), None)([(i, i) for i in range(8)])
    valid = torch.ones(8, 10, dtype=torch.bool)
    entropy = {}
    for normaliser in ("atlas", "none"):
        targets = build_objective("adist", {"normaliser": normaliser}, reader=reader).reader_targets(batch, 10)
        entropy[normaliser] = target_metrics(targets, targets, valid, 0.01)["target_entropy"]
    assert entropy["none"] < 0.05
    assert entropy["atlas"] > 1.5  # of at most ln 10 = 2.30


@pytest.mark.parametrize(
    ("name", "settings"),
    [("gumbel", {"mask": {"k": 2}}), ("gumbel", {"mask": {"k": 2}, "mask_samples": 3}), ("pdist", {}),
     ("loop", {}), ("adist", {}), ("emdr2", {}), ("emdr2", {"level": "token"}), ("lce", {})],
)  # fmt: skip
def test_declared_reader_work_is_what_the_objective_asks_of_the_reader(parts, name, settings):
    """ObjectiveSpec.reader_passes (the compare table's compute columns) equals the work a
    counting reader sees per question."""
    from gumbel_rerank.objectives.registry import get, parse_settings
    from gumbel_rerank.training.compute import CountingReader

    reader, reranker, batch = parts
    full = dataclasses.replace(batch, passages=[list(batch.passages[0])] * 3)  # every question has all n
    n = len(full.passages[0])
    counting = CountingReader(reader)
    objective = build_objective(name, settings, reader=counting)
    loss, _ = objective.loss(reranker, full, StepContext(step=0, seed=0))
    loss.backward()
    declared = get(name).reader_passes(parse_settings(name, settings), n)
    counted = counting.counts.per_question(len(full))
    assert counted == {k: float(getattr(declared, k)) for k in counted}


def test_decoder_and_encoder_flops_match_torch_flop_counter():
    """The FLOP formulas behind the compute columns against torch's own count of a tiny T5's
    encoder pass and teacher-forced decoder pass (matrix products only, as the formula)."""
    from tiny_t5 import tiny_t5
    from torch.utils.flop_counter import FlopCounterMode

    from gumbel_rerank.training.compute import decoder_flops, encoder_flops, t5_shape

    model = tiny_t5(50, seed=0).eval()
    model.set_attn_implementation("eager")  # as the reader runs it (SDPA's products are not counted)
    shape = t5_shape(model.config.to_dict())
    length, passages, answer = 12, 3, 5
    ids = torch.randint(2, 50, (passages, length))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        hidden = model.encoder(input_ids=ids).last_hidden_state
    assert counter.get_total_flops() == passages * encoder_flops(shape, length)
    states = hidden.reshape(1, passages * length, -1)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(encoder_outputs=(states,), decoder_input_ids=torch.randint(2, 50, (1, answer)), use_cache=False)
    assert counter.get_total_flops() == decoder_flops(shape, passages * length, answer)
