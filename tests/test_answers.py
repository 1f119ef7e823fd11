"""Answer normalisation, EM, F1 and answer containment (gumbel_rerank.data.answers)."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gumbel_rerank.data.answers import (
    answer_tokens,
    contains_answer,
    contains_any,
    exact_match,
    f1,
    match_normalize,
    normalize_answer,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Marie Curie!", "marie curie"),
        ("The Beatles", "beatles"),
        ("  a  cat,   an apple; the END.  ", "cat apple end"),
        ("theatre", "theatre"),  # articles are whole tokens only
        ("Anna and Thea", "anna and thea"),
        ("a a a", ""),  # consecutive articles all go
        ("U.S.", "us"),  # SQuAD deletes punctuation inside tokens
        ("rock-'n'-roll", "rocknroll"),
        ("$100 + tax", "100 tax"),  # ASCII symbols in string.punctuation, as in SQuAD
        ("\u201cquoted\u201d \u2014 dash \u00bfque?", "quoted dash que"),  # Unicode punctuation
        ("New\u00a0York", "new york"),  # no-break space
        ("Tab\tand\nnewline\u3000ideographic", "tab and newline ideographic"),
        ("Z\u00fcrich", "z\u00fcrich"),  # accents kept, composed form
        ("Zu\u0308rich", "z\u00fcrich"),  # decomposed input gives the composed form
        ("\uff21\uff22\uff23", "abc"),  # full-width letters (NFKC)
        ("\ufb01le", "file"),  # ligature (NFKC)
        ("Stra\u00dfe", "strasse"),  # casefold
        (
            "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3",
            "\u03bf\u03b4\u03c5\u03c3\u03c3\u03b5\u03c5\u03c3",
        ),
        ("", ""),
        ("!!!", ""),
    ],
)
def test_normalize_answer_golden(text, expected):
    assert normalize_answer(text) == expected


def test_match_normalize_splits_on_punctuation_instead_of_deleting():
    assert match_normalize("Marie Curie's lab") == "marie curie s lab"
    assert match_normalize("well-known U.S. army") == "well known u s army"
    assert match_normalize("The end.") == "end"


@pytest.mark.parametrize(
    ("prediction", "golds"),
    [
        ("Marie Curie!", "marie curie"),
        ("The Beatles", ["beatles"]),
        ("Z\u00fcrich", ["Zu\u0308rich"]),
        ("Zu\u0308rich", ["Z\u00fcrich"]),
        ("New\u00a0York City", ["new york city"]),
        ("  the   answer  ", ["Answer"]),
        ("Po", ["Polonium", "Po"]),  # max over golds
    ],
)
def test_exact_match_true(prediction, golds):
    assert exact_match(prediction, golds) == 1.0


@pytest.mark.parametrize(
    ("prediction", "golds"),
    [
        ("Zurich", ["Z\u00fcrich"]),  # accents are significant (as in SQuAD)
        ("Marie", ["Marie Curie"]),
        ("polonium", ["Po", "radium"]),
        ("", ["x"]),
    ],
)
def test_exact_match_false(prediction, golds):
    assert exact_match(prediction, golds) == 0.0


def test_exact_match_string_gold_is_one_answer_not_characters():
    # Iterating "abc" would give golds "a", "b", "c"; the prediction "a" must not match.
    assert exact_match("b", "abc") == 0.0
    assert f1("b", "abc") == 0.0


def test_no_golds_is_an_error_not_a_zero():
    with pytest.raises(ValueError, match="no gold answers"):
        exact_match("x", [])
    with pytest.raises(ValueError, match="no gold answers"):
        f1("x", [])


@pytest.mark.parametrize(
    ("prediction", "golds", "expected"),
    [
        # "the" is dropped: pred = [cat, sat], gold = [cat, sat, down]; P=1, R=2/3.
        ("the cat sat", ["cat sat down"], 0.8),
        # pred = [cat, cat], gold = [cat]: one common token; P=1/2, R=1 -> 2/3.
        ("cat cat", ["cat"], 2 / 3),
        # pred = [black, cat], gold = [cat, black, hat]: bag overlap 2; P=1, R=2/3.
        ("black cat", ["cat black hat"], 0.8),
        ("dog", ["cat"], 0.0),
        # Max over golds: 0 against the first, 2*(1/2*1)/(1/2+1) = 2/3 against the second.
        ("big house", ["tree", "house"], 2 / 3),
        ("Marie Curie!", ["marie curie"], 1.0),
        # SQuAD v2.0 convention for answers that normalise to nothing.
        ("the", ["a"], 1.0),
        ("the", ["cat"], 0.0),
        ("cat", ["!"], 0.0),
    ],
)
def test_f1_hand_computed(prediction, golds, expected):
    assert f1(prediction, golds) == pytest.approx(expected)


def test_answer_tokens():
    assert answer_tokens("The quick, brown fox!") == ["quick", "brown", "fox"]


@pytest.mark.parametrize(
    ("text", "answers"),
    [
        ("The cat sat on the mat.", ["cat"]),
        ("The cat sat on the mat.", "Sat On"),
        ("cat", ["cat"]),  # the whole text
        ("Marie Curie's laboratory", ["Marie Curie"]),  # possessive: punctuation is a boundary
        ("a well-known fact", ["known"]),
        ("served in the U.S. army", ["U.S."]),
        ("Recorded by Beatles fans", ["The Beatles"]),  # articles dropped on both sides
        ("born in Zu\u0308rich", ["Z\u00fcrich"]),
        ("NEW\u00a0YORK city", ["new york"]),
        ("nothing here", ["absent", "here"]),  # any of the answers
    ],
)
def test_contains_answer_true(text, answers):
    assert contains_answer(text, answers) is True


@pytest.mark.parametrize(
    ("text", "answers"),
    [
        ("to concatenate strings", ["cat"]),  # inside a word: not a match
        ("cats are nice", ["cat"]),
        ("the cat sat on the mat", ["cat on"]),  # not contiguous
        ("born in Zurich", ["Z\u00fcrich"]),
        ("The only word", ["the"]),  # answer normalises to nothing
        ("anything at all", ["!?"]),
        ("anything at all", []),
        ("the U.S. army", ["us"]),  # "U.S." becomes the tokens "u s", not "us"
    ],
)
def test_contains_answer_false(text, answers):
    assert contains_answer(text, answers) is False


def test_contains_any_takes_prenormalised_answers():
    answers = [match_normalize(a) for a in ["The Beatles", "!"]]
    assert answers == ["beatles", ""]
    assert contains_any("Beatles fans", answers)
    assert not contains_any("a beatle fan", answers)


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),  # lone surrogates are not text
    max_size=30,
)


@given(_text)
def test_normalisation_ignores_the_input_normal_form(text):
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        other = unicodedata.normalize(form, text)
        assert normalize_answer(other) == normalize_answer(text)
        assert match_normalize(other) == match_normalize(text)


@given(_text)
def test_a_text_matches_itself(text):
    assert exact_match(text, [text]) == 1.0
    assert f1(text, [text]) == 1.0
    assert contains_answer(text, [text]) is bool(match_normalize(text))


@given(_text, _text, _text)
def test_contains_answer_finds_an_answer_between_spaces(before, answer, after):
    # Whatever surrounds it (separated by spaces), a non-empty answer is found.
    if match_normalize(answer):
        assert contains_answer(f"{before} {answer} {after}", [answer])
