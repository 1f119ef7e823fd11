"""Tests for gumbel_rerank.rerankers.model on tiny offline models (CPU, no hub)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil

import pytest
import torch
from tiny_encoders import (
    tiny_bert_config,
    tiny_t5_config,
    train_t5_tokenizer,
    train_wordpiece_tokenizer,
)
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertForMaskedLM,
    BertForSequenceClassification,
    T5ForConditionalGeneration,
)

import gumbel_rerank.rerankers.storage as rr_storage
from gumbel_rerank.envinfo import native_bf16
from gumbel_rerank.rerankers.model import (
    SETTINGS_NAME,
    RankResult,
    Reranker,
    RerankerConfig,
    ScoreOutput,
    build_reranker_from_config,
    format_passage,
)

QUESTIONS = ["who wrote on the origin of species ?", "what is the capital of germany ?", "paris"]
PASSAGES = [
    [
        {"title": "darwin", "text": "charles darwin wrote on the origin of species in 1859 ."},
        {"title": "", "text": "natural selection is a mechanism of evolution ."},
    ],
    [],
    [
        {"title": "paris", "text": "paris is the largest city in france ."},
        {"text": "the eiffel tower was built in 1889 for the world fair ."},
        "berlin is the capital of germany and its largest city .",
    ],
]
# Long enough to be truncated at max_length=32, so truncation must agree too.
LONG_TEXT = " ".join(["the capital of france is paris , a city on the seine ."] * 6)


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def bert_tokenizer(tmp_path_factory):
    return train_wordpiece_tokenizer(tmp_path_factory.mktemp("bert_tok"))


@pytest.fixture(scope="module")
def t5_tokenizer(tmp_path_factory):
    return train_t5_tokenizer(tmp_path_factory.mktemp("t5_tok"))


def make_bert_reranker(tokenizer, seed=0, **cfg_kwargs) -> Reranker:
    torch.manual_seed(seed)
    cfg_kwargs.setdefault("max_length", 32)
    return build_reranker_from_config(
        tiny_bert_config(len(tokenizer)), tokenizer, RerankerConfig(**cfg_kwargs)
    )


def make_t5_reranker(tokenizer, seed=0, **cfg_kwargs) -> Reranker:
    torch.manual_seed(seed)
    cfg_kwargs.setdefault("max_length", 32)
    return build_reranker_from_config(
        tiny_t5_config(len(tokenizer)), tokenizer, RerankerConfig(kind="rankt5", **cfg_kwargs)
    )


@pytest.fixture()
def bert_reranker(bert_tokenizer):
    return make_bert_reranker(bert_tokenizer).eval()


def raw_logit(model, tokenizer, question, passage_text, max_length=32) -> float:
    """The HF model's logit for one pair, tokenised alone (no padding), without our code."""
    enc = tokenizer(
        question, passage_text, truncation=True, max_length=max_length, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**enc).logits[0, 0].item()


def tree_digest(directory) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------- config / formatting
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "bi_encoder"}, "kind"),
        ({"max_length": 0}, "max_length"),
        ({"max_length": 1.5}, "max_length"),
        ({"template": "{title}"}, "text"),
        ({"template": "{title}: {text} {url}"}, "url"),
        ({"template": "{}: {text}"}, "positional"),
        ({"template": "{title: {text}"}, "template"),
        ({"rankt5_token": ""}, "rankt5_token"),
        ({"rankt5_query_template": "Query: {question}"}, "passage"),
        ({"grad_chunk_size": 0}, "grad_chunk_size"),
        ({"grad_chunk_size": True}, "grad_chunk_size"),
    ],
)
def test_config_rejects_bad_fields(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RerankerConfig(**kwargs)


def test_format_passage():
    assert format_passage({"title": "T", "text": "x"}, "{title}: {text}") == "T: x"
    assert format_passage({"title": "T", "text": "x"}, "title: {title} context: {text}") == (
        "title: T context: x"
    )
    # No title (missing, None, empty): text alone, no dangling ": ".
    for passage in ({"text": "x"}, {"title": None, "text": "x"}, {"title": "", "text": "x"}):
        assert format_passage(passage, "{title}: {text}") == "x"
    assert format_passage("plain text", "{title}: {text}") == "plain text"
    with pytest.raises(ValueError, match="text"):
        format_passage({"title": "T"})
    with pytest.raises(TypeError):
        format_passage(3)


# ---------------------------------------------------------------------- score()
def test_score_shapes_mask_and_values_for_ragged_lists(bert_reranker, bert_tokenizer):
    out = bert_reranker.score(QUESTIONS, PASSAGES, fill_value=-7.0)
    assert isinstance(out, ScoreOutput)
    scores, mask = out
    assert scores.shape == (3, 3) and mask.shape == (3, 3)
    assert scores.dtype == torch.float32 and mask.dtype == torch.bool
    expected_mask = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    assert torch.equal(mask, expected_mask)
    assert torch.all(scores[~mask] == -7.0)
    # Each valid entry is the model's logit for that pair tokenised alone: checks the scatter
    # order (question-major) and that batch padding does not change scores.
    for b, (question, plist) in enumerate(zip(QUESTIONS, PASSAGES, strict=True)):
        for j, passage in enumerate(plist):
            text = format_passage(passage, bert_reranker.config.template)
            ref = raw_logit(bert_reranker.hf_model, bert_tokenizer, question, text)
            assert scores[b, j].item() == pytest.approx(ref, abs=1e-5)
    # Different passages get different scores (the model is not constant).
    assert scores[mask].unique().numel() == int(mask.sum())


def test_score_with_no_passages_at_all(bert_reranker):
    scores, mask = bert_reranker.score(["q1", "q2"], [[], []])
    assert scores.shape == (2, 0) and mask.shape == (2, 0)


def test_score_rejects_bad_inputs(bert_reranker):
    with pytest.raises(ValueError, match="2 questions but 1 passage lists"):
        bert_reranker.score(["a", "b"], [[{"text": "x"}]])
    with pytest.raises(ValueError, match="'text'"):
        bert_reranker.score(["a"], [[{"title": "only a title"}]])
    with pytest.raises(TypeError, match="wrap it in a list"):
        bert_reranker.score(["a"], [{"text": "x"}])
    with pytest.raises(ValueError, match="chunk_size"):
        bert_reranker.score(["a"], [["x"]], chunk_size=0)


def test_score_gradient_reaches_parameters(bert_tokenizer):
    reranker = make_bert_reranker(bert_tokenizer).train()
    scores, mask = reranker.score(QUESTIONS, PASSAGES)
    assert scores.requires_grad
    (scores[mask] * torch.arange(1.0, int(mask.sum()) + 1)).sum().backward()
    model = reranker.hf_model
    assert model.classifier.weight.grad is not None
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


def test_padding_positions_get_no_gradient(bert_tokenizer):
    reranker = make_bert_reranker(bert_tokenizer).train()
    scores, mask = reranker.score(QUESTIONS, PASSAGES)
    scores[mask].sum().backward()
    grads_valid = [p.grad.clone() for p in reranker.parameters()]
    reranker.zero_grad()
    scores, _ = reranker.score(QUESTIONS, PASSAGES)
    scores.sum().backward()  # includes the fill values
    for g_valid, p in zip(grads_valid, reranker.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g_valid)


def _scores_and_grads(reranker, **kwargs):
    reranker.zero_grad()
    scores, mask = reranker.score(QUESTIONS, PASSAGES, **kwargs)
    weights = torch.linspace(-1.0, 2.0, int(mask.sum()))
    (scores[mask] * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in reranker.named_parameters() if p.grad is not None}
    return scores.detach(), grads


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
def test_chunked_equals_unchunked(bert_tokenizer, chunk_size):
    reranker = make_bert_reranker(bert_tokenizer).train()
    ref_scores, ref_grads = _scores_and_grads(reranker)
    scores, grads = _scores_and_grads(reranker, chunk_size=chunk_size)
    torch.testing.assert_close(scores, ref_scores, atol=1e-6, rtol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_gradient_checkpointing_gives_same_gradients(bert_tokenizer):
    reranker = make_bert_reranker(bert_tokenizer).train()
    ref_scores, ref_grads = _scores_and_grads(reranker)
    reranker.gradient_checkpointing_enable()
    assert checkpointing_on(reranker.hf_model)
    scores, grads = _scores_and_grads(reranker)
    torch.testing.assert_close(scores, ref_scores, atol=1e-6, rtol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-6, rtol=1e-5, msg=name)
    reranker.gradient_checkpointing_disable()
    assert not checkpointing_on(reranker.hf_model)


def saved_activation_bytes(reranker, **kwargs) -> int:
    """Bytes autograd keeps for backward while scoring (outside any checkpointed region)."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        reranker.score(QUESTIONS, PASSAGES, **kwargs)
    return total


def test_grad_chunks_recompute_to_the_same_scores_and_gradients_keeping_no_activations(bert_tokenizer):
    """grad_chunk_size = c: the same scores and gradients as plain scoring c pairs at a time,
    with dropout on (its random masks are replayed in the recompute), while autograd keeps
    almost nothing of the forward pass; without gradients it changes nothing."""
    torch.manual_seed(0)
    config = tiny_bert_config(len(bert_tokenizer), hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    plain = build_reranker_from_config(config, bert_tokenizer, RerankerConfig(max_length=32)).train()
    chunked = build_reranker_from_config(config, bert_tokenizer, RerankerConfig(max_length=32, grad_chunk_size=2))
    chunked.load_state_dict(plain.state_dict())
    chunked.train()
    torch.manual_seed(5)
    ref_scores, ref_grads = _scores_and_grads(plain, chunk_size=2)
    torch.manual_seed(5)
    scores, grads = _scores_and_grads(chunked)
    torch.manual_seed(6)
    assert not torch.equal(_scores_and_grads(plain, chunk_size=2)[0], ref_scores)  # dropout is on
    torch.testing.assert_close(scores, ref_scores, atol=0, rtol=0)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-7, rtol=1e-6, msg=name)
    kept, kept_plain = saved_activation_bytes(chunked), saved_activation_bytes(plain, chunk_size=2)
    assert kept * 20 < kept_plain, (kept, kept_plain)
    chunked.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(chunked.score(QUESTIONS, PASSAGES).scores, plain.score(QUESTIONS, PASSAGES).scores)


def checkpointing_on(model) -> bool:
    # transformers 5.x renamed is_gradient_checkpointing (the old name warns FutureWarning).
    if hasattr(type(model), "is_activation_checkpointing"):
        return model.is_activation_checkpointing
    return model.is_gradient_checkpointing


def test_tokenize_then_forward_equals_score(bert_reranker):
    """The data-loader path (tokenize in a worker, forward in the step) matches score()."""
    tokenized = bert_reranker.tokenize(QUESTIONS, PASSAGES)
    assert tokenized.num_pairs == 5
    assert set(tokenized.features) == {"input_ids", "attention_mask", "token_type_ids"}
    assert tokenized.features["input_ids"].shape[0] == 5
    flat = bert_reranker(**tokenized.features)
    scores, mask = bert_reranker.score(QUESTIONS, PASSAGES)
    assert flat.shape == (5,)
    torch.testing.assert_close(flat, scores[mask])


def test_num_labels_two_scores_log_odds(bert_tokenizer):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(len(bert_tokenizer), num_labels=2))
    reranker = Reranker(model, bert_tokenizer, RerankerConfig(max_length=32)).eval()
    scores, mask = reranker.score(QUESTIONS[:1], PASSAGES[:1])
    text = format_passage(PASSAGES[0][0], reranker.config.template)
    enc = bert_tokenizer(QUESTIONS[0], text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0]
    assert scores[0, 0].item() == pytest.approx((logits[1] - logits[0]).item(), abs=1e-5)


# ---------------------------------------------------------------------- rank()
def test_rank_sorted_topk_indices_and_types(bert_reranker):
    passages = [
        "charles darwin wrote on the origin of species in 1859 .",
        {"title": "paris", "text": "paris is the largest city in france ."},
        "natural selection is a mechanism of evolution .",
        {"text": "berlin is the capital of germany and its largest city ."},
        "the eiffel tower was built in 1889 for the world fair .",
    ]
    question = QUESTIONS[0]
    bert_reranker.train()  # rank() must switch to eval and restore the mode afterwards
    results = bert_reranker.rank(question, passages, batch_size=2)
    assert bert_reranker.training
    assert len(results) == len(passages)
    assert all(isinstance(r, RankResult) for r in results)
    assert all(type(r.score) is float and type(r.index) is int for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert sorted(r.index for r in results) == list(range(len(passages)))
    for r in results:
        assert r.passage is passages[r.index]
    # Scores are the eval-mode scores of the same passages.
    bert_reranker.eval()
    scores, _ = bert_reranker.score([question], [passages])
    for r in results:
        assert r.score == pytest.approx(scores[0, r.index].item(), abs=1e-5)

    top2 = bert_reranker.rank(question, passages, top_k=2)
    assert [r.index for r in top2] == [r.index for r in results[:2]]
    assert len(bert_reranker.rank(question, passages, top_k=50)) == len(passages)
    assert bert_reranker.rank(question, []) == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[0].score = 0.0
    with pytest.raises(ValueError, match="top_k"):
        bert_reranker.rank(question, passages, top_k=0)


@pytest.mark.parametrize("kind", ["cross_encoder", "rankt5"])
def test_predict_equals_score_in_input_order_whatever_the_lengths(bert_tokenizer, t5_tokenizer, kind):
    """Length-sorted, separately padded batches give each pair the score it gets alone, in
    the input order (a sorting bug would hand scores to the wrong pairs)."""
    reranker = make_bert_reranker(bert_tokenizer) if kind == "cross_encoder" else make_t5_reranker(t5_tokenizer)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # larger random weights: the tiny init scores every pair alike
        for param in reranker.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    words = ["paris", "is", "the", "largest", "city", "in", "france", "and", "berlin", "is", "the", "capital", "of", "germany"]
    passages = [" ".join(words[: 1 + (7 * i) % len(words)]) for i in range(11)]  # mixed lengths
    passages[3] = {"title": "paris", "text": passages[3]}
    pairs = [(QUESTIONS[i % len(QUESTIONS)], p) for i, p in enumerate(passages)]
    reranker.train()
    got = reranker.predict(pairs, batch_size=3)
    assert reranker.training  # mode restored
    reranker.eval()
    with torch.no_grad():
        alone = [reranker.score([q], [[p]]).scores[0, 0].item() for q, p in pairs]
    assert got == pytest.approx(alone, abs=1e-5)
    assert len(set(round(x, 4) for x in got)) > 5  # scores differ: a permutation would show
    assert reranker.predict([]) == []
    with pytest.raises(TypeError, match=r"pairs\[1\]"):
        reranker.predict([pairs[0], "not a pair"])
    with pytest.raises(ValueError, match="batch_size"):
        reranker.predict(pairs, batch_size=0)


def test_score_inference_equals_score_on_ragged_lists(bert_tokenizer):
    reranker = make_bert_reranker(bert_tokenizer)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for param in reranker.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    passages = [
        ["paris is the largest city in france .", "berlin ."],
        [],
        [{"title": "x", "text": "the eiffel tower was built in 1889 for the world fair ."}, "a", "b c d"],
    ]
    questions = QUESTIONS[:3]
    reranker.eval()
    with torch.no_grad():
        expected = reranker.score(questions, passages, fill_value=-7.0)
    got = reranker.score_inference(questions, passages, batch_size=2, fill_value=-7.0)
    assert torch.equal(got.mask, expected.mask)
    assert torch.allclose(got.scores, expected.scores, atol=1e-5)
    assert not got.scores.requires_grad
    with pytest.raises(TypeError, match=r"passages\[0\]"):
        reranker.score_inference(questions[:1], ["not a list"])


def test_bf16_autocast_scores_close_to_float32_with_float32_weights_and_gradients(bert_tokenizer):
    """``autocast="bf16"``: the same model, run in bfloat16 arithmetic; weights and
    gradients stay float32, scores come back float32 and agree to bfloat16 precision."""
    plain = make_bert_reranker(bert_tokenizer, seed=3)
    fast = make_bert_reranker(bert_tokenizer, seed=3, autocast="bf16")
    passages = [["paris is the largest city in france .", "berlin is the capital ."], ["the eiffel tower ."]]
    got, expected = fast.score(QUESTIONS[:2], passages), plain.score(QUESTIONS[:2], passages)
    assert got.scores.dtype == torch.float32
    assert not torch.equal(got.scores, expected.scores)  # bfloat16 arithmetic did run
    assert torch.allclose(got.scores, expected.scores, atol=0.05, rtol=0.05)
    got.scores.sum().backward()
    grads = [p.grad for p in fast.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads)
    assert all(p.dtype == torch.float32 for p in fast.parameters())
    with pytest.raises(ValueError, match="autocast"):
        RerankerConfig(autocast="fp8")
    # "auto" is bf16 exactly where the CPU computes it natively, float32 elsewhere
    auto = make_bert_reranker(bert_tokenizer, seed=3, autocast="auto").score(QUESTIONS[:2], passages)
    same_as = got if native_bf16(torch.device("cpu")) else expected
    assert torch.equal(auto.scores.detach(), same_as.scores.detach())


def test_rank_runs_without_gradients(bert_reranker):
    with torch.enable_grad():
        results = bert_reranker.rank(QUESTIONS[0], ["a passage", "another passage"])
    assert all(math.isfinite(r.score) for r in results)
    assert all(p.grad is None for p in bert_reranker.parameters())


# ---------------------------------------------------------------------- save / load
def test_save_writes_plain_hf_directory_that_loads_without_our_code(bert_reranker, tmp_path):
    path = bert_reranker.save_pretrained(tmp_path / "reranker")
    files = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", SETTINGS_NAME} <= files
    assert "pytorch_model.bin" not in files
    settings = json.loads((path / SETTINGS_NAME).read_text())
    assert settings["kind"] == "cross_encoder" and settings["max_length"] == 32
    assert settings["template"] == "{title}: {text}" and "gumbel_rerank_version" in settings
    assert [p.name for p in tmp_path.iterdir()] == ["reranker"]  # no temp leftovers

    plain_model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    plain_tok = AutoTokenizer.from_pretrained(path)
    assert plain_tok.model_max_length == 32  # so CrossEncoder truncates as we do

    question = QUESTIONS[2]
    passages = [*PASSAGES[2], {"title": "long", "text": LONG_TEXT}]
    texts = [format_passage(p, "{title}: {text}") for p in passages]
    plain = [raw_logit(plain_model, plain_tok, question, t) for t in texts]
    original, _ = bert_reranker.score([question], [passages])
    assert original[0].tolist() == pytest.approx(plain, abs=1e-5)

    loaded = Reranker.from_pretrained(path)
    assert loaded.config == bert_reranker.config
    by_index = {r.index: r.score for r in loaded.rank(question, passages)}
    assert [by_index[i] for i in range(len(passages))] == pytest.approx(plain, abs=1e-5)
    loaded.eval()
    scores, _ = loaded.score([question], [passages])
    assert scores[0].tolist() == pytest.approx(plain, abs=1e-5)


def test_saved_directory_loads_in_sentence_transformers_cross_encoder(bert_reranker, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    path = bert_reranker.save_pretrained(tmp_path / "reranker")
    question = QUESTIONS[0]
    passages = [*PASSAGES[0], {"title": "long", "text": LONG_TEXT}]
    pairs = [(question, format_passage(p, "{title}: {text}")) for p in passages]
    ours, _ = bert_reranker.score([question], [passages])

    # The folder's config_sentence_transformers.json sets the identity activation, so a plain
    # CrossEncoder returns our raw scores (its num_labels=1 default would squash with a sigmoid).
    ce = sentence_transformers.CrossEncoder(str(path), device="cpu", local_files_only=True)
    assert ce.max_seq_length == 32
    raw = ce.predict(pairs, batch_size=2)
    assert raw.tolist() == pytest.approx(ours[0].tolist(), abs=1e-5)

    # A user who asks for the sigmoid still gets it: same ranking, other scale.
    squashing = sentence_transformers.CrossEncoder(
        str(path), device="cpu", local_files_only=True, activation_fn=torch.nn.Sigmoid()
    )
    squashed = squashing.predict(pairs)
    assert squashed.tolist() == pytest.approx(torch.sigmoid(ours[0]).tolist(), abs=1e-5)


def test_from_pretrained_settings_and_overrides(bert_tokenizer, tmp_path):
    reranker = make_bert_reranker(bert_tokenizer, max_length=24, template="T {title} X {text}")
    path = reranker.save_pretrained(tmp_path / "r")
    loaded = Reranker.from_pretrained(path)
    assert loaded.config.max_length == 24 and loaded.config.template == "T {title} X {text}"
    assert Reranker.from_pretrained(path, max_length=16).config.max_length == 16
    explicit = Reranker.from_pretrained(path, RerankerConfig(max_length=20))
    assert explicit.config.template == "{title}: {text}" and explicit.config.max_length == 20
    with pytest.raises(TypeError, match="max_lenght"):
        Reranker.from_pretrained(path, max_lenght=16)
    with pytest.raises(ValueError, match="rankt5"):
        Reranker.from_pretrained(path, kind="rankt5")
    # A directory without our settings file (a plain HF reranker) gets the defaults.
    (path / SETTINGS_NAME).unlink()
    assert Reranker.from_pretrained(path, max_length=32).config.template == "{title}: {text}"


def test_save_over_existing_directory_replaces_it(bert_tokenizer, tmp_path):
    path = tmp_path / "r"
    make_bert_reranker(bert_tokenizer, seed=0).save_pretrained(path)
    (path / "stale_file.txt").write_text("from the old save")
    second = make_bert_reranker(bert_tokenizer, seed=1).eval()
    second.save_pretrained(path)
    assert not (path / "stale_file.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]
    expected, _ = second.score(QUESTIONS, PASSAGES)
    got, _ = Reranker.from_pretrained(path).eval().score(QUESTIONS, PASSAGES)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("prefixed", [False, True])
def test_save_with_explicit_state_dict(bert_tokenizer, tmp_path, prefixed):
    """A consolidated (e.g. ZeRO-3) state dict is written instead of the live parameters."""
    live = make_bert_reranker(bert_tokenizer, seed=0)
    trained = make_bert_reranker(bert_tokenizer, seed=1).eval()
    state = trained.state_dict() if prefixed else trained.hf_model.state_dict()
    assert all(k.startswith("hf_model.") for k in state) == prefixed
    path = live.save_pretrained(tmp_path / "r", state_dict=state)
    expected, _ = trained.score(QUESTIONS, PASSAGES)
    got, _ = Reranker.from_pretrained(path).eval().score(QUESTIONS, PASSAGES)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def _assert_old_save_intact(path, digest, tmp_path, reference_scores):
    assert tree_digest(path) == digest
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # temp dir cleaned up
    scores, _ = Reranker.from_pretrained(path).eval().score(QUESTIONS, PASSAGES)
    torch.testing.assert_close(scores, reference_scores, atol=1e-5, rtol=0)


def test_failed_model_save_leaves_old_directory_intact(bert_tokenizer, tmp_path):
    good = make_bert_reranker(bert_tokenizer, seed=0).eval()
    path = good.save_pretrained(tmp_path / "r")
    digest = tree_digest(path)
    reference, _ = good.score(QUESTIONS, PASSAGES)

    bad = make_bert_reranker(bert_tokenizer, seed=1)
    bad.hf_model.config.not_json = object()  # makes config.json serialisation fail
    with pytest.raises(TypeError, match="JSON serializable"):
        bad.save_pretrained(path)
    _assert_old_save_intact(path, digest, tmp_path, reference)


def test_crash_after_partial_write_leaves_old_directory_intact(
    bert_tokenizer, tmp_path, monkeypatch
):
    good = make_bert_reranker(bert_tokenizer, seed=0).eval()
    path = good.save_pretrained(tmp_path / "r")
    digest = tree_digest(path)
    reference, _ = good.score(QUESTIONS, PASSAGES)

    bad = make_bert_reranker(bert_tokenizer, seed=1)
    written = []

    def partial_tokenizer_save(tokenizer, directory, max_length):
        # The model files are already in the temp dir; write half a tokenizer file, then die.
        written.extend(p.name for p in directory.iterdir())
        (directory / "tokenizer.json").write_text('{"trunc')
        raise OSError("disk full")

    monkeypatch.setattr(rr_storage, "_save_tokenizer", partial_tokenizer_save)
    with pytest.raises(OSError, match="disk full"):
        bad.save_pretrained(path)
    assert "model.safetensors" in written  # the failure really happened midway
    _assert_old_save_intact(path, digest, tmp_path, reference)


def test_failed_first_save_leaves_nothing(bert_tokenizer, tmp_path, monkeypatch):
    def fail(directory, config):
        raise OSError("no space left")

    monkeypatch.setattr(rr_storage, "_write_settings", fail)
    with pytest.raises(OSError):
        make_bert_reranker(bert_tokenizer).save_pretrained(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_file_path(bert_reranker, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="file"):
        bert_reranker.save_pretrained(target)


# ---------------------------------------------------------------------- bad inputs on load
def test_from_pretrained_missing_path_names_it(tmp_path):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        Reranker.from_pretrained(missing)


def test_from_pretrained_without_config_json_names_path(tmp_path):
    folder = tmp_path / "empty_folder"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"empty_folder.*config\.json"):
        Reranker.from_pretrained(folder)


def test_unsupported_num_labels(bert_tokenizer, tmp_path):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(len(bert_tokenizer), num_labels=3))
    with pytest.raises(ValueError, match="num_labels=3"):
        Reranker(model, bert_tokenizer, RerankerConfig(max_length=32))
    model.save_pretrained(tmp_path / "three")
    bert_tokenizer.save_pretrained(tmp_path / "three")
    with pytest.raises(ValueError, match="num_labels=3"):
        Reranker.from_pretrained(tmp_path / "three", max_length=32)


def test_backbone_checkpoint_gets_single_logit_head(bert_tokenizer, tmp_path):
    torch.manual_seed(0)
    # A pretraining checkpoint's config carries the PretrainedConfig default num_labels=2.
    config = tiny_bert_config(len(bert_tokenizer), num_labels=2)
    BertForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    assert json.loads((tmp_path / "mlm" / "config.json").read_text())["architectures"] == [
        "BertForMaskedLM"
    ]
    bert_tokenizer.save_pretrained(tmp_path / "mlm")
    reranker = Reranker.from_pretrained(tmp_path / "mlm", max_length=32)
    assert reranker.hf_model.config.num_labels == 1
    scores, _ = reranker.score(QUESTIONS, PASSAGES)
    assert scores.shape == (3, 3)


def test_model_and_settings_mismatch_errors(bert_tokenizer):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(len(bert_tokenizer)))
    with pytest.raises(ValueError, match="rankt5"):
        Reranker(model, bert_tokenizer, RerankerConfig(kind="rankt5", max_length=32))
    with pytest.raises(ValueError, match="128 positions"):
        Reranker(model, bert_tokenizer, RerankerConfig(max_length=256))
    with pytest.raises(ValueError, match="ForSequenceClassification"):
        Reranker(BertForMaskedLM(tiny_bert_config(len(bert_tokenizer))), bert_tokenizer)


# ---------------------------------------------------------------------- RankT5
def hand_rankt5_logit(model, tokenizer, text, token_id) -> float:
    """First-step decoder logit computed from the T5 parts, not via T5's forward()."""
    enc = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        hidden = model.encoder(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
        ).last_hidden_state
        start = torch.full((1, 1), model.config.decoder_start_token_id, dtype=torch.long)
        dec = model.decoder(
            input_ids=start,
            encoder_hidden_states=hidden,
            encoder_attention_mask=enc["attention_mask"],
        ).last_hidden_state
        if model.config.scale_decoder_outputs:  # T5's tied-embedding output scaling
            dec = dec * model.config.d_model**-0.5
        return (dec[0, 0] @ model.lm_head.weight[token_id]).item()


def test_rankt5_score_is_first_step_logit_of_the_token(t5_tokenizer):
    reranker = make_t5_reranker(t5_tokenizer).eval()
    assert isinstance(reranker.hf_model, T5ForConditionalGeneration)
    assert reranker.config.rankt5_token == "<extra_id_10>"
    token_id = t5_tokenizer.convert_tokens_to_ids("<extra_id_10>")
    assert reranker.rankt5_token_id == token_id
    scores, mask = reranker.score(QUESTIONS, PASSAGES)
    assert scores.shape == (3, 3) and int(mask.sum()) == 5
    question, passage = QUESTIONS[0], PASSAGES[0][0]
    text = f"Query: {question} Document: {passage['title']}: {passage['text']}"
    expected = hand_rankt5_logit(reranker.hf_model, t5_tokenizer, text, token_id)
    assert scores[0, 0].item() == pytest.approx(expected, abs=1e-5)
    # A different token gives a different score: the token choice matters.
    other = hand_rankt5_logit(reranker.hf_model, t5_tokenizer, text, token_id + 1)
    assert other != pytest.approx(expected, abs=1e-6)
    # Padded batch == each pair alone.
    question, passage = QUESTIONS[2], PASSAGES[2][2]
    expected = hand_rankt5_logit(
        reranker.hf_model, t5_tokenizer, f"Query: {question} Document: {passage}", token_id
    )
    assert scores[2, 2].item() == pytest.approx(expected, abs=1e-5)


def test_rankt5_gradients_and_chunking(t5_tokenizer):
    reranker = make_t5_reranker(t5_tokenizer).train()
    ref_scores, ref_grads = _scores_and_grads(reranker)
    assert ref_grads["hf_model.shared.weight"].abs().sum() > 0
    scores, grads = _scores_and_grads(reranker, chunk_size=2)
    torch.testing.assert_close(scores, ref_scores, atol=1e-6, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_rankt5_save_load_round_trip(t5_tokenizer, tmp_path):
    reranker = make_t5_reranker(t5_tokenizer).eval()
    path = reranker.save_pretrained(tmp_path / "rankt5")
    settings = json.loads((path / SETTINGS_NAME).read_text())
    assert settings["kind"] == "rankt5" and settings["rankt5_token"] == "<extra_id_10>"
    loaded = Reranker.from_pretrained(path).eval()
    assert loaded.kind == "rankt5" and loaded.rankt5_token_id == reranker.rankt5_token_id
    before, _ = reranker.score(QUESTIONS, PASSAGES)
    after, _ = loaded.score(QUESTIONS, PASSAGES)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    ranked = loaded.rank(QUESTIONS[2], PASSAGES[2])
    assert [r.score for r in ranked] == pytest.approx(
        sorted(before[2].tolist(), reverse=True), abs=1e-5
    )


def test_rankt5_token_resolution(tmp_path):
    tokenizer = train_t5_tokenizer(tmp_path / "no_extra", extra_tokens=("<rel>",))
    with pytest.raises(ValueError, match="rankt5_token"):
        make_t5_reranker(tokenizer)
    with pytest.raises(ValueError, match="not a single token"):
        make_t5_reranker(tokenizer, rankt5_token="<extra_id_10>")
    reranker = make_t5_reranker(tokenizer, rankt5_token="<rel>")
    assert reranker.rankt5_token_id == tokenizer.convert_tokens_to_ids("<rel>")
    with pytest.raises(ValueError, match="kind"):
        Reranker.from_pretrained(reranker.save_pretrained(tmp_path / "r"), kind="cross_encoder")


needs_cxx = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None, reason="inductor needs a C++ compiler (g++ or $CXX)"
)


@needs_cxx
def test_compiled_inference_scores_like_eager_and_steps_aside_when_weights_change(bert_tokenizer, caplog):
    """compile_for_inference: the same scores as the eager model through the compiled one;
    training (gradients) stays eager; after a weight update it warns and scores eagerly with
    the new weights rather than with the frozen old ones."""
    reranker = make_bert_reranker(bert_tokenizer).eval()
    pairs = [(q, p) for q, plist in zip(QUESTIONS, PASSAGES, strict=True) for p in plist]
    eager = reranker.predict(pairs, batch_size=3)
    reranker.compile_for_inference()
    compiled = reranker.predict(pairs, batch_size=3)
    assert reranker._compiled.working is True  # the compiled model served it, not a fallback
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), atol=1e-5, rtol=1e-5)
    scores, _ = reranker.score(QUESTIONS, PASSAGES)  # with gradients: the eager model
    scores.sum().backward()
    assert all(p.grad is not None for p in reranker.parameters() if p.requires_grad)
    with torch.no_grad():
        reranker.hf_model.classifier.bias.add_(1.0)
    with caplog.at_level(logging.WARNING, logger="gumbel_rerank.rerankers.compiled"):
        updated = reranker.predict(pairs, batch_size=3)
    assert "weights changed after compile_for_inference" in caplog.text
    torch.testing.assert_close(torch.tensor(updated), torch.tensor(eager) + 1.0, atol=1e-5, rtol=1e-5)
    assert reranker._compiled.compiled is None  # the frozen copy is released


@needs_cxx
@pytest.mark.parametrize("update", ["fused_adamw_step", "load_state_dict"])
def test_compiled_inference_notices_updates_that_leave_version_counters_alone(bert_tokenizer, update):
    """The trainer's fused AdamW step and load_state_dict(assign=True) do not bump the
    parameters' version counters; the compiled model must still stop serving old weights."""
    from gumbel_rerank.training.config import OptimConfig
    from gumbel_rerank.training.engine import build_optimizer

    reranker = make_bert_reranker(bert_tokenizer).eval().compile_for_inference()
    pairs = [(q, p) for q, plist in zip(QUESTIONS, PASSAGES, strict=True) for p in plist]
    before = reranker.predict(pairs, batch_size=3)
    assert reranker._compiled.working is True
    if update == "fused_adamw_step":
        optimizer = build_optimizer(reranker, OptimConfig(lr=0.1))
        reranker.score(QUESTIONS, PASSAGES).scores.sum().backward()
        optimizer.step()
    else:
        other = make_bert_reranker(bert_tokenizer, seed=1)
        reranker.load_state_dict(other.state_dict(), assign=True)
    eager = [float(x) for x in reranker.score(QUESTIONS, PASSAGES).scores[reranker.score(QUESTIONS, PASSAGES).mask].detach()]
    after = reranker.predict(pairs, batch_size=3)
    assert after != pytest.approx(before, abs=1e-3)  # the weights did change
    assert after == pytest.approx(eager, abs=1e-5) and reranker._compiled.working is False


@needs_cxx
def test_compiled_inference_without_a_working_compiler_warns_and_scores_eagerly(bert_tokenizer, tmp_path):
    """Where inductor cannot build kernels (here: $CXX names no compiler), the first call
    warns and every score is the eager model's."""
    import subprocess
    import sys

    directory = tmp_path / "reranker"
    make_bert_reranker(bert_tokenizer).save_pretrained(directory)
    script = (
        "import json, sys, logging; logging.basicConfig(level=logging.WARNING)\n"
        "from gumbel_rerank.rerankers import Reranker\n"
        f"r = Reranker.from_pretrained({str(directory)!r}).eval()\n"
        "pairs = [('who wrote it', 'darwin wrote it'), ('what is it', 'a city in france of note')]\n"
        "eager = r.predict(pairs)\n"
        "r.compile_for_inference()\n"
        "print(json.dumps([eager, r.predict(pairs), r._compiled.working]))\n"
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    eager, scores, working = json.loads(done.stdout.strip().splitlines()[-1])
    assert working is False and scores == eager
    assert "compiling the reranker failed" in done.stderr


def test_compiling_again_or_dropping_it_releases_the_previous_compiled_model(bert_tokenizer):
    """compile_for_inference() again (as the stale-weights warning advises) or with
    enabled=False frees the previous compiled model and removes its hook from the model, which
    would otherwise keep it, and its frozen graph, alive. (Compilation itself is lazy: none
    happens here.)"""
    reranker = make_bert_reranker(bert_tokenizer).eval().compile_for_inference()
    first = reranker._compiled
    reranker.compile_for_inference()
    assert first.compiled is None and first.working is False
    assert len(reranker.hf_model._load_state_dict_post_hooks) == 1
    reranker.compile_for_inference(enabled=False)
    assert reranker._compiled is None and not reranker.is_compiled
    assert len(reranker.hf_model._load_state_dict_post_hooks) == 0


QUESTIONS_TRAIN = ["who wrote it", "what is it"]
PASSAGES_TRAIN = [
    [{"title": "darwin", "text": "darwin wrote it"}, "a city in france of note", "nothing here"],
    ["the first one", {"title": "paris", "text": "a city in france of some note and size"}],
]


def test_compiled_training_gives_eager_scores_and_gradients_on_bucketed_lengths(bert_tokenizer):
    """compile_train: the same scores and parameter gradients as the eager model (dropout
    off), pairs padded to a multiple of pad_multiple but never past max_length; without
    gradients the eager model scores."""
    eager = make_bert_reranker(bert_tokenizer, max_length=30).eval()
    compiled = make_bert_reranker(bert_tokenizer, max_length=30, compile_train=True, pad_multiple=8).eval()
    length = eager.tokenize(QUESTIONS_TRAIN, PASSAGES_TRAIN).features["input_ids"].shape[1]
    assert length % 8 and length < 30
    assert compiled.tokenize(QUESTIONS_TRAIN, PASSAGES_TRAIN).features["input_ids"].shape[1] == min(30, -(-length // 8) * 8)
    capped = make_bert_reranker(bert_tokenizer, max_length=length + 1, compile_train=True, pad_multiple=16)
    assert capped.tokenize(QUESTIONS_TRAIN, PASSAGES_TRAIN).features["input_ids"].shape[1] == length + 1
    grads = []
    for model in (eager, compiled):
        scores, valid = model.score(QUESTIONS_TRAIN, PASSAGES_TRAIN)
        (scores * torch.arange(1.0, 4.0)).masked_fill(~valid, 0).sum().backward()
        grads.append((scores.detach(), [p.grad.clone() for p in model.parameters()]))
    assert compiled._train_compiled is not None and compiled._train_compiled.working is True
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-4)
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(compiled.score(QUESTIONS_TRAIN, PASSAGES_TRAIN).scores, grads[0][0], atol=1e-5, rtol=1e-4)


def test_compiled_training_without_a_working_compiler_warns_and_trains_eagerly(bert_tokenizer, tmp_path):
    import subprocess
    import sys

    directory = tmp_path / "reranker"
    make_bert_reranker(bert_tokenizer).save_pretrained(directory)
    script = (
        "import json, logging, torch; logging.basicConfig(level=logging.WARNING)\n"
        "from gumbel_rerank.rerankers import Reranker\n"
        f"q, p = {QUESTIONS_TRAIN!r}, {PASSAGES_TRAIN!r}\n"
        f"eager = Reranker.from_pretrained({str(directory)!r}, pad_multiple=None).eval()\n"
        f"r = Reranker.from_pretrained({str(directory)!r}, compile_train=True, pad_multiple=None).eval()\n"
        "print(json.dumps([eager.score(q, p).scores.tolist(), r.score(q, p).scores.tolist(), r._train_compiled.working]))\n"
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    eager, scores, working = json.loads(done.stdout.strip().splitlines()[-1])
    assert working is False and scores == eager
    assert "compiling the reranker for training failed" in done.stderr
