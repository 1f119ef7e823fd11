"""What the distillation objectives share: softmaxes over a question's valid candidates, the KL
from a target distribution to the reranker's, the reader passes that make reader-derived
targets, and an exact cache for targets that depend only on the frozen reader and the
candidates (no objective is registered here)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

import torch

from gumbel_rerank.masks import LOG_FLOOR
from gumbel_rerank.objectives.base import Batch
from gumbel_rerank.reader.base import EncodedPassages, Reader


def masked_log_softmax(x: torch.Tensor, valid: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(x / temperature)`` over each row's valid entries.

    Args:
        x: (B, n) logits. valid: (B, n) bool.

    Returns:
        (B, n), at least float32; ``-inf`` on invalid entries (a row with no valid entry is all
        ``-inf``: callers leave such rows out).
    """
    work = x.to(torch.promote_types(x.dtype, torch.float32)) / temperature
    return work.masked_fill(~valid, float("-inf")).log_softmax(dim=-1)


def row_mean(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean of (B,) ``values`` over the rows where ``rows`` (B,) bool is set; a zero that still
    carries the graph when none is (a batch without signal must not stop training)."""
    if bool(rows.any()):
        return values[rows].mean()
    return values.sum() * 0.0


#: ``kl_reduction`` values: "question" = mean over questions of each question's KL (ours);
#: "entry" = the sum of the KL terms over every (question, candidate) entry divided by the
#: number of entries, as Atlas's ``torch.nn.KLDivLoss()`` (reduction "mean") does: the
#: per-question mean divided by n when every question has n candidates.
KL_REDUCTIONS = ("question", "entry")


def kl_to_student(
    target: torch.Tensor,
    scores: torch.Tensor,
    valid: torch.Tensor,
    tau_target: float,
    tau_student: float,
    reduction: str = "question",
) -> torch.Tensor:
    """``mean_b KL(softmax(target_b / tau_target) || softmax(scores_b / tau_student))``.

    Args:
        target: (B, n) target scores (a reader-derived signal or a teacher's); not
            differentiated.
        scores: (B, n) reranker scores, the student.
        valid: (B, n) bool; only valid candidates enter either softmax. Rows with fewer than
            two valid candidates carry no ranking signal and are left out of the mean.
        reduction: "question" (the mean above) or "entry" (Atlas: the summed KL divided by the
            number of valid entries of the qualifying rows), :data:`KL_REDUCTIONS`.

    Returns:
        A scalar (0 when no row qualifies).
    """
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"reduction must be one of {KL_REDUCTIONS}, got {reduction!r}")
    log_p = masked_log_softmax(target.detach(), valid, tau_target)
    log_q = masked_log_softmax(scores, valid, tau_student)
    terms = torch.where(valid, log_p.exp() * (log_p - log_q), torch.zeros_like(log_q))
    rows = valid.sum(dim=1) >= 2
    per_question = row_mean(terms.sum(dim=1), rows)
    if reduction == "question" or not bool(rows.any()):
        return per_question
    # the mean over questions times questions / entries = total KL / entries
    entries = valid[rows].sum()
    return per_question * rows.sum() / entries


# -- reader passes ----------------------------------------------------------------------------
def read_batch(reader: Reader, batch: Batch, n: int) -> tuple[EncodedPassages, torch.Tensor]:
    """Encoder states (B, n * L, D) of the batch's passages padded to ``n``, and the answer
    labels (B, T); no gradient (the reader is frozen)."""
    with torch.no_grad():
        tokens = reader.tokenize_passages(batch.questions, batch.passages, n_passages=n)
        return reader.encode(tokens, cached=True), reader.tokenize_targets(batch.targets)


@torch.no_grad()
def per_passage_token_logprobs(
    reader: Reader,
    states: EncodedPassages,
    labels: torch.Tensor,
    chunk_size: int | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``log p(a_t | q, d_i)`` with each passage alone, for every passage and answer token.

    Exact: each passage was encoded on its own, so its states are those the reader computes
    for a question with that single passage (PDist's and EMDR2's reader runs), at a fraction
    of the cost of n separate reader calls.

    Args:
        states: (B, n * L, D) encoder states. labels: (B, T), -100 at padding.
        chunk_size: (question, passage) rows per decoder call; None = all B * n at once.
        temperature: on the vocabulary logits (Atlas's token-level EMDR2).

    Returns:
        (B, n, T); 0 at padding tokens; meaningless (finite) for padding passages.
    """
    b, n, _ = states.token_mask.shape
    singles = states.singles()  # (B * n, L, D)
    rows = labels.repeat_interleave(n, dim=0)  # (B * n, T), row b * n + i = question b
    size = chunk_size or b * n
    parts = []
    for start in range(0, b * n, size):
        part = EncodedPassages(
            singles.hidden[start : start + size],
            singles.token_mask[start : start + size],
            prompt_ids=None if singles.prompt_ids is None else singles.prompt_ids[start : start + size],
            prompt_mask=None if singles.prompt_mask is None else singles.prompt_mask[start : start + size],
        )
        parts.append(reader.token_logprobs(part, rows[start : start + size], None, temperature))
    return torch.cat(parts).view(b, n, -1)


@torch.no_grad()
def leave_one_out_nll(
    reader: Reader, states: EncodedPassages, labels: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """LOOP's signal: the answer NLL (mean over answer tokens) with passage i removed.

    One encoding of all n passages; passage i is removed through the mask path
    (``log M_i = LOG_FLOOR``, every other passage 0), which is exactly the reader without it:
    the other passages stay in their slots, as evaluation's ``select()`` keeps them (which
    matters only with FiD's legacy position bias; docs/bugs-and-fixes.md).

    Args:
        states: (B, n * L, D). labels: (B, T).
        chunk_size: passages removed per decoder call (each costs a copy of the batch).

    Returns:
        (B, n): higher = the answer is harder without that passage = the passage is more useful.
    """
    b, n, _ = states.token_mask.shape
    size = chunk_size or n
    out = torch.zeros(b, n, device=states.hidden.device)
    for first in range(0, n, size):
        removed = list(range(first, min(n, first + size)))
        masks = torch.zeros(len(removed), b, n, device=states.hidden.device)
        for slot, i in enumerate(removed):
            masks[slot, :, i] = LOG_FLOOR
        nll = reader.lm_loss(states.repeat(len(removed)), labels.repeat(len(removed), 1), masks.view(-1, n))
        out[:, removed] = nll.view(len(removed), b).T.to(out.dtype)
    return out


# -- exact target cache ----------------------------------------------------------------------
def example_key(batch: Batch, row: int) -> str:
    """What a reader-derived target depends on besides the frozen reader: the question, its
    target answer and its candidates in order."""
    content = [batch.ids[row], batch.questions[row], batch.targets[row], batch.passages[row]]
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()


class TargetCache:
    """Per-example targets kept on the CPU, so each is computed once per run.

    Exact, not approximate: a target that depends only on the frozen reader (eval mode, no
    dropout) and the fixed candidate set is the same tensor every time it is recomputed.
    ``enabled=False`` computes every time (the reference behaviour).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._store: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0
        #: wall seconds spent computing targets (the one-time cost of caching them)
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self._store)

    def get(self, batch: Batch, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Targets (B, n, ...) for the batch: row b is question b's, padded with zeros past its
        own passages (and, for extra dimensions, to the longest row). ``compute()`` returns all
        rows at once and runs unless every row is cached."""
        if not self.enabled:
            return self._timed(compute)
        keys = [example_key(batch, row) for row in range(len(batch))]
        if not all(key in self._store for key in keys):
            values = self._timed(compute)
            self.misses += len(keys)
            for row, key in enumerate(keys):
                # only the question's own passages: another batch may pad it to another n
                self._store[key] = values[row, : len(batch.passages[row])].detach().cpu()
            return values
        self.hits += len(keys)
        rows = [self._store[key] for key in keys]
        n = max(len(p) for p in batch.passages)
        shape = [n] + [max(r.shape[d] for r in rows) for d in range(1, rows[0].dim())]
        out = torch.zeros(len(rows), *shape, dtype=rows[0].dtype)
        for row, value in enumerate(rows):
            out[(row, *[slice(0, size) for size in value.shape])] = value
        return out

    def _timed(self, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        started = time.perf_counter()
        values = compute()
        self.seconds += time.perf_counter() - started
        return values
