"""The FiD reader: the properties in shared/docs/reader.md, one test each, on tiny random T5s."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_t5 import ANSWERS, PASSAGES, QUESTIONS, build_tokenizer, tiny_t5
from transformers.modeling_outputs import BaseModelOutput

from gumbel_rerank.reader import FiDReader, FiDReaderConfig
from gumbel_rerank.reader.formatting import format_passage


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def make_reader(tokenizer, dtype="float32", layers=2, seed=0, **cfg) -> FiDReader:
    model = tiny_t5(len(tokenizer), seed=seed, layers=layers)
    return FiDReader(model, tokenizer, FiDReaderConfig(text_maxlength=16, dtype=dtype, **cfg))


def plain_fid_loss(reader: FiDReader, questions, passages, answers) -> torch.Tensor:
    """FiD as originally written: 2-D padding mask over the concatenation, HF's own loss."""
    losses = []
    for q, ctxs, a in zip(questions, passages, answers, strict=True):
        tokens = reader.tokenize_passages([q], [ctxs])
        ids = tokens.input_ids.view(-1, tokens.input_ids.shape[-1])
        att = tokens.attention_mask.view(-1, tokens.input_ids.shape[-1]).long()
        hidden = reader.model.encoder(input_ids=ids, attention_mask=att).last_hidden_state
        out = reader.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden.reshape(1, -1, hidden.shape[-1])),
            attention_mask=att.reshape(1, -1),
            labels=reader.tokenize_targets([a]),
        )
        losses.append(out.loss)
    return torch.stack(losses)


def encode(reader, questions=QUESTIONS, passages=PASSAGES, n=None):
    return reader.encode(reader.tokenize_passages(questions, passages, n_passages=n))


def test_every_attention_module_runs_eager(tokenizer):
    """config._attn_implementation on the top-level config does not reach T5's stacks."""
    reader = make_reader(tokenizer)
    configs = {m.config._attn_implementation for m in reader.model.modules() if hasattr(m, "config")}
    assert configs == {"eager"}


# Property 6 ------------------------------------------------------------------------------
def test_passages_have_no_eos_and_targets_exactly_one(tokenizer):
    reader = make_reader(tokenizer)
    assert tokenizer("who")["input_ids"][-1] == tokenizer.eos_token_id  # the 5.x trap is live
    tokens = reader.tokenize_passages(QUESTIONS, PASSAGES)
    assert not (tokens.input_ids[tokens.attention_mask] == tokenizer.eos_token_id).any()
    first = tokens.input_ids[0, 0][tokens.attention_mask[0, 0]].tolist()
    expected = format_passage(QUESTIONS[0], PASSAGES[0][0]["title"], PASSAGES[0][0]["text"])
    assert first == tokenizer(expected, add_special_tokens=False)["input_ids"][:16]
    labels = reader.tokenize_targets(ANSWERS)
    for row, answer in zip(labels, ANSWERS, strict=True):
        ids = row[row != -100].tolist()
        assert ids == tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert ids.count(tokenizer.eos_token_id) == 1
    assert tokens.passage_valid.tolist() == [
        [True, True, True, False],
        [True, True, False, False],
        [True, True, True, True],
    ]


def test_target_truncation_keeps_the_eos(tokenizer):
    reader = make_reader(tokenizer, answer_maxlength=3)
    labels = reader.tokenize_targets(["marie curie was born in warsaw"])
    assert labels[0].tolist()[-1] == tokenizer.eos_token_id and labels.shape[1] == 3


# Property 2 ------------------------------------------------------------------------------
def test_all_ones_mask_equals_plain_fid_loss(tokenizer):
    reader = make_reader(tokenizer)
    states = encode(reader)
    loss = reader.lm_loss(states, reader.tokenize_targets(ANSWERS), torch.zeros(3, 4))
    torch.testing.assert_close(loss, plain_fid_loss(reader, QUESTIONS, PASSAGES, ANSWERS), atol=1e-5, rtol=1e-5)


def test_zero_one_mask_equals_feeding_only_kept_passages(tokenizer):
    reader = make_reader(tokenizer)
    states = encode(reader)
    keep = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 1]], dtype=torch.bool)
    log_m = torch.where(keep, 0.0, float("-inf"))
    loss = reader.lm_loss(states, reader.tokenize_targets(ANSWERS), log_m)
    kept = [[p for p, k in zip(ctxs, row, strict=False) if k] for ctxs, row in zip(PASSAGES, keep, strict=True)]
    torch.testing.assert_close(loss, plain_fid_loss(reader, QUESTIONS, kept, ANSWERS), atol=1e-5, rtol=1e-5)


def test_padding_passages_do_not_change_a_question_loss(tokenizer):
    reader = make_reader(tokenizer)
    batch = reader.lm_loss(encode(reader), reader.tokenize_targets(ANSWERS), torch.zeros(3, 4))
    alone = reader.lm_loss(
        encode(reader, QUESTIONS[1:2], PASSAGES[1:2]), reader.tokenize_targets(ANSWERS[1:2]), torch.zeros(1, 2)
    )
    torch.testing.assert_close(batch[1:2], alone, atol=1e-6, rtol=1e-6)


# Property 3 ------------------------------------------------------------------------------
class ExactRMSNorm(torch.nn.Module):
    """T5LayerNorm without its float32 variance: T5LayerNorm casts to float32 even for float64
    inputs, which puts float32 noise into finite differences and makes any float64 gradcheck
    of a stock T5 fail."""

    def __init__(self, norm):
        super().__init__()
        self.weight, self.eps = norm.weight, norm.variance_epsilon

    def forward(self, hidden):
        return self.weight * hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.eps)


def test_gradcheck_loss_wrt_log_mask_float64(tokenizer):
    reader = make_reader(tokenizer, dtype="float64", layers=1)
    for _name, module in list(reader.model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child).__name__ == "T5LayerNorm":
                setattr(module, child_name, ExactRMSNorm(child))
    assert not any(type(m).__name__ == "T5LayerNorm" for m in reader.model.modules())
    states = encode(reader)
    labels = reader.tokenize_targets(ANSWERS)
    log_m = (torch.randn(3, 4, dtype=torch.float64) * 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda lm: reader.lm_loss(states, labels, lm), (log_m,))


def test_gradient_reaches_the_mask_not_the_reader(tokenizer):
    reader = make_reader(tokenizer)
    log_m = torch.zeros(3, 4, requires_grad=True)
    reader.lm_loss(encode(reader), reader.tokenize_targets(ANSWERS), log_m).sum().backward()
    assert log_m.grad is not None and log_m.grad[:, :2].abs().sum() > 0
    # padding passages (row 0 col 3, row 1 cols 2-3) carry no gradient
    assert log_m.grad[0, 3] == 0 and log_m.grad[1, 2:].abs().sum() == 0
    assert all(p.grad is None and not p.requires_grad for p in reader.model.parameters())


# Property 4 ------------------------------------------------------------------------------
def test_permutation_and_shift_invariance(tokenizer):
    reader = make_reader(tokenizer)
    labels = reader.tokenize_targets(ANSWERS[2:])
    log_m = torch.tensor([[-0.3, -1.2, 0.0, -2.0]])
    loss = reader.lm_loss(encode(reader, QUESTIONS[2:], PASSAGES[2:]), labels, log_m)
    perm = [2, 0, 3, 1]
    permuted = [[PASSAGES[2][i] for i in perm]]
    loss_perm = reader.lm_loss(encode(reader, QUESTIONS[2:], permuted), labels, log_m[:, perm])
    torch.testing.assert_close(loss, loss_perm, atol=1e-5, rtol=1e-5)
    shifted = reader.lm_loss(encode(reader, QUESTIONS[2:], PASSAGES[2:]), labels, log_m + 3.7)
    torch.testing.assert_close(loss, shifted, atol=1e-5, rtol=1e-5)
    # and the mask does matter: a different mask gives a different loss
    other = reader.lm_loss(encode(reader, QUESTIONS[2:], PASSAGES[2:]), labels, log_m.flip(1))
    assert not torch.allclose(loss, other, atol=1e-4)


# Property 5 ------------------------------------------------------------------------------
def test_no_grad_encoder_equals_in_graph_encoder(tokenizer):
    reader = make_reader(tokenizer)
    labels = reader.tokenize_targets(ANSWERS)
    tokens = reader.tokenize_passages(QUESTIONS, PASSAGES)
    log_a = torch.randn(3, 4).requires_grad_()
    loss_a = reader.lm_loss(reader.encode(tokens), labels, log_a)
    loss_a.sum().backward()

    graph_model = copy.deepcopy(reader.model).requires_grad_(True)
    b, n, length = tokens.input_ids.shape
    hidden = graph_model.encoder(
        input_ids=tokens.input_ids.view(b * n, length),
        attention_mask=tokens.attention_mask.view(b * n, length).long(),
    ).last_hidden_state
    assert hidden.requires_grad
    in_graph = type(encode(reader))(hidden.reshape(b, n * length, -1), tokens.attention_mask & tokens.passage_valid[..., None])
    log_b = log_a.detach().clone().requires_grad_()
    graph_reader = FiDReader.__new__(FiDReader)
    graph_reader.__dict__.update(reader.__dict__, model=graph_model)
    loss_b = graph_reader.lm_loss(in_graph, labels, log_b)
    loss_b.sum().backward()
    torch.testing.assert_close(loss_a, loss_b, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(log_a.grad, log_b.grad, atol=1e-6, rtol=1e-6)


def test_chunked_encoding_is_exact(tokenizer):
    full = make_reader(tokenizer)
    chunked = make_reader(tokenizer, encode_chunk_size=2)
    torch.testing.assert_close(encode(full).hidden, encode(chunked).hidden, atol=1e-6, rtol=1e-6)


# Property 7 ------------------------------------------------------------------------------
def test_greedy_matches_transformers_generate(tokenizer):
    reader = make_reader(tokenizer)
    tokens = reader.tokenize_passages(QUESTIONS, PASSAGES)
    states = reader.encode(tokens)
    ours = reader.generate_ids(states, max_new_tokens=6)
    ref = reader.model.generate(
        encoder_outputs=BaseModelOutput(last_hidden_state=states.hidden),
        attention_mask=states.token_mask.reshape(3, -1).long(),
        max_new_tokens=6,
        do_sample=False,
        num_beams=1,
    )[:, 1:]
    width = min(ours.shape[1], ref.shape[1])
    assert torch.equal(ours[:, :width], ref[:, :width])


def test_hard_topk_generation_equals_reading_only_those_passages(tokenizer):
    reader = make_reader(tokenizer)
    states = encode(reader)
    doc_idx = torch.tensor([[2, 0], [1, -1], [3, 1]])
    gathered = reader.generate_ids(states, doc_idx, max_new_tokens=6)
    only = [[PASSAGES[b][i] for i in row if i >= 0] for b, row in enumerate(doc_idx.tolist())]
    direct = reader.generate_ids(encode(reader, QUESTIONS, only), max_new_tokens=6)
    assert torch.equal(gathered, direct)
    assert reader.generate(states, doc_idx, max_new_tokens=6) == tokenizer.batch_decode(direct, skip_special_tokens=True)


# bf16 --------------------------------------------------------------------------------------
def test_bf16_loss_and_mask_gradient(tokenizer):
    fp32 = make_reader(tokenizer)
    bf16 = make_reader(tokenizer, dtype="bfloat16")
    labels = fp32.tokenize_targets(ANSWERS)
    grads = []
    losses = []
    for reader in (fp32, bf16):
        log_m = torch.tensor([[0.0, -1.0, -0.5, 0.0], [-2.0, 0.0, 0.0, 0.0], [0.0, -0.1, -3.0, -1.0]], requires_grad=True)
        loss = reader.lm_loss(encode(reader), labels, log_m)
        loss.sum().backward()
        assert loss.dtype == torch.float32 and torch.isfinite(log_m.grad).all()
        grads.append(log_m.grad)
        losses.append(loss.detach())
    assert bf16.model.dtype == torch.bfloat16
    torch.testing.assert_close(losses[1], losses[0], atol=0.15, rtol=0.05)
    cos = torch.nn.functional.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0)
    assert cos > 0.95
