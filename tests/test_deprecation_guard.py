"""The guard that makes CI fail on deprecations reached from our code (tests/deprecation_guard.py)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest

from gumbel_rerank.config import load_config


@dataclass
class WarnsWhenBuilt:
    """A config class whose construction emits a library-style deprecation warning."""

    x: int = 1

    def __post_init__(self) -> None:
        warnings.warn("`x` is deprecated", FutureWarning, stacklevel=2)


def test_a_deprecation_reached_through_our_code_is_an_error():
    # load_config (gumbel_rerank/config.py) builds the dataclass: our frame is on the stack
    with pytest.raises(FutureWarning, match="deprecated call reached from .*gumbel_rerank/config.py"):
        load_config(WarnsWhenBuilt, None)


def test_a_deprecation_outside_our_code_stays_a_warning():
    with pytest.warns(FutureWarning, match="is deprecated"):
        WarnsWhenBuilt()


def test_the_guard_is_installed():
    import deprecation_guard

    assert warnings.warn is deprecation_guard.guarded_warn
