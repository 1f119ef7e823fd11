"""Answer normalisation, EM / F1, and the DPR "passage contains the answer" test.

Two normalisations live here, on purpose:

``normalize_answer`` (used by :func:`exact_match` and :func:`f1`) follows the official SQuAD
evaluation script -- lowercase, delete punctuation, drop the articles *a/an/the*, collapse
whitespace -- so that EM/F1 on ASCII text are identical to the numbers papers report. Three
deliberate extensions, all no-ops on ASCII input:

* Unicode NFKC normalisation. Precomposed and decomposed forms of the same character compare
  equal ("Zürich" == "Zu\\u0308rich"), compatibility characters fold to their plain forms
  (no-break space -> space, full-width "Ａ" -> "a", the "ﬁ" ligature -> "fi"). Accents are
  *kept*: "Zurich" != "Zürich", as in the SQuAD script. NFKC rather than NFD because NFD alone
  leaves compatibility characters (no-break space, full-width letters) distinct. Since every
  normalisation form is invariant under canonical equivalence, the result does not depend on
  the form the input came in.
* ``str.casefold`` instead of ``str.lower``: caseless matching as Unicode defines it ("ß" ==
  "ss", and Greek final sigma "ς" == "σ", where ``lower`` depends on the letter's position).
* Punctuation is every character in Python's ``string.punctuation`` (what SQuAD deletes; it
  includes ASCII symbols such as ``$`` and ``+``) plus every Unicode punctuation character
  (categories ``P*``: curly quotes, dashes, the inverted question mark, ...). The SQuAD script
  only knows ASCII punctuation, which leaves curly quotes inside answers.

``match_normalize`` (used by :func:`contains_answer`) is the same except that punctuation becomes
a token *boundary* instead of being deleted. This mirrors DPR's ``has_answer``, which tokenises
punctuation as separate tokens: the answer "Marie Curie" is found in "Marie Curie's lab" and
"well" in "well-known", which deleting punctuation ("curies", "wellknown") would miss. Articles
are dropped on both sides, so "The Beatles" is found in "... by Beatles fans" (DPR would not;
we follow the SQuAD notion of what a normalised answer is).
"""

from __future__ import annotations

import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import cache

__all__ = [
    "answer_tokens",
    "contains_answer",
    "contains_any",
    "exact_match",
    "f1",
    "match_normalize",
    "normalize_answer",
]

_ARTICLES = (" a ", " an ", " the ")


@cache
def _punctuation() -> str:
    # Built lazily: scanning all of Unicode takes ~0.1 s, which importers should not pay.
    chars = {c for c in string.punctuation}
    chars.update(
        chr(cp) for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")
    )
    return "".join(sorted(chars))


@cache
def _whitespace() -> str:
    # Exactly the characters str.split() splits on.
    return "".join(chr(cp) for cp in range(sys.maxunicode + 1) if chr(cp).isspace())


@cache
def _delete_table() -> dict[int, str | None]:
    # str.translate with a dict is ~30x faster than a regex character class of this size.
    table: dict[int, str | None] = dict.fromkeys(map(ord, _punctuation()))
    table.update(dict.fromkeys(map(ord, _whitespace()), " "))
    return table


@cache
def _space_table() -> dict[int, str]:
    return dict.fromkeys(map(ord, _punctuation() + _whitespace()), " ")


def _padded(text: str, table: dict) -> str:
    """Normalised tokens joined by single spaces, with one space before and after."""
    # NFKC, then casefold (Unicode caseless matching: no context-dependent Greek final sigma,
    # "ß" == "ss"), then NFKC again because casefolding can leave a non-normalised string. The
    # second pass is skipped for ASCII, where it cannot change anything.
    text = unicodedata.normalize("NFKC", text).casefold()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = f" {text.translate(table)} "
    # Whitespace is already mapped to " ". Squashing runs with C-level str.replace instead of
    # split()/join() makes a few strings per passage rather than one per token (this runs for
    # every passage at load time). Padding makes every token " tok ", so articles also go by
    # replace: a token-level removal, equivalent to SQuAD's r"\b(a|an|the)\b" once punctuation
    # is gone.
    while "  " in text:
        text = text.replace("  ", " ")
    for article in _ARTICLES:
        while article in text:  # "a a": replace() does not see overlapping matches
            text = text.replace(article, " ")
    return text


def _normalize(text: str, table: dict) -> str:
    return _padded(text, table)[1:-1]


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: casefold, NFKC, delete punctuation, drop a/an/the, squash spaces.

    >>> normalize_answer("The  Beatles!")
    'beatles'
    """
    return _normalize(text, _delete_table())


def answer_tokens(text: str) -> list[str]:
    """Tokens of ``normalize_answer(text)``, the unit of the F1 overlap."""
    return normalize_answer(text).split()


def match_normalize(text: str) -> str:
    """Normalisation for answer containment: like :func:`normalize_answer`, but punctuation
    separates tokens instead of being deleted ("Curie's" -> "curie s")."""
    return _normalize(text, _space_table())


def _as_golds(golds: str | Iterable[str]) -> list[str]:
    # A bare string is one gold answer; iterating it would silently score against characters.
    gold_list = [golds] if isinstance(golds, str) else list(golds)
    if not gold_list:
        raise ValueError("no gold answers given: a question without answers cannot be scored")
    return gold_list


def exact_match(prediction: str, golds: str | Iterable[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    ``golds`` is one answer or an iterable of answers; an empty iterable raises ``ValueError``
    (silently scoring such a question 0 would bias the average).
    """
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _as_golds(golds)))


def _f1_single(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    # SQuAD v2.0 convention for empty token lists: both empty -> 1, one empty -> 0 (the v1.1
    # script returned 0 for both empty, which only matters for answers like "the" or "!").
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, golds: str | Iterable[str]) -> float:
    """Token-level F1 (bag of normalised tokens) between the prediction and the best gold answer."""
    pred_tokens = answer_tokens(prediction)
    return max(_f1_single(pred_tokens, answer_tokens(g)) for g in _as_golds(golds))


def contains_answer(text: str, answers: str | Iterable[str]) -> bool:
    """DPR convention: does some answer's token sequence occur contiguously in ``text``?

    Both sides go through :func:`match_normalize`; matching is on whole tokens, so "cat" is not
    found in "concatenate". Answers that normalise to nothing ("the", "!") never match.
    """
    # Padding with spaces turns "contiguous token subsequence" into a substring test on
    # single-space-joined tokens, which runs in C (this is called for every passage at load).
    haystack = _padded(text, _space_table())
    answer_list = [answers] if isinstance(answers, str) else answers
    for answer in answer_list:
        needle = match_normalize(answer)
        if needle and f" {needle} " in haystack:
            return True
    return False


def contains_any(text: str, normalised_answers: Iterable[str]) -> bool:
    """:func:`contains_answer` for answers already passed through :func:`match_normalize`
    (skips re-normalising the answers for every passage)."""
    haystack = _padded(text, _space_table())
    return any(a and f" {a} " in haystack for a in normalised_answers)
