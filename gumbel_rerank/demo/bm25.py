"""Okapi BM25, the demo data's incoming (lexical retriever) order: word tokens, corpus
statistics and scores (``gumbel_rerank.demo.dataset`` sorts each question's passages by it)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_WORD_RE = re.compile(r"\w+")


def word_tokens(text: str) -> list[str]:
    """BM25's tokens: lowercase word characters; punctuation is dropped."""
    return _WORD_RE.findall(text.lower())


@dataclass(frozen=True)
class CorpusStats:
    """What BM25 needs from the corpus: its size, average document length, document frequencies."""

    n_docs: int
    avgdl: float
    doc_freq: Mapping[str, int]


def corpus_stats(docs_tokens: Sequence[Sequence[str]]) -> CorpusStats:
    """Statistics of a tokenised corpus."""
    df: Counter[str] = Counter()
    length = 0
    for tokens in docs_tokens:
        df.update(set(tokens))
        length += len(tokens)
    n = len(docs_tokens)
    return CorpusStats(n_docs=n, avgdl=length / n if n else 0.0, doc_freq=dict(df))


def bm25_scores(
    query_tokens: Sequence[str],
    docs_tokens: Sequence[Sequence[str]],
    *,
    k1: float = 1.2,
    b: float = 0.75,
    stats: CorpusStats | None = None,
) -> list[float]:
    """Okapi BM25 score of each document for the query.

    ``score(D, Q) = sum over distinct t in Q of idf(t) * tf(t, D) * (k1 + 1)
    / (tf(t, D) + k1 * (1 - b + b * |D| / avgdl))`` with the non-negative IDF of Lucene,
    ``idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))``. A query word counts once however
    often the query repeats it. ``stats`` gives N, avgdl and df; by default they come from
    ``docs_tokens`` themselves.
    """
    if stats is None:
        stats = corpus_stats(docs_tokens)
    idf = {}
    for t in dict.fromkeys(query_tokens):  # distinct, in query order (deterministic sums)
        df = stats.doc_freq.get(t, 0)
        idf[t] = math.log(1.0 + (stats.n_docs - df + 0.5) / (df + 0.5))
    scores = []
    for tokens in docs_tokens:
        tf = Counter(tokens)
        norm = k1 * (1.0 - b + b * len(tokens) / stats.avgdl) if stats.avgdl else k1
        score = 0.0
        for t, w in idf.items():
            f = tf.get(t, 0)
            if f:
                score += w * f * (k1 + 1.0) / (f + norm)
        scores.append(score)
    return scores
