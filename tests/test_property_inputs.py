"""Property-based tests (hypothesis): arbitrary bytes as a question file, a TREC run, a queries
file or a passage collection, and arbitrary YAML plus dotted overrides as a config, never raise anything but
the project's own error types, and never hang (issue 14).

CI runs ``PROPERTY_EXAMPLES`` examples per property (2000 by default); the longer documented
run is ``PROPERTY_EXAMPLES=10000 pytest tests/test_property_inputs.py``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gumbel_rerank.config import ConfigError, load_config
from gumbel_rerank.data.collection import Collection
from gumbel_rerank.data.jsonstream import DataError
from gumbel_rerank.data.questions import load_questions
from gumbel_rerank.data.trec import iter_trec_run, load_queries
from gumbel_rerank.training.config import TrainConfig

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "2000"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=2000,  # ms per example: a hang or a quadratic blow-up fails the property
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,  # the same examples on every CI run
)

# Fragments that steer random bytes towards almost-valid files, where parsers break.
JSON_BITS = st.sampled_from(
    [b"{", b"}", b"[", b"]", b",", b":", b'"id"', b'"question"', b'"answers"', b'"ctxs"', b'"text"',
     b'"title"', b'"target"', b'"q"', b"1", b"-1e999", b"null", b"true", b"\n", b" ", b"\\ud800", b"\xff", b'"']
)
TREC_BITS = st.sampled_from([b"q1", b" ", b"\t", b"Q0", b"d1", b"1", b"-3", b"nan", b"inf", b"1.5", b"tag", b"\n", b"\xff"])


def _file(data: bytes, name: str) -> Path:
    directory = Path(tempfile.mkdtemp())
    path = directory / name
    path.write_bytes(data)
    return path


def _fuzz(bits: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), st.lists(bits, max_size=60).map(b"".join))


@SETTINGS
@given(data=_fuzz(JSON_BITS), skip=st.booleans(), name=st.sampled_from(["q.jsonl", "q.json"]))
def test_question_loader_raises_only_data_errors(data, skip, name):
    path = _file(data, name)
    with contextlib.suppress(DataError):  # anything else fails the property
        load_questions(path, skip_invalid=skip, cache_dir=path.parent / "cache")


@SETTINGS
@given(data=_fuzz(TREC_BITS))
def test_trec_run_reader_raises_only_data_errors(data):
    with contextlib.suppress(DataError):
        for _ in iter_trec_run(_file(data, "run.trec")):
            pass


@SETTINGS
@given(data=_fuzz(TREC_BITS), name=st.sampled_from(["queries.tsv", "queries.jsonl"]))
def test_queries_reader_raises_only_data_errors(data, name):
    with contextlib.suppress(DataError):
        load_queries(_file(data, name))


COLLECTION_BITS = st.sampled_from(
    [b"id", b"text", b"title", b"docid", b"d1", b"d2", b"1", b"\t", b"\n", b" ", b'"', b'""', b"{", b"}", b'"id"',
     b'"text"', b'"contents"', b":", b",", b"null", b"\xff", b"\xef\xbb\xbf"]
)


@SETTINGS
@given(data=_fuzz(COLLECTION_BITS), name=st.sampled_from(["c.tsv", "c.jsonl", "c.bin"]))
def test_collection_reader_raises_only_data_errors(data, name):
    path = _file(data, name)
    with contextlib.suppress(DataError), Collection.open(path, index_dir=path.parent / "index") as collection:
        found = [docid for docid in ("d1", "d2", "1") if docid in collection]
        for docid in found:  # look-ups read lines back from the file: they must parse too
            title, text = collection[docid]
            assert isinstance(title, str) and isinstance(text, str)
        assert len(found) <= len(collection)


KEYS = st.sampled_from(["optim.lr", "optim.max_steps", "run.seed", "objective.mask.k", "objective.mask.tau",
                        "data.n_passages", "eval.k", "run.wandb", "optim.betas", "reader.settings.dtype", "nope.x", "optim"])
VALUES = st.one_of(st.text(max_size=12), st.integers(), st.floats(allow_nan=True), st.sampled_from(["[1, 2", "{a: 1}", "null", "-0", "1e999"]))


@SETTINGS
@given(yaml_text=st.one_of(st.text(max_size=200), st.lists(st.sampled_from(["optim:\n", "  lr: x\n", "run: [1\n", "- a\n", "!!python/none\n", ": :\n", "\t"]), max_size=8).map("".join)),
       overrides=st.lists(st.tuples(KEYS, VALUES).map(lambda kv: f"--{kv[0]}={kv[1]}"), max_size=4))
def test_config_parser_raises_only_config_errors(yaml_text, overrides):
    path = _file(yaml_text.encode("utf-8", "surrogatepass"), "c.yaml")
    with contextlib.suppress(ConfigError):
        load_config(TrainConfig, path, overrides)
