"""``SessionDB`` methods of Hermes 0.19.0: compression lineage, resume, rewind and the views of a conversation around a message."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._tidelog import Store
    from ._rows import Rows


class _LineageMixin:
    """Mixed into ``tidelog.hermes.SessionDB``; uses its ``_store`` and ``_rows``."""

    _store: Store
    _rows: Rows
