"""The frozen reader's encoder cache: reuse is exact, keys follow content, the budget holds."""

from __future__ import annotations

import logging

import pytest
import torch
from tiny_t5 import PASSAGES, QUESTIONS, build_tokenizer, tiny_t5

from gumbel_rerank.reader import FiDReader, FiDReaderConfig
from gumbel_rerank.reader.encoder_cache import EncoderCache


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def make_reader(tokenizer, trainable: bool = False) -> FiDReader:
    return FiDReader(tiny_t5(len(tokenizer)), tokenizer, FiDReaderConfig(text_maxlength=16), trainable=trainable)


def tokens(reader, questions=QUESTIONS, passages=PASSAGES, n=4):
    return reader.tokenize_passages(list(questions), list(passages), n_passages=n)


def assert_same(a, b) -> None:
    assert torch.equal(a.hidden, b.hidden) and torch.equal(a.token_mask, b.token_mask)


def test_cached_states_equal_the_encoder_and_are_reused_exactly(tokenizer):
    reader = make_reader(tokenizer)
    plain = reader.encode(tokens(reader))
    reader.use_encoder_cache(EncoderCache(budget_mib=64))
    stats = reader.encoder_cache.stats
    first = reader.encode(tokens(reader), cached=True)
    assert_same(first, plain)  # a batch of new questions is exactly the uncached computation
    assert (stats.hits, stats.misses, stats.entries) == (0, 3, 3)
    again = reader.encode(tokens(reader), cached=True)
    assert_same(again, plain)
    assert (stats.hits, stats.misses) == (3, 3)
    # a batch mixing cached and new questions (a changed passage is a new question): cached rows
    # are the stored ones, the new row equals encoding it alone
    changed = [PASSAGES[0], [{"title": "seine", "text": "the seine flows through paris and rouen"}], PASSAGES[2]]
    mixed = reader.encode(tokens(reader, passages=changed), cached=True)
    alone = reader.encode(tokens(reader, questions=QUESTIONS[1:2], passages=changed[1:2]))
    assert (stats.hits, stats.misses) == (5, 4)
    for row in (0, 2):
        assert torch.equal(mixed.hidden[row], plain.hidden[row])
    torch.testing.assert_close(mixed.hidden[1], alone.hidden[0], atol=1e-6, rtol=1e-5)
    assert torch.equal(mixed.token_mask[1], alone.token_mask[0])
    # the same questions padded to another passage count (another batch's N) are hits, and
    # equal to encoding them padded that way
    assert_same(reader.encode(tokens(reader, n=5), cached=True), reader.encode(tokens(reader, n=5)))
    assert (stats.hits, stats.misses) == (8, 4)
    # a batch holding one new question twice (a batch across an epoch boundary) encodes and
    # stores it once
    twice = reader.encode(tokens(reader, questions=["who wrote it"] * 2, passages=[PASSAGES[1]] * 2), cached=True)
    assert torch.equal(twice.hidden[0], twice.hidden[1])
    assert (stats.misses, stats.entries) == (5, 5)
    assert stats.bytes == sum(
        sum(t.numel() * t.element_size() for t in entry) for entry in reader.encoder_cache._entries.values()
    )
    # without cached=True (evaluations of changing top-k subsets) the cache is not touched
    reader.encode(tokens(reader))
    assert (stats.hits, stats.misses) == (9, 5)


def test_a_full_budget_warns_once_naming_the_need_and_keeps_results_right(tokenizer, caplog):
    reader = make_reader(tokenizer)
    plain = reader.encode(tokens(reader))
    real = len(PASSAGES[0])  # question 0's real passages: what its entry holds
    one_question = real * plain.passage_length * (plain.hidden.shape[-1] * 4 + 1) / 2**20
    reader.use_encoder_cache(EncoderCache(budget_mib=one_question * 1.2, expected_questions=1000))
    with caplog.at_level(logging.WARNING, logger="gumbel_rerank.reader.encoder_cache"):
        for _ in range(3):
            assert_same(reader.encode(tokens(reader), cached=True), plain)
    stats = reader.encoder_cache.stats
    assert stats.entries == 1 and stats.bytes == one_question * 2**20
    assert (stats.hits, stats.misses) == (2, 7)  # question 0 cached; 1 and 2 encoded each time
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "caching all 1000 questions needs about" in warnings[0]
    assert "reader.encoder_cache_mib" in warnings[0]


def test_only_a_frozen_reader_takes_a_cache(tokenizer):
    with pytest.raises(ValueError, match="frozen reader"):
        make_reader(tokenizer, trainable=True).use_encoder_cache(EncoderCache(budget_mib=1))
    with pytest.raises(ValueError, match="budget_mib"):
        EncoderCache(budget_mib=0)
    reader = make_reader(tokenizer)
    reader.use_encoder_cache(EncoderCache(budget_mib=64))
    with_grad = reader.encode(tokens(reader), with_grad=True, cached=True)  # never from the cache
    assert reader.encoder_cache.stats.misses == 0 and with_grad.hidden.shape[0] == 3


def test_moving_the_reader_to_another_device_empties_its_cache(tokenizer):
    reader = make_reader(tokenizer)
    reader.use_encoder_cache(EncoderCache(budget_mib=64))
    reader.encode(tokens(reader), cached=True)
    reader.to("cpu")  # the same device: the entries stay
    assert reader.encoder_cache.stats.entries == 3
    reader.to("meta")  # (the one other device every machine has) states on the old one go
    assert reader.encoder_cache.stats.entries == 0 and reader.encoder_cache.stats.bytes == 0
