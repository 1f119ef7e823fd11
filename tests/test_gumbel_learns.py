"""Acceptance: G-Rerank, from a random reranker and the reader's loss alone, learns which passage
answers the question (held-out questions), and the reader is never changed.

Set-up (synthetic.lookup_questions): 5 candidates, one answers the asked relation of the asked
entity; the reader is trained with `train-reader` on the answer passage alone (the context size
G-Rerank selects with k=1), so its loss is low only when the mask selects that passage.

From a *random* reranker with raw scores the outcome depended on the run's trajectory (seed,
thread count, even the optimizer kernel's rounding): scores could spread faster than the
ranking was learned, and once a wrong passage led by several units the Gumbel noise no longer
selected the answer passage and its mask gradient vanished. The test therefore uses
``objective.settings.standardize`` (each question's scores at mean 0, std 1 before the noise,
the demo's setting), which removes that failure, and asserts it for three seeds; measured at
one and two threads, every seed reaches R@1 >= 0.99 (docs/bugs-and-fixes.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_t5 import tiny_t5_config
from tiny_world import write_jsonl
from transformers import BertConfig, T5ForConditionalGeneration

from gumbel_rerank.cli import main
from gumbel_rerank.data.questions import load_questions
from gumbel_rerank.demo.synthetic import LookupSpec, lookup_questions, vocabulary_text
from gumbel_rerank.demo.wordlevel import train_bert_tokenizer, train_t5_tokenizer
from gumbel_rerank.evaluation import RerankerEvaluator
from gumbel_rerank.reader.fid import FiDReader, FiDReaderConfig
from gumbel_rerank.rerankers.model import Reranker, RerankerConfig, build_reranker_from_config

MAXLEN = 24  # "question : which color does X like ? title : X context : X likes the color C ." fits


@pytest.fixture(scope="module")
def trained_reader(tmp_path_factory):
    """A tiny FiD reader trained with `train-reader` to copy the attribute from the passage it
    is given (contexts: the answer passage alone, the size G-Rerank will select with k=1)."""
    root = tmp_path_factory.mktemp("learns")
    spec = dict(n_passages=5, n_entities=12)
    train = lookup_questions(LookupSpec(n_questions=400, seed=1, **spec))
    dev = lookup_questions(LookupSpec(n_questions=100, seed=2, **spec))
    texts = vocabulary_text(train + dev)
    tok = train_t5_tokenizer(texts, root / "reader_init")
    torch.manual_seed(0)
    config = tiny_t5_config(len(tok), layers=2, d_model=64, d_ff=128, num_heads=4, d_kv=16)
    T5ForConditionalGeneration(config).save_pretrained(root / "reader_init")
    write_jsonl(train, root / "train.jsonl")
    write_jsonl(dev, root / "dev.jsonl")
    args = [
        "train-reader",
        f"--data.train={root / 'train.jsonl'}",
        "--curriculum=[{steps: 300, contexts: answer}]",  # the answer passage alone
        f"--reader.path={root / 'reader_init'}",
        f"--reader.settings.text_maxlength={MAXLEN}",
        "--optim.lr=3e-3", "--optim.max_steps=300", "--optim.micro_batch_size=16", "--optim.warmup_steps=20",
        f"--run.output_dir={root / 'reader_run'}", "--run.save_every=300", "--run.log_every=25",
    ]  # fmt: skip
    assert main(args) == 0
    bert_tok = train_bert_tokenizer(texts, root / "bert_tok")
    bert = BertConfig(
        vocab_size=len(bert_tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64, num_labels=1,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    build_reranker_from_config(bert, bert_tok, RerankerConfig(max_length=48)).save_pretrained(root / "reranker_init")
    return root


def test_train_reader_loss_decreases_and_the_saved_reader_answers(trained_reader: Path):
    log = [json.loads(line) for line in (trained_reader / "reader_run" / "metrics.jsonl").read_text().splitlines()]
    assert log[0]["loss"] > 2.0 and log[-1]["loss"] < 0.1 * log[0]["loss"]
    reader = FiDReader.from_pretrained(trained_reader / "reader_run" / "model", config=FiDReaderConfig(text_maxlength=MAXLEN))
    dev = load_questions(trained_reader / "dev.jsonl")
    questions = [dev[i] for i in range(40)]
    gold_only = [[{"title": q.passages[q.gold_indices[0]].title, "text": q.passages[q.gold_indices[0]].text}] for q in questions]
    states = reader.encode(reader.tokenize_passages([q.question for q in questions], gold_only))
    answers = reader.generate(states, max_new_tokens=4)
    accuracy = sum(a == q.target for a, q in zip(answers, questions, strict=True)) / len(questions)
    assert accuracy > 0.9, answers[:5]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gumbel_rerank_learns_the_answer_passage_from_the_reader_alone(trained_reader: Path, tmp_path, seed):
    root = trained_reader
    reader_dir = root / "reader_run" / "model"
    reader_before = load_file(str(reader_dir / "model.safetensors"))
    reader = FiDReader.from_pretrained(reader_dir, config=FiDReaderConfig(text_maxlength=MAXLEN))
    dev = load_questions(root / "dev.jsonl")  # held-out questions, never trained on
    evaluate = RerankerEvaluator(reader, list(dev), k=1)
    before = evaluate(Reranker.from_pretrained(root / "reranker_init").eval(), 0)
    assert before["R@1"] < 0.4  # chance is 1/5

    out = tmp_path / "grerank"
    args = [
        "train",
        f"--data.train={root / 'train.jsonl'}",  # the gold flags in it are never read by training
        f"--data.dev={root / 'dev.jsonl'}",
        f"--reader.path={reader_dir}", f"--reader.settings.text_maxlength={MAXLEN}",
        f"--reranker.path={root / 'reranker_init'}",
        "--objective.mask.k=1", "--objective.mask.tau=0.5", "--objective.settings.standardize=true",
        "--optim.lr=2e-3", "--optim.max_steps=300", "--optim.micro_batch_size=16", "--optim.warmup_steps=50",
        f"--run.output_dir={out}", "--run.eval_every=100", "--run.save_every=300", "--run.log_every=50",
        f"--run.seed={seed}",
    ]  # fmt: skip
    assert main(args) == 0
    after = evaluate(Reranker.from_pretrained(out / "model").eval(), 300)
    assert after["R@1"] > 0.9, (before, after)
    assert after["loss_hard_topk"] < 0.5 * before["loss_hard_topk"]
    reader_after = load_file(str(reader_dir / "model.safetensors"))
    assert all(torch.equal(reader_before[k], reader_after[k]) for k in reader_before)
