"""The examples in the package docstrings run."""

from __future__ import annotations

import doctest

import logbook
import logbook.aio
import logbook.hermes


def test_docstring_examples() -> None:
    for module in (logbook, logbook.aio, logbook.hermes):
        result = doctest.testmod(module)
        assert result.attempted > 0, module
        assert result.failed == 0, module
