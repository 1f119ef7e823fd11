"""The paper's preprocessed data (``syhuang/gumbel-reranking-data``), already in our format:
copied through, then validated by the loader itself (see the package docstring of
:mod:`gumbel_rerank.data.converters`)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from gumbel_rerank.data.converters.common import ConversionReport, Converted, Fields, Options
from gumbel_rerank.data.jsonstream import DataError

__all__ = ["check_with_loader", "passthrough"]


def passthrough(obj: Any, ordinal: int, f: Fields, opts: Options) -> Converted:
    """The record unchanged but for the ``max_passages`` cut; validated (and gold decided) by
    :func:`check_with_loader` afterwards."""
    r = f.record(obj)
    ctxs = r.get("ctxs")
    if opts.max_passages is not None and type(ctxs) is list:
        r = {**r, "ctxs": ctxs[: opts.max_passages]}
    return r, ""


def check_with_loader(
    tmp: Path, display: str, labels: list[int], workdir: Path, report: ConversionReport
) -> None:
    """Validate the written file with the loader itself and take the gold statistics from it.

    Loader messages name the temporary file ``tmp`` and its line numbers; they are mapped back
    to ``display`` and the input's record numbers (``labels[i]``: the input record of output
    line ``i + 1``). The loader's cache goes to a temporary folder in ``workdir``, removed after.
    """
    import pyarrow.compute as pc

    from gumbel_rerank.data.questions import load_questions

    cache = Path(tempfile.mkdtemp(prefix=".convert-check-", dir=workdir))
    try:
        try:
            qs = load_questions(tmp, cache_dir=cache)
        except DataError as err:
            raise DataError([_map_message(m, tmp, display, labels) for m in err.problems]) from None
        table = qs.dataset.select_columns(["gold_source", "gold_indices"]).with_format("arrow")
        sources: Counter[str] = Counter()
        for batch in table.iter(batch_size=8192):
            golds = pc.list_value_length(batch["gold_indices"]).to_numpy(zero_copy_only=False)
            report.gold_passages += int(golds.sum())
            report.without_gold += int((golds == 0).sum())
            sources.update(batch["gold_source"].to_pylist())
        report.gold_sources = {f"loader rule {k!r}": n for k, n in sources.items()}
        del qs, table  # release the memory map before the cache folder goes
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _map_message(message: str, tmp: Path, display: str, labels: list[int]) -> str:
    """A loader message about ``tmp`` as one about the input file and record."""
    prefix = os.fspath(tmp)
    if not message.startswith(prefix):
        return message
    rest = message[len(prefix) :]
    m = re.match(r":(\d+):", rest)
    if m:
        line = int(m.group(1))
        label = labels[line - 1] if 0 < line <= len(labels) else line
        return f"{display}:{label}:{rest[m.end() :]}"
    return display + rest
