"""``SessionDB`` methods of Hermes 0.19.0: hand-offs, compression locks, compression failure cooldowns and fallback streaks, billing routes, auxiliary usage and cron job runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._tidelog import Store
    from ._rows import Rows


class _CoordinationMixin:
    """Mixed into ``tidelog.hermes.SessionDB``; uses its ``_store`` and ``_rows``."""

    _store: Store
    _rows: Rows
