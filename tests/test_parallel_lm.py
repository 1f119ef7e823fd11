"""The decoder-only reader that reads passages in parallel (``reader.kind: parallel_lm``),
checked on tiny random LMs of three families against independent computations: one plain
forward over the whole sequence with a hand-built block mask, the model's own causal forward,
reading only the kept passages, and explicit single-passage / leave-one-out runs."""

from __future__ import annotations

import pytest
import torch
from tiny_lm import FAMILIES, lm_tokenizer, tiny_lm
from tiny_t5 import ANSWERS, PASSAGES, QUESTIONS

from gumbel_rerank.objectives.common import leave_one_out_nll, per_passage_token_logprobs
from gumbel_rerank.reader.fid import FiDReaderConfig
from gumbel_rerank.reader.formatting import IGNORE_INDEX
from gumbel_rerank.reader.parallel_lm import ParallelLMReader, ParallelLMSettings

LENGTH = 12


def make_reader(family: str, dtype: torch.dtype = torch.float32, prefix: str = "", trainable: bool = False) -> ParallelLMReader:
    tok = lm_tokenizer()
    config = FiDReaderConfig(text_maxlength=LENGTH, answer_maxlength=6, dtype={torch.float64: "float64"}.get(dtype, "float32"))
    settings = ParallelLMSettings(prefix=prefix)
    return ParallelLMReader(tiny_lm(family, len(tok)), tok, config, settings, trainable=trainable)


def read(reader, questions=QUESTIONS, passages=PASSAGES, answers=ANSWERS):
    states = reader.encode(reader.tokenize_passages(questions, passages))
    return states, reader.tokenize_targets(answers)


def reference(reader, b: int, log_mask: torch.Tensor | None, attentions: bool = False):
    """Question b in one plain forward: [prefix, block_1 .. block_N, prompt, answer] with each
    block at positions P..P+l-1 attending to the prefix and itself, the prompt and answer after
    position P + L attending to everything before them, log M_i added on block i."""
    tok, model = reader.tokenizer, reader.model
    prefix = reader.prefix_ids
    blocks = [tok(reader.settings.block_template.format(question=QUESTIONS[b], title=p["title"], text=p["text"]), add_special_tokens=False).input_ids[:LENGTH] for p in PASSAGES[b]]
    prompt = tok(reader.settings.prompt_template.format(question=QUESTIONS[b]), add_special_tokens=False).input_ids
    labels = reader.tokenize_targets([ANSWERS[b]])[0]
    answer = labels[labels != IGNORE_INDEX].tolist()
    ids = prefix + sum(blocks, []) + prompt + answer[:-1]
    p = len(prefix)
    positions = list(range(p)) + sum([list(range(p, p + len(block))) for block in blocks], []) + list(range(p + LENGTH, p + LENGTH + len(prompt) + len(answer) - 1))
    size, low = len(ids), torch.finfo(reader.dtype).min
    mask = torch.full((size, size), low, dtype=reader.dtype)
    mask[:p, :p] = torch.zeros(p, p).masked_fill(~torch.ones(p, p, dtype=torch.bool).tril(), low)
    start = p
    log_m = torch.zeros(len(blocks)) if log_mask is None else log_mask[b, : len(blocks)] - log_mask[b, : len(blocks)].max()
    for block in blocks:
        span = slice(start, start + len(block))
        mask[span, :p] = 0
        mask[span, span] = torch.zeros(len(block), len(block)).masked_fill(~torch.ones(len(block), len(block), dtype=torch.bool).tril(), low)
        start += len(block)
    query = slice(start, size)
    mask[query, :p] = 0
    cursor = p
    for block, lm in zip(blocks, log_m, strict=True):
        mask[query, cursor : cursor + len(block)] = lm.clamp(min=-1e4)
        cursor += len(block)
    q = size - start
    mask[query, query] = torch.zeros(q, q).masked_fill(~torch.ones(q, q, dtype=torch.bool).tril(), low)
    out = model(input_ids=torch.tensor([ids]), position_ids=torch.tensor([positions]), attention_mask=mask[None, None], output_attentions=attentions)
    first = start + len(prompt) - 1  # the last prompt token predicts the first answer token
    logits = out.logits[0, first : first + len(answer)].to(torch.promote_types(reader.dtype, torch.float32))
    logp = logits.log_softmax(-1).gather(-1, torch.tensor(answer)[:, None]).squeeze(-1)
    return logp, out, (p, blocks, first, len(answer))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_reader_equals_one_plain_forward_with_a_block_mask(family):
    reader = make_reader(family, prefix="read this :")
    states, labels = read(reader)
    torch.manual_seed(1)
    log_mask = torch.randn(3, states.n_passages).log_softmax(dim=1)
    ours = reader.token_logprobs(states, labels, log_mask)
    for b in range(3):
        expected, _, _ = reference(reader, b, log_mask)
        torch.testing.assert_close(ours[b, : len(expected)], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_passage_with_a_zero_mask_is_the_models_own_forward(family):
    """With one passage there is nothing to hide: the plain causal forward over the sequence
    at the same positions (no mask of ours) gives the same loss."""
    reader = make_reader(family)
    passages = [[PASSAGES[b][0]] for b in range(3)]
    states, labels = read(reader, passages=passages)
    ours = reader.lm_loss(states, labels, torch.zeros(3, 1))
    for b in range(3):
        tok = reader.tokenizer
        block = tok(reader.settings.block_template.format(question=QUESTIONS[b], title=passages[b][0]["title"], text=passages[b][0]["text"]), add_special_tokens=False).input_ids[:LENGTH]
        prompt = tok(reader.settings.prompt_template.format(question=QUESTIONS[b]), add_special_tokens=False).input_ids
        answer = labels[b][labels[b] != IGNORE_INDEX].tolist()
        p = len(reader.prefix_ids)
        ids = reader.prefix_ids + block + prompt + answer[:-1]
        positions = list(range(p + len(block))) + list(range(p + LENGTH, p + LENGTH + len(prompt) + len(answer) - 1))
        logits = reader.model(input_ids=torch.tensor([ids]), position_ids=torch.tensor([positions])).logits[0]
        first = p + len(block) + len(prompt) - 1
        logp = logits[first : first + len(answer)].log_softmax(-1).gather(-1, torch.tensor(answer)[:, None])
        assert float(ours[b]) == pytest.approx(float(-logp.mean()), abs=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_zero_one_mask_is_reading_only_the_kept_passages(family):
    reader = make_reader(family)
    states, labels = read(reader)
    n = states.n_passages
    kept = [[0, 2], [1], [2, 3]]
    mask = torch.full((3, n), -1e4)
    for b, keep in enumerate(kept):
        mask[b, keep] = 0.0
    only = [[PASSAGES[b][i] for i in keep] for b, keep in enumerate(kept)]
    alone, _ = read(reader, passages=only)
    torch.testing.assert_close(reader.lm_loss(states, labels, mask), reader.lm_loss(alone, labels, torch.zeros(3, alone.n_passages)), atol=1e-5, rtol=1e-5)
    doc_idx = torch.tensor([keep + [-1] * (2 - len(keep)) for keep in kept])
    assert reader.generate(states, doc_idx, 5) == reader.generate(alone, None, 5)


@pytest.mark.parametrize("family", FAMILIES)
def test_permuting_passages_with_their_mask_or_shifting_log_m_changes_nothing(family):
    reader = make_reader(family)
    states, labels = read(reader)
    torch.manual_seed(2)
    log_mask = torch.randn(3, states.n_passages).log_softmax(dim=1)
    base = reader.lm_loss(states, labels, log_mask)
    torch.testing.assert_close(reader.lm_loss(states, labels, log_mask + 3.0), base, atol=1e-5, rtol=1e-5)
    order = [[2, 0, 1], [1, 0], [3, 1, 0, 2]]
    permuted = [[PASSAGES[b][i] for i in o] for b, o in enumerate(order)]
    moved, _ = read(reader, passages=permuted)
    new_mask = torch.full_like(log_mask, -1e4)
    for b, o in enumerate(order):
        new_mask[b, : len(o)] = log_mask[b, o]
    torch.testing.assert_close(reader.lm_loss(moved, labels, new_mask), base, atol=1e-5, rtol=1e-5)


def exact_float64(monkeypatch, family: str, model) -> None:
    """Llama computes RMSNorm's variance and the attention softmax in float32 whatever the
    input dtype (so a float64 gradcheck would see float32 noise): the same formulas without
    the casts, for this test only."""
    if family != "llama":
        return
    from transformers.models.llama import modeling_llama

    def eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        key = modeling_llama.repeat_kv(key, module.num_key_value_groups)
        value = modeling_llama.repeat_kv(value, module.num_key_value_groups)
        weights = torch.matmul(query, key.transpose(2, 3)) * scaling + attention_mask
        weights = weights.softmax(dim=-1)
        return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights

    def rms(self, hidden):
        return self.weight * hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)

    monkeypatch.setattr(modeling_llama, "eager_attention_forward", eager)
    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", rms)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_gradcheck_of_the_loss_with_respect_to_log_m_in_float64(family, monkeypatch):
    reader = make_reader(family, dtype=torch.float64)
    exact_float64(monkeypatch, family, reader.model)
    states, labels = read(reader)
    torch.manual_seed(3)
    log_mask = torch.randn(3, states.n_passages, dtype=torch.float64).log_softmax(dim=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: reader.lm_loss(states, labels, m), (log_mask,), eps=1e-6, atol=1e-6)


def test_states_without_gradient_give_the_in_graph_loss_and_mask_gradient():
    """The frozen reader encodes under no_grad; a trainable copy encoding in the graph gives the
    same loss and the same gradient with respect to log M."""
    frozen, trainable = make_reader("llama"), make_reader("llama", trainable=True)
    tokens = frozen.tokenize_passages(QUESTIONS, PASSAGES)
    labels = frozen.tokenize_targets(ANSWERS)
    out = []
    for reader, with_grad in ((frozen, False), (trainable, True)):
        states = reader.encode(tokens, with_grad=with_grad)
        assert states.hidden.requires_grad == with_grad
        log_mask = torch.zeros(3, states.n_passages).requires_grad_(True)
        loss = reader.lm_loss(states, labels, log_mask).sum()
        out.append((loss.detach(), torch.autograd.grad(loss, log_mask)[0]))
    torch.testing.assert_close(out[0][0], out[1][0])
    torch.testing.assert_close(out[0][1], out[1][1])


@pytest.mark.parametrize("family", FAMILIES)
def test_reader_targets_equal_explicit_single_passage_and_leave_one_out_runs(family):
    reader = make_reader(family)
    states, labels = read(reader)
    n = states.n_passages
    singles = per_passage_token_logprobs(reader, states, labels)  # (B, n, T)
    loo = leave_one_out_nll(reader, states, labels)  # (B, n)
    for b in range(3):
        for i in range(len(PASSAGES[b])):
            alone, lab = read(reader, [QUESTIONS[b]], [[PASSAGES[b][i]]], [ANSWERS[b]])
            explicit = reader.token_logprobs(alone, lab)[0]
            torch.testing.assert_close(singles[b, i, : len(explicit)], explicit, atol=1e-5, rtol=1e-5)
            assert (singles[b, i, len(explicit) :] == 0).all()
            rest = [p for j, p in enumerate(PASSAGES[b]) if j != i]
            without, lab = read(reader, [QUESTIONS[b]], [rest], [ANSWERS[b]])
            expected = reader.lm_loss(without, lab, torch.zeros(1, len(rest)))
            assert float(loo[b, i]) == pytest.approx(float(expected), abs=1e-5), (b, i, n)


@pytest.mark.parametrize("family", FAMILIES)
def test_adist_mass_is_the_formula_on_the_reference_attentions(family):
    """Attention probability x value norm, averaged over heads, summed over layers, the answer
    positions and each passage's tokens, from output_attentions of the plain forward."""
    reader = make_reader(family)
    states, labels = read(reader)
    mass = reader.cross_attention_mass(states, labels)
    for b in range(3):
        _, out, (p, blocks, first, answer) = reference(reader, b, None, attentions=True)
        expected = torch.zeros(len(blocks))
        for layer, attn in enumerate(out.attentions):  # (1, H, S, S)
            cursor = p
            for i, block in enumerate(blocks):
                values = value_vectors(reader, b, layer, i)  # (kv heads, l, dim)
                norms = values.norm(dim=-1).repeat_interleave(reader.heads // reader.kv_heads, dim=0)  # (H, l)
                rows = attn[0, :, first : first + answer, cursor : cursor + len(block)]  # (H, T, l)
                expected[i] += float((rows * norms[:, None, :]).mean(dim=0).sum())
                cursor += len(block)
        torch.testing.assert_close(mass[b, : len(blocks)], expected, atol=1e-4, rtol=1e-4)
        assert (mass[b, len(blocks) :] == 0).all()


def value_vectors(reader, b: int, layer: int, i: int) -> torch.Tensor:
    """The value vectors of passage i's block of question b in ``layer``: the block run alone
    after the prefix at its positions, through the model's own cache."""
    tok = reader.tokenizer
    block = tok(reader.settings.block_template.format(question=QUESTIONS[b], title=PASSAGES[b][i]["title"], text=PASSAGES[b][i]["text"]), add_special_tokens=False).input_ids[:LENGTH]
    ids = reader.prefix_ids + block
    out = reader.model(input_ids=torch.tensor([ids]), use_cache=True)
    return out.cache.layers[layer].values[0, :, len(reader.prefix_ids) :, :]


def test_the_encoder_cache_serves_the_decoder_reader_exactly():
    from gumbel_rerank.reader.encoder_cache import EncoderCache

    reader = make_reader("qwen2")
    tokens = reader.tokenize_passages(QUESTIONS, PASSAGES)
    labels = reader.tokenize_targets(ANSWERS)
    plain = reader.encode(tokens)
    reader.use_encoder_cache(EncoderCache(64))
    first, again = reader.encode(tokens, cached=True), reader.encode(tokens, cached=True)
    assert reader.encoder_cache.stats.hits == 3 and reader.encoder_cache.stats.misses == 3
    for states in (first, again):
        assert torch.equal(states.hidden, plain.hidden) and torch.equal(states.prompt_ids, plain.prompt_ids)
        torch.testing.assert_close(reader.lm_loss(states, labels, torch.zeros(3, 4)), reader.lm_loss(plain, labels, torch.zeros(3, 4)))
