"""``SessionDB`` methods of Hermes 0.19.0: Telegram topic bindings and modes, gateway routing entries, session peers and the gateway's session lookups."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._tidelog import Store
    from ._rows import Rows


class _GatewayMixin:
    """Mixed into ``tidelog.hermes.SessionDB``; uses its ``_store`` and ``_rows``."""

    _store: Store
    _rows: Rows
