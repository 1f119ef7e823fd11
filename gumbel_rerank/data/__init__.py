"""Questions and passages in, validated and cached: everything that reads or converts data.

- ``jsonstream``: the one streaming JSON / JSONL record reader (record numbers for errors, byte
  offsets for resume), used by question loading, the converters and ``rerank``;
- ``questions``: loading question files into memory-mapped sets (:func:`load_questions`), over
  ``records`` (question records, their validation and gold rules) and ``cache`` (the Arrow
  cache);
- ``answers``: SQuAD-style answer normalisation, EM and F1, answer containment;
- ``trec``: TREC run files and queries, with ``collection`` (passage collections as an on-disk
  index) and ``linefiles`` (line-oriented TSV / JSONL inputs, file fingerprints);
- ``converters``: published datasets (HotpotQA, MuSiQue, 2Wiki, FiD NQ/TQA) to our format.
"""

from gumbel_rerank.data.questions import (
    DataError,
    Passage,
    Question,
    QuestionSet,
    count_without_gold,
    load_questions,
)

__all__ = [
    "DataError",
    "Passage",
    "Question",
    "QuestionSet",
    "count_without_gold",
    "load_questions",
]
