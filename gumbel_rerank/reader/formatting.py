"""FiD's input format and tokenisation, reproduced token for token.

Passages: "question: {q} title: {t} context: {c}", truncated and padded to ``text_maxlength``,
with NO end-of-sequence token (transformers 3.0.2, which FiD was trained with, never added one).
Targets: the answer followed by exactly one EOS. Transformers 5.x T5 tokenizers append EOS
themselves, so FiD's literal " </s>" suffix would give two; we tokenise with
``add_special_tokens=False`` and append one EOS by hand, whatever the tokenizer does by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from gumbel_rerank.reader.base import PassageTokens

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100


def format_passage(question: str, title: str | None, text: str) -> str:
    """The string FiD encodes for one (question, passage) pair."""
    return f"question: {question} title: {title or ''} context: {text}"


def tokenize_passages(
    tokenizer: PreTrainedTokenizerBase,
    questions: list[str],
    passages: list[list[dict]],
    max_length: int,
    n_passages: int | None = None,
    pad_to_max_length: bool = True,
) -> PassageTokens:
    """Tokenise every (question, passage) pair of a batch.

    Args:
        questions: B questions.
        passages: B lists of passage dicts with "text" and optional "title".
        max_length: tokens per passage (FiD: 200 base, 250 large).
        n_passages: N, passages per question after padding; default the batch maximum.
            Questions with more candidates are cut to the first N.
        pad_to_max_length: pad every passage to ``max_length`` as FiD did; otherwise to the
            longest passage of the batch (same result, less compute).

    Returns:
        PassageTokens with input_ids (B, N, L), attention_mask (B, N, L), passage_valid (B, N).
    """
    if len(questions) != len(passages):
        raise ValueError(f"{len(questions)} questions but {len(passages)} passage lists")
    if tokenizer.pad_token_id is None:
        raise ValueError("the reader tokenizer has no pad token")
    n = n_passages if n_passages is not None else max((len(p) for p in passages), default=0)
    n = max(n, 1)
    flat: list[str] = []
    owners: list[tuple[int, int]] = []
    for b, (question, ctxs) in enumerate(zip(questions, passages, strict=True)):
        for i, ctx in enumerate(ctxs[:n]):
            flat.append(format_passage(question, ctx.get("title"), ctx["text"]))
            owners.append((b, i))
    enc = tokenizer(
        flat,
        add_special_tokens=False,
        truncation=True,
        max_length=max_length,
        padding="max_length" if pad_to_max_length else "longest",
        return_tensors="pt",
    ) if flat else None
    length = max_length if (pad_to_max_length or enc is None) else enc["input_ids"].shape[1]
    batch = len(questions)
    input_ids = torch.full((batch, n, length), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, n, length), dtype=torch.bool)
    passage_valid = torch.zeros((batch, n), dtype=torch.bool)
    if enc is not None:
        rows = torch.tensor([b for b, _ in owners])
        cols = torch.tensor([i for _, i in owners])
        input_ids[rows, cols] = enc["input_ids"]
        attention_mask[rows, cols] = enc["attention_mask"].bool()
        passage_valid[rows, cols] = True
    return PassageTokens(input_ids, attention_mask, passage_valid)


def tokenize_targets(
    tokenizer: PreTrainedTokenizerBase, answers: list[str], max_length: int | None = None
) -> torch.Tensor:
    """Answer token ids followed by exactly one EOS, padded with -100.

    Args:
        answers: B answer strings.
        max_length: total length including the EOS; longer answers are cut before the EOS.

    Returns:
        (B, T) long labels.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the reader tokenizer has no EOS token")
    ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    if max_length is not None:
        ids = [seq[: max_length - 1] for seq in ids]
    ids = [list(seq) + [eos] for seq in ids]
    width = max(len(seq) for seq in ids)
    labels = torch.full((len(ids), width), IGNORE_INDEX, dtype=torch.long)
    for row, seq in enumerate(ids):
        labels[row, : len(seq)] = torch.tensor(seq)
    return labels
