"""One place that turns a reader description (kind, path, settings) into a :class:`Reader`."""

from __future__ import annotations

from pathlib import Path

from gumbel_rerank.reader.base import Reader
from gumbel_rerank.reader.fid import FiDReader, FiDReaderConfig
from gumbel_rerank.reader.parallel_lm import ParallelLMReader, ParallelLMSettings

#: Values of ``reader.kind``: a FiD T5, or a decoder-only causal LM reading passages in parallel.
READER_KINDS = ("fid", "parallel_lm")


def load_reader_from(
    kind: str,
    path: str | Path,
    settings: FiDReaderConfig | None = None,
    tokenizer: str | Path | None = None,
    base_config: str | None = None,
    parallel_lm: ParallelLMSettings | None = None,
    trainable: bool = False,
) -> Reader:
    """The reader of ``kind`` (:data:`READER_KINDS`) at ``path``, on the CPU; ``base_config``
    is FiD's, ``parallel_lm`` the decoder-only reader's templates."""
    if kind == "fid":
        return FiDReader.from_pretrained(path, tokenizer=tokenizer, base_config=base_config, config=settings, trainable=trainable)
    if kind == "parallel_lm":
        return ParallelLMReader.from_pretrained(path, tokenizer=tokenizer, config=settings, settings=parallel_lm, trainable=trainable)
    raise ValueError(f"reader.kind: {kind!r} is not one of {READER_KINDS}")
