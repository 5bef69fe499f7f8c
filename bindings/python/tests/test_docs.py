"""The examples in the package docstrings run."""

from __future__ import annotations

import doctest

import tidelog
import tidelog.aio
import tidelog.hermes


def test_docstring_examples() -> None:
    for module in (tidelog, tidelog.aio, tidelog.hermes):
        result = doctest.testmod(module)
        assert result.attempted > 0, module
        assert result.failed == 0, module
