"""``SessionDB`` methods of Hermes 0.19.0: pruning, archiving, empty sessions, vacuum and FTS maintenance, bulk import and session metadata updates."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._tidelog import Store
    from ._rows import Rows


class _MaintenanceMixin:
    """Mixed into ``tidelog.hermes.SessionDB``; uses its ``_store`` and ``_rows``."""

    _store: Store
    _rows: Rows
