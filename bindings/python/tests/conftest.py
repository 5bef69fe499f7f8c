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
