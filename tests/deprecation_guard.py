"""Turn FutureWarnings raised while our code is on the stack into errors (issue 14).

A plain ``-W error::FutureWarning:gumbel_rerank`` filter does not work: Python matches a
filter's module against the frame the warning is *attributed to*, and libraries attribute their
deprecations to their own frames (transformers' ``deprecate_kwarg`` reports
``transformers/utils/generic.py``). So ``warnings.warn`` is wrapped: a FutureWarning (the
category libraries use for deprecations aimed at their users, e.g. a keyword argument being
removed) whose call stack passes through the ``gumbel_rerank`` package is raised as an
exception, naming the innermost of our frames; warnings that library code raises on its own
(its imports, its internal calls) pass through unchanged. DeprecationWarning is left alone: it
is what libraries use for their own internals, which our calls do not choose.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import gumbel_rerank

PACKAGE = str(Path(gumbel_rerank.__file__).resolve().parent)
GUARDED = (FutureWarning,)
_original_warn = warnings.warn


def _our_frame() -> str | None:
    """``file:line`` of the innermost frame inside the gumbel_rerank package, if our code
    *called* into what warned; None when it did not, or when an import lies in between (a
    library warning while being imported is its own business, not a call of ours)."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith("<frozen importlib"):
            return None
        if filename.startswith(PACKAGE):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def guarded_warn(message, category=None, stacklevel=1, source=None, **kwargs):  # noqa: ANN001, ANN201
    """``warnings.warn`` that raises guarded categories when our code is on the stack."""
    kind = category if category is not None else (type(message) if isinstance(message, Warning) else UserWarning)
    if issubclass(kind, GUARDED):
        where = _our_frame()
        if where is not None:
            raise kind(f"{message} (deprecated call reached from {where})")
    return _original_warn(message, category, stacklevel + 1, source, **kwargs)


def install() -> None:
    """Wrap ``warnings.warn`` for the rest of the process (idempotent)."""
    warnings.warn = guarded_warn
