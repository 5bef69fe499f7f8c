from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tidelog


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_dir: Path) -> Iterator[tidelog.Store]:
    s = tidelog.Store(store_dir)
    try:
        yield s
    finally:
        s.close()


# The differential harness takes Hermes' own SessionDB class before any test installs ours.
from hermes_diff import Pair  # noqa: E402


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    """Hermes' SessionDB and tidelog's, side by side (tests/hermes_diff.py)."""
    p = Pair(tmp_path)
    try:
        yield p
    finally:
        p.close()
